"""Ways to get a portal link: asked for by e-mail (the same answer for any address, rate limited),
printed by ``billsync portal link``, returned by the API, shown on the console's customer page;
the mails written to files are listed in the console."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from click.testing import CliRunner

from billing_engine.use_cases import audit
from connector.cli import cli
from connector.console.users import create_user
from connector.database import transaction
from tests.integration.console.conftest import sign_in
from tests.integration.portal.conftest import csrf_token
from tests.support.api import bearer, new_key

LINK = re.compile(r"http://localhost:5000(/portal/open/[A-Za-z0-9_-]+)")


def text(response) -> str:
    return response.get_data(as_text=True)


def mails(settings) -> list:
    if not settings.mail_dir.is_dir():
        return []
    return [BytesParser(policy=policy.default).parse(path.open("rb"))
            for path in sorted(settings.mail_dir.glob("*.eml"))]


def opens(app, path: str) -> bool:
    client = app.test_client()
    return client.post(path, data={"csrf_token": csrf_token(client, path)}).status_code == 303


def test_a_link_asked_for_by_e_mail_reaches_only_the_billing_contact(app, settings, seeded):
    client = app.test_client()
    answers = []
    for email in ("BILLING@alpha.example", "nobody@nowhere.example"):
        response = client.post("/portal/request", data={"email": email,
                                                         "csrf_token": csrf_token(client, "/portal/request")},
                               buffered=True)
        assert response.status_code == 200
        answers.append(text(response).split('<main class="page">')[1])
    assert answers[0] == answers[1] and "a link is on its way" in answers[0]
    [mail] = mails(settings)
    # To the address kept for the customer, in its language (French: a billing address in France).
    assert mail["To"] == "billing@alpha.example" and mail["Subject"] == "Votre lien vers l'espace de facturation"
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "l'espace de facturation de Alpha SAS" in body
    assert opens(app, LINK.search(body).group(1))
    with transaction(app.extensions["billsync"].engine) as session:
        [entry] = [e for e in audit.list_actions(session, limit=20, target_id=seeded.customer_a)
                   if e.action == "portal.link_issued"]
    assert entry.actor == "portal:e-mail request" and "/portal/open/" not in str(entry.after)  # never the token


def test_the_link_is_mailed_after_the_answer(app, settings, seeded):
    client = app.test_client()
    response = client.post("/portal/request", data={"email": seeded.email_a,
                                                     "csrf_token": csrf_token(client, "/portal/request")})
    assert response.status_code == 200 and "a link is on its way" in text(response)
    assert mails(settings) == []  # the answer is written before the mail server is spoken to
    response.close()
    [mail] = mails(settings)
    assert mail["To"] == seeded.email_a


def test_link_requests_are_rate_limited(app, seeded):
    client = app.test_client()
    token = csrf_token(client, "/portal/request")
    statuses = [client.post("/portal/request", data={"email": "x@example.com", "csrf_token": token},
                            environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def _cli(settings, *args):
    return CliRunner().invoke(cli, list(args), env={"DATABASE_URL": settings.database_url, "SF_AUTH": "none"})


def test_the_command_prints_a_link_by_customer_or_account_id(app, settings):
    from tests.support.portal import seed_portal

    seed_portal(app.extensions["billsync"].engine, account_a="001000000000001AAA")
    done = _cli(settings, "portal", "link", "--account", "cus-portal-a", "--account", "001000000000001AAA")
    assert done.exit_code == 0, done.output
    urls = done.stdout.split()
    assert len(urls) == 2 and all(LINK.fullmatch(url) for url in urls)
    assert all(opens(app, LINK.fullmatch(url).group(1)) for url in urls)
    refused = _cli(settings, "portal", "link", "--account", "nobody", "--account", "cus-portal-b",
                   "--account", "001XXXXXXXXXXXX")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: --account 'nobody': no customer has this id or Salesforce Account id",
        "error: --account '001XXXXXXXXXXXX': no customer has this id or Salesforce Account id"]


def test_the_api_makes_a_link(app, seeded):
    client = app.test_client()
    writer, reader = new_key(app, "crm", "write"), new_key(app, "viewer", "read")
    made = client.post("/api/v1/customers/cus-portal-a/portal-links", headers=bearer(writer))
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["customer_id"] == "cus-portal-a" and datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC)
    assert opens(app, LINK.fullmatch(body["url"]).group(1))
    missing = client.post("/api/v1/customers/nobody/portal-links", headers=bearer(writer))
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    assert client.post("/api/v1/customers/cus-portal-a/portal-links", headers=bearer(reader)).status_code == 403


def test_finance_makes_a_link_on_the_customer_page_and_reads_the_mails(app, settings, seeded):
    engine = app.extensions["billsync"].engine
    now = datetime.now(UTC)
    create_user(engine, "fin@example.com", role="finance", password="correct horse battery staple", now=now)
    create_user(engine, "view@example.com", role="viewer", password="correct horse battery staple", now=now)
    finance = app.test_client()
    assert sign_in(finance, "fin@example.com", "correct horse battery staple").status_code == 303
    page = f"/customers/{seeded.customer_a}"
    assert "Portal link" in text(finance.get(page))
    shown = finance.post(f"{page}/portal-link", data={"csrf_token": csrf_token(finance, page)})
    assert shown.status_code == 200
    assert opens(app, LINK.search(text(shown)).group(1))

    customer = app.test_client()
    customer.post("/portal/request", data={"email": seeded.email_b,
                                           "csrf_token": csrf_token(customer, "/portal/request")}, buffered=True)
    listed = text(finance.get("/mail/"))
    assert seeded.email_b in listed and "Votre lien vers" in listed
    name = re.search(r'href="/mail/([^"]+)"', listed).group(1)
    assert "Beta SARL" in text(finance.get(f"/mail/{name}"))
    assert finance.get("/mail/..%2Fbillsync.db").status_code == 404

    viewer = app.test_client()
    assert sign_in(viewer, "view@example.com", "correct horse battery staple").status_code == 303
    assert "Portal link" not in text(viewer.get(page))
    assert viewer.get("/mail/").status_code == 403
