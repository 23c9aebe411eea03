"""Invoices and customers in the console: filters, pages, actions and their refusals (docs/console.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from billing_engine.use_cases import audit
from connector.database import transaction
from tests.integration.console.conftest import csrf_token


def text(response) -> str:
    return response.get_data(as_text=True)


def test_filters_keep_only_matching_invoices(finance):
    body = text(finance.get("/invoices/?currency=USD"))
    assert "INV-2026-000002" in body and "INV-2026-000001" not in body
    body = text(finance.get("/invoices/?number=INV-2026-000001"))
    assert "INV-2026-000001" in body and "INV-2026-000002" not in body
    assert "No invoice matches" in text(finance.get("/invoices/?issued_from=2026-03-01"))


def test_bad_filters_are_a_message_not_an_error(finance):
    response = finance.get("/invoices/?currency=EURO&issued_from=yesterday")
    assert response.status_code == 422
    assert "Check the filters: Currency, Issued from." in text(response)
    response = finance.get("/invoices/?after=nonsense")
    assert response.status_code == 422 and "is not a cursor" in text(response)


def test_pages_follow_each_other(app, finance, monkeypatch):
    import connector.console.invoices as pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    first = text(finance.get("/invoices/?status=open"))
    assert "INV-2026-000002" in first and "INV-2026-000001" not in first
    next_url = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = text(finance.get(next_url))
    assert "INV-2026-000001" in second and "INV-2026-000002" not in second


def test_bad_payment_input_is_shown_on_the_page(finance):
    for amount, message in (("abc", "abc is not an amount."), ("-5", "The amount must be more than zero."),
                            ("10.001", "Invalid value for amount")):
        response = finance.post("/invoices/1/payments", data={
            "amount": amount, "received_on": "2026-02-10", "csrf_token": csrf_token(finance, "/invoices/1")})
        assert response.status_code == 422, amount
        assert message in text(response), amount
    assert "€4,290.00" in text(finance.get("/invoices/1"))


def test_a_refused_action_is_explained(finance):
    response = finance.post("/invoices/1/credit-notes", data={
        "amount": "99999.00", "reason": "too much", "csrf_token": csrf_token(finance, "/invoices/1")})
    assert response.status_code == 422
    assert "credit" in text(response).lower()
    assert finance.get("/invoices/999999").status_code == 404


def test_a_credit_note_and_a_void_are_audited_with_the_user(app, finance):
    response = finance.post("/invoices/2/credit-notes", data={
        "amount": "100.00", "reason": "goodwill", "csrf_token": csrf_token(finance, "/invoices/2")})
    assert response.status_code == 303
    page = text(finance.get("/invoices/2"))
    assert "is issued" in page and "goodwill" in page and "$500.00" in page
    response = finance.post("/invoices/1/void", data={"reason": "sent twice",
                                                      "csrf_token": csrf_token(finance, "/invoices/1")})
    assert response.status_code == 303
    assert "The invoice is void." in text(finance.get("/invoices/1"))
    with transaction(app.extensions["billsync"].engine) as session:
        entries = audit.list_actions(session, limit=10)
    assert {(e.action, e.actor) for e in entries} == {("invoice.credit", "console:fin@example.com"),
                                                      ("invoice.void", "console:fin@example.com")}


def test_customers_list_shows_mrr_balance_and_status(finance):
    body = text(finance.get("/customers/"))
    row = body.split("Customer cus-a")[1].split("</tr>")[0]
    assert "€2,475.00" in row and "€4,290.00" in row and "Overdue" in row
    page = text(finance.get("/customers/cus-a"))
    assert "Opening balance" in page and "Closing balance" in page and "Subscription started" in page


def test_an_invoice_links_its_pdf_and_its_salesforce_record(app, settings, client):
    from datetime import UTC, datetime

    from sqlalchemy import text as sql

    from billing_engine.use_cases.documents import RenderedDocument, store_documents
    from connector import create_app
    from tests.integration.console.conftest import sign_in

    engine = app.extensions["billsync"].engine
    with transaction(engine) as session:
        store_documents(session, [RenderedDocument("invoice", 1, "INV-2026-000001", "en", b"%PDF-1.7 test")],
                        now=datetime.now(UTC))
        session.execute(sql("UPDATE invoices SET salesforce_id = 'a0B5g00000AbCdEAAV' WHERE id = 1"))
    connected = create_app(settings.replace(sf_auth="session", sf_instance_url="https://acme.my.salesforce.com"))
    browser = connected.test_client()
    sign_in(browser, "fin@example.com")
    page = text(browser.get("/invoices/1"))
    assert 'href="https://acme.my.salesforce.com/a0B5g00000AbCdEAAV"' in page
    assert 'href="/invoices/1/pdf"' in page
    pdf = browser.get("/invoices/1/pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data == b"%PDF-1.7 test"
    unsigned = text(client.get("/invoices/2", follow_redirects=True))
    assert "/invoices/2/pdf" not in unsigned
    sign_in(client, "fin@example.com")
    second = text(client.get("/invoices/2"))
    assert "/invoices/2/pdf" not in second and "salesforce.com" not in second
    assert browser.get("/invoices/2/pdf").status_code == 404


def test_a_payment_or_credit_note_form_sent_twice_is_carried_out_once(app, finance):
    from billing_engine.use_cases import invoices

    page = finance.get("/invoices/1").get_data(as_text=True)
    [key] = re.findall(r'name="submission" value="([0-9a-f]{32})"', page.split('id="payment-form"')[1])[:1]
    form = {"amount": "100.00", "received_on": "2026-02-10", "submission": key,
            "csrf_token": csrf_token(finance, "/invoices/1")}
    first, again = finance.post("/invoices/1/payments", data=form), finance.post("/invoices/1/payments", data=form)
    assert (first.status_code, again.status_code) == (303, 303)
    assert "This form was already sent: nothing changed." in text(finance.get("/invoices/1"))
    with transaction(app.extensions["billsync"].engine) as session:
        detail = invoices.get_invoice(session, 1, as_of=datetime.now(UTC).date())
    assert [p.amount.amount for p in detail.payments] == [Decimal("100.00")]

    credit = {"amount": "10.00", "reason": "goodwill", "submission": "ab" * 16,
              "csrf_token": csrf_token(finance, "/invoices/2")}
    assert finance.post("/invoices/2/credit-notes", data=credit).status_code == 303
    assert finance.post("/invoices/2/credit-notes", data=credit).status_code == 303
    with transaction(app.extensions["billsync"].engine) as session:
        assert len(invoices.get_invoice(session, 2, as_of=datetime.now(UTC).date()).credit_notes) == 1
    bad = finance.post("/invoices/2/credit-notes", data={**credit, "submission": "not-a-key"})
    assert bad.status_code == 422
