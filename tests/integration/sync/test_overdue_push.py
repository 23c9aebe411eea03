"""Overdue as an event: the day after its due date an unpaid invoice shows ``overdue`` in Salesforce,
with nothing else on it changed, and its Account shows ``past_due`` (docs/payments.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.storage.invoices import Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.use_cases.payments import record_payment
from connector import scheduler as clock_module
from connector.cli import cli
from connector.database import transaction
from connector.salesforce.soql import build_soql
from connector.sync.push import push_outbox
from tests.support.push import NOW, bill_customers, create_accounts, invoice_key
from tests.support.sandbox import sandbox_environment

INVOICE_FIELDS = ("Name", "Account__c", "Status__c", "Payment_Status__c", "Issue_Date__c", "Due_Date__c",
                  "Period_Start__c", "Period_End__c", "CurrencyIsoCode", "Subtotal__c", "Discount__c", "Tax__c",
                  "Total__c", "Amount_Paid__c", "Balance__c", "Tax_Note__c", "Dunning_Step__c",
                  "Dunning_Step_Date__c")


def salesforce_invoice(client, engine, invoice_id: int) -> dict:
    [record] = client.query_page(build_soql(f"SELECT {', '.join(INVOICE_FIELDS)} FROM Invoice__c "
                                            "WHERE Billsync_Invoice_Id__c = {}", invoice_key(engine, invoice_id))
                                 )["records"]
    return {name: record[name] for name in INVOICE_FIELDS}


def test_an_unpaid_invoice_shows_overdue_the_day_after_its_due_date_and_nothing_else_changes(services, org,
                                                                                           virtual_clock):
    client = services.salesforce()
    accounts = create_accounts(client, 2)
    bill_customers(services.engine, accounts, lines=2)  # issued Nov 1 2026, net 30: due Dec 1
    with Session(services.engine) as session:
        unpaid, paid = session.get(Invoice, 1), session.get(Invoice, 2)
    assert unpaid.due_on == date(2026, 12, 1)
    with transaction(services.engine) as session:
        record_payment(session, customer_id=paid.customer_id, amount=paid.total, currency="EUR",
                       received_on=date(2026, 11, 20), method="transfer", source="bank", external_reference="T-1",
                       now=NOW + timedelta(days=19))
    push_outbox(services, worker_id="w1", now=NOW + timedelta(days=19))
    before = {i: salesforce_invoice(client, services.engine, i) for i in (1, 2)}
    assert before[1]["Payment_Status__c"] == "unpaid" and before[2]["Payment_Status__c"] == "paid"
    account = client.get("Account", accounts[0])
    assert account["Billing_Status__c"] != "past_due"

    # On the due date itself the invoice is not late yet: the clock's job marks nothing.
    virtual_clock.now = datetime(2026, 12, 1, 0, 31, tzinfo=UTC)
    clock_module.run_job("collections", services)
    assert push_outbox(services, worker_id="w1", now=virtual_clock.now).claimed == 0

    # The next day the clock's daily job marks it overdue; the push that follows shows it.
    virtual_clock.now = datetime(2026, 12, 2, 0, 31, tzinfo=UTC)
    clock_module.run_job("collections", services)
    with Session(services.engine) as session:
        topics = [(r.topic, r.aggregate_id) for r in session.scalars(
            select(OutboxRow).where(OutboxRow.status == "pending").order_by(OutboxRow.id))]
    assert topics == [("invoice.overdue", "1"), ("customer.summary_changed", unpaid.customer_id)]
    report = push_outbox(services, worker_id="w1", now=virtual_clock.now + timedelta(minutes=1))
    assert (report.done, report.dead, report.retrying) == (2, 0, 0)

    after = {i: salesforce_invoice(client, services.engine, i) for i in (1, 2)}
    assert after[1]["Payment_Status__c"] == "overdue"
    changed = {name for name in INVOICE_FIELDS if after[1][name] != before[1][name]}
    assert changed == {"Payment_Status__c"}
    assert after[2] == before[2]  # the paid invoice was not touched
    assert client.get("Account", accounts[0])["Billing_Status__c"] == "past_due"
    assert Decimal(str(after[1]["Balance__c"])) == unpaid.total

    # The job ran for today: a second run (a clock restarting) changes nothing.
    clock_module.run_job("collections", services)
    with transaction(services.engine) as session:
        from billing_engine.use_cases.collections import mark_overdue_invoices

        assert mark_overdue_invoices(session, date(2026, 12, 3)).invoices == ()
    assert push_outbox(services, worker_id="w1", now=virtual_clock.now + timedelta(hours=1)).claimed == 0


def test_payments_collections_command_marks_and_says_so(services, org):
    accounts = create_accounts(services.salesforce(), 1)
    bill_customers(services.engine, accounts, lines=1)
    env = sandbox_environment(org, str(services.engine.url.render_as_string(hide_password=False)))
    runner = CliRunner()
    first = runner.invoke(cli, ["payments", "collections", "--as-of", "2026-12-02"], env=env)
    assert first.exit_code == 0, first.output
    assert "1 invoices became overdue (1 customers past due)" in first.output
    assert "overdue: INV-2026-000001 (c000000), due 2026-12-01" in first.output
    again = runner.invoke(cli, ["payments", "collections", "--as-of", "2026-12-02"], env=env)
    assert again.exit_code == 0 and "0 invoices became overdue" in again.output
    bad = runner.invoke(cli, ["payments", "collections", "--as-of", "tomorrow"], env=env)
    assert bad.exit_code == 2 and "error: --as-of: 'tomorrow' is not a date" in bad.output
