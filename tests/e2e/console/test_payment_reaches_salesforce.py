"""Finance records a partial payment in the console, with the sandbox standing in for the org: the
invoice and the customer page show the new balance at once, and after the push the invoice's and
the Account's records in Salesforce show it too, to the cent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session

from billing_engine.use_cases import invoices
from connector import create_app
from connector.console.users import create_user
from connector.sync.installation import keys_of
from connector.sync.push import push_outbox
from tests.e2e.console.conftest import PASSWORD, Console, _tab, screenshot, sign_in
from tests.support.api import live_server
from tests.support.push import bill_customers, create_accounts


@pytest.fixture
def connected(services, connected_settings):
    """One customer billed for November 2026 and pushed to the sandbox, and a finance user."""
    [account] = create_accounts(services.salesforce(), 1)
    bill_customers(services.engine, [account], lines=2)
    push_outbox(services, worker_id="w1")
    app = create_app(connected_settings)
    create_user(services.engine, "fin@example.com", role="finance", password=PASSWORD, now=datetime.now(UTC),
                name="Fiona Finance")
    with live_server(app) as url:
        yield Console(url, app), account


@pytest.fixture
def tab(browser, connected):
    yield from _tab(browser, "en-US")


def money_text(amount: Decimal) -> str:
    return f"€{amount:,.2f}"


def test_a_partial_payment_shows_on_the_customer_page_and_after_a_push_in_salesforce(tab, connected, services):
    page, (console, account) = tab, connected
    with Session(services.engine) as session:
        [listed] = invoices.list_invoices(session, as_of=datetime.now(UTC).date()).items
        invoice = invoices.get_invoice(session, listed.invoice_id, as_of=datetime.now(UTC).date())
    due = invoice.amount_due.amount
    paid = (due / 3).quantize(Decimal("0.01"))
    assert 0 < paid < due

    sign_in(page, console, "fin@example.com")
    page.goto(f"{console.url}/invoices/{invoice.invoice_id}")
    assert page.inner_text("#amount-due") == money_text(due)
    page.fill("#pay-amount", str(paid))
    page.fill("#pay-reference", "BANK-SF-1")
    page.click("text=Record the payment")
    assert page.inner_text(".notice.success") == "The payment is recorded."
    assert page.inner_text("#amount-due") == money_text(due - paid)
    page.click(f"a[href$='/customers/{invoice.customer_id}'] >> nth=0")
    assert page.inner_text(".balance-due") == money_text(due - paid)
    screenshot(page, "customer-after-payment")

    push_outbox(services, worker_id="w1")
    sf = services.salesforce()
    key = keys_of(services.engine).invoice(invoice.invoice_id)
    [record] = sf.query_all(f"SELECT Amount_Paid__c, Balance__c FROM Invoice__c "
                            f"WHERE Billsync_Invoice_Id__c = '{key}'")
    assert (Decimal(str(record["Amount_Paid__c"])), Decimal(str(record["Balance__c"]))) == (paid, due - paid)
    [summary] = sf.query_all(f"SELECT Balance__c FROM Account WHERE Id = '{account}'")
    assert Decimal(str(summary["Balance__c"])) == due - paid
