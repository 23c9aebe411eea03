"""Finance, viewers and admins in the web console, in a real browser (docs/console.md)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from billing_engine.use_cases import audit
from connector.database import transaction
from tests.e2e.console.conftest import PASSWORD, screenshot, sign_in, spaces


def row_numbers(page) -> list[str]:
    return [t.strip() for t in page.locator("table.data tbody tr td:first-child").all_inner_texts()]


def test_finance_filters_invoices_reads_a_tiered_line_and_records_a_partial_payment(page, console):
    page.goto(console.url + "/invoices/")
    expect(page.locator("h1")).to_have_text("Sign in to billsync")
    screenshot(page, "sign-in")
    sign_in(page, console, "fin@example.com")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("nav.sections a")).to_have_text(["Dashboard", "Invoices", "Customers", "Review", "Sync", "Jobs",
                                                                 "Exchange rates", "Mail"])
    page.click("nav.sections >> text=Invoices")
    assert row_numbers(page) == ["INV-2026-000002", "INV-2026-000001"]
    screenshot(page, "invoices")

    page.fill("#currency", "EUR")
    page.select_option("#status", "open")
    page.click("text=Filter")
    expect(page.locator("table.data tbody tr")).to_have_count(1)
    assert row_numbers(page) == ["INV-2026-000001"]
    assert "€4,290.00" in page.locator("table.data tbody tr").inner_text()

    page.click("text=INV-2026-000001")
    expect(page.locator("h1")).to_contain_text("INV-2026-000001")
    first_line = page.locator("table.lines tbody tr").first
    expect(first_line.locator(".explanation")).to_have_text("Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100")
    expect(first_line.locator("td").nth(6)).to_have_text("€1,950.00")
    expect(page.locator("#amount-due")).to_have_text("€4,290.00")
    screenshot(page, "invoice")

    page.fill("#pay-amount", "1,000.00")
    page.fill("#pay-reference", "BANK-7731")
    page.click("text=Record the payment")
    expect(page.locator(".notice.success")).to_have_text("The payment is recorded.")
    expect(page.locator("#amount-due")).to_have_text("€3,290.00")
    expect(page.locator("dl.totals")).to_contain_text("Paid€1,000.00")
    expect(page.locator("table.data", has_text="BANK-7731")).to_contain_text("€1,000.00")
    screenshot(page, "invoice-paid")

    page.click("a:has-text('Customer cus-a') >> nth=0")
    expect(page.locator("h1")).to_contain_text("Customer cus-a")
    expect(page.locator(".balance-due")).to_have_text("€3,290.00")
    timeline = page.locator("ol.timeline").inner_text()
    assert "Payment" in timeline and "BANK-7731" in timeline and "Subscription started" in timeline
    assert "MRR changed" in timeline
    screenshot(page, "customer")
    page.click("nav.sections >> text=Customers")
    expect(page.locator("table.data tbody tr", has_text="Customer cus-a")).to_contain_text("€3,290.00")
    screenshot(page, "customers")

    with transaction(console.engine) as session:
        [entry] = [e for e in audit.list_actions(session, limit=10) if e.action == "payment.record"]
    assert entry.actor == "console:fin@example.com"


def test_the_same_journey_in_french(french_page, console, browser):
    page = french_page
    sign_in(page, console, "fin@example.com")
    expect(page.locator("h1")).to_have_text("Tableau de bord")
    expect(page.locator("nav.sections a")).to_have_text(["Tableau de bord", "Factures", "Clients", "Revue",
                                                                 "Synchro", "Tâches", "Taux de change", "Courriels"])
    page.click("nav.sections >> text=Factures")
    page.select_option("#status", "open")
    page.fill("#currency", "EUR")
    page.click("text=Filtrer")
    assert spaces(page.locator("table.data tbody tr").inner_text()).count("4 290,00 €") == 2
    page.click("text=INV-2026-000001")
    expect(page.locator("table.lines thead")).to_contain_text("Prix unitaire")
    assert spaces(page.locator("table.lines tbody tr").first.locator("td").nth(6).inner_text()) == "1 950,00 €"
    screenshot(page, "facture")

    page.fill("#pay-amount", "1 000,50")
    page.click("text=Enregistrer le paiement")
    expect(page.locator(".notice.success")).to_have_text("Le paiement est enregistré.")
    assert spaces(page.locator("#amount-due").inner_text()) == "3 289,50 €"
    page.click("a:has-text('Customer cus-a') >> nth=0")
    expect(page.locator("h2").first).to_have_text("Relevé de compte")
    assert spaces(page.locator(".balance-due").inner_text()) == "3 289,50 €"
    screenshot(page, "client")

    # Choosing English is kept on the user: another browser, set to French, then gets English.
    page.select_option("#locale", "en")
    expect(page.locator("h2").first).to_have_text("Statement")
    other = browser.new_context(locale="fr-FR")
    try:
        elsewhere = other.new_page()
        sign_in(elsewhere, console, "fin@example.com")
        expect(elsewhere.locator("h1")).to_have_text("Dashboard")
    finally:
        other.close()


def test_a_viewer_sees_no_action_and_cannot_post_one(page, console):
    sign_in(page, console, "view@example.com")
    page.goto(console.url + "/invoices/1")
    expect(page.locator("h1")).to_contain_text("INV-2026-000001")
    expect(page.locator("form.action")).to_have_count(0)
    expect(page.locator("text=Record the payment")).to_have_count(0)
    screenshot(page, "invoice-viewer")
    token = page.locator("form.language input[name=csrf_token]").get_attribute("value")
    response = page.request.post(console.url + "/invoices/1/payments", form={
        "csrf_token": token, "amount": "100.00", "received_on": "2026-02-10", "reference": "SNEAKY"})
    assert response.status == 403
    assert "Your role does not allow this action." in response.text()
    page.reload()
    expect(page.locator("#amount-due")).to_have_text("€4,290.00")


def test_a_form_without_its_csrf_token_is_refused(page, console):
    sign_in(page, console, "fin@example.com")
    page.goto(console.url + "/invoices/1")
    response = page.request.post(console.url + "/invoices/1/payments", form={
        "amount": "100.00", "received_on": "2026-02-10"})
    assert response.status == 400
    assert "The form has expired" in response.text()
    page.evaluate("document.querySelector('#payment-form input[name=csrf_token]').remove()")
    page.click("text=Record the payment")
    expect(page.locator("h1")).to_have_text("The form has expired")
    screenshot(page, "csrf-refused")
    page.goto(console.url + "/invoices/1")
    expect(page.locator("#amount-due")).to_have_text("€4,290.00")


def test_five_wrong_passwords_lock_the_account(page, console):
    for _ in range(4):
        sign_in(page, console, "fin@example.com", "not the password")
        expect(page.locator(".notice.error")).to_have_text("Wrong e-mail address or password.")
    sign_in(page, console, "fin@example.com", "not the password")
    expect(page.locator(".notice.error")).to_have_text(
        re.compile("Too many wrong passwords: this account is locked for 15 minutes."))
    sign_in(page, console, "fin@example.com", PASSWORD)
    expect(page.locator(".notice.error")).to_contain_text("locked")
    screenshot(page, "locked")
    # Another user is not affected.
    sign_in(page, console, "admin@example.com", PASSWORD)
    expect(page.locator("h1")).to_have_text("Dashboard")
