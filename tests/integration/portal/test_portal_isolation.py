"""A customer's portal session reaches only that customer's records: every portal route is tried
from customer B's session with customer A's ids (and with ids B's session signed itself for A's
records); none opens, changes or downloads anything of A."""

from __future__ import annotations

import re
from decimal import Decimal

from flask import g

from billing_engine.use_cases import invoices, subscriptions
from billing_engine.use_cases.billing import issue_credit_note
from connector.database import transaction
from connector.documents.generate import generate_documents
from connector.portal.pages import PUBLIC, public_id
from tests.integration.portal.conftest import csrf_token


def text(response) -> str:
    return response.get_data(as_text=True)


def _signed(app, customer_id: str, kind: str, value) -> str:
    with app.test_request_context():
        g.portal_customer = customer_id
        return public_id(kind, value)


def _a_records(app, seeded, customer_a) -> dict[str, str]:
    """Customer A's ids as A's own pages show them: a subscription, a preview, an invoice, a credit note."""
    engine = app.extensions["billsync"].engine
    with transaction(engine) as session:
        [invoice] = invoices.list_invoices(session, as_of=seeded.today, filters=invoices.InvoiceFilters(
            customer_id=seeded.customer_a)).items
        credit_note = issue_credit_note(session, invoice.invoice_id, amount=Decimal("10.00"), reason="goodwill",
                                        on=seeded.today)
    report = generate_documents(app.extensions["billsync"])
    assert report.generated >= 2 and not report.failed, report.failed
    home = text(customer_a.get("/portal/"))
    sid = re.search(r'href="/portal/subscriptions/([^"]+)"', home).group(1)
    page = f"/portal/subscriptions/{sid}"
    change = customer_a.post(f"{page}/quantity", data={"csrf_token": csrf_token(customer_a, page),
                                                       "item": "cus-portal-a-seats", "quantity": "15"})
    documents = text(customer_a.get("/portal/documents"))
    iid = re.search(r'href="/portal/invoices/([^"/]+)/pdf"', documents).group(1)
    cid = re.search(r'href="/portal/credit-notes/([^"/]+)/pdf"', documents).group(1)
    return {"sid": sid, "change_id": change.headers["Location"].rsplit("/", 1)[1], "iid": iid, "cid": cid,
            "raw_invoice": str(invoice.invoice_id), "raw_credit_note": str(credit_note)}


def _portal_rules(app):
    return [rule for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("portal.") and rule.endpoint not in PUBLIC]


def test_customer_b_reaches_nothing_of_customer_a(app, seeded, customer_a, customer_b):
    ids = _a_records(app, seeded, customer_a)
    forged = {  # ids B's own session signed, naming A's records: refused by the ownership checks
        "sid": _signed(app, seeded.customer_b, "subscription", "sub-cus-portal-a"),
        "iid": _signed(app, seeded.customer_b, "invoice", int(ids["raw_invoice"])),
        "cid": _signed(app, seeded.customer_b, "credit_note", int(ids["raw_credit_note"])),
    }
    raw = {"sid": "sub-cus-portal-a", "iid": ids["raw_invoice"], "cid": ids["raw_credit_note"],
           "change_id": ids["change_id"]}
    rules = _portal_rules(app)
    with_ids = [rule for rule in rules if rule.arguments]
    assert {arg for rule in with_ids for arg in rule.arguments} <= {"sid", "change_id", "iid", "cid"}
    assert len(with_ids) >= 7  # subscription, quantity, cancel, change, confirm, invoice and credit note PDFs
    token = csrf_token(customer_b, "/portal/")
    tried = 0
    for rule in with_ids:
        for values in (ids, forged, raw):
            if not set(rule.arguments) <= values.keys():
                continue
            url = rule.rule
            for arg in rule.arguments:
                url = url.replace(f"<{arg}>", values[arg])
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                data = {"csrf_token": token, "item": "cus-portal-a-seats", "quantity": "20",
                        "reason": "other", "details": "not mine"} if method == "POST" else None
                response = customer_b.open(url, method=method, data=data)
                assert response.status_code == 404, (rule.endpoint, method, url, response.status_code)
                assert "Alpha" not in text(response)
                tried += 1
    assert tried >= 15
    # The pages without ids show only B's records.
    for rule in rules:
        if not rule.arguments and "GET" in rule.methods:
            body = text(customer_b.get(rule.rule))
            assert "Alpha SAS" not in body and ids["iid"] not in body
    # Nothing of A changed; A still reaches its own records.
    with transaction(app.extensions["billsync"].engine) as session:
        sub = subscriptions.get_subscription(session, "sub-cus-portal-a")
    assert len(sub.amendments) == 0 and sub.ends_before is None
    assert customer_a.get(f"/portal/subscriptions/{ids['sid']}").status_code == 200
    assert customer_a.get(f"/portal/changes/{ids['change_id']}").status_code == 200
    for path in (f"/portal/invoices/{ids['iid']}/pdf", f"/portal/credit-notes/{ids['cid']}/pdf"):
        pdf = customer_a.get(path)
        assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF"), path


def test_without_a_session_every_page_asks_for_a_link(app, seeded):
    client = app.test_client()
    for rule in _portal_rules(app):
        if "GET" in rule.methods and not rule.arguments:
            response = client.get(rule.rule)
            assert response.status_code == 401 and "Get a new link by e-mail" in text(response), rule.rule
