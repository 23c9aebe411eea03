"""The push against the sandbox over HTTPS: what lands in Salesforce, ids written back, failures kept."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlmodel import Session

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.use_cases.payments import record_payment
from connector.cli import cli
from connector.database import transaction
from connector.queue import MAX_ATTEMPTS
from connector.salesforce.soql import build_soql
from connector.sync.outbox_claims import retry_dead_letters
from connector.sync.push import push_outbox
from sfsandbox.server import AdminClient
from tests.support.push import (
    NOW,
    bill_customers,
    create_accounts,
    engine_invoices,
    invoice_key,
    outbox_statuses,
    salesforce_invoices,
)
from tests.support.sandbox import sandbox_environment


def rows(engine) -> list[OutboxRow]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all())


def admin_of(org) -> AdminClient:
    return AdminClient(org.url, org.admin_token, org.ca_path)


def test_push_upserts_invoices_lines_and_summaries_and_writes_ids_back(services, org):
    client = services.salesforce()
    accounts = create_accounts(client, 30)
    bill_customers(services.engine, accounts, lines=5)
    calls_before = admin_of(org).stats()["api_calls"]

    report = push_outbox(services, worker_id="w1", now=NOW + timedelta(hours=1))

    # 30 invoices (1 collection) first; then 150 lines (1) + 30 account updates (1): 2 composite calls,
    # after the one call checking that no other installation writes to this org.
    assert (report.done, report.retrying, report.dead) == (60, 0, 0)
    assert report.records_sent == 30 + 150 + 30
    assert (report.composite_calls, report.check_calls) == (2, 1)
    assert admin_of(org).stats()["api_calls"] - calls_before == report.composite_calls + report.check_calls
    state, duplicates = salesforce_invoices(client)
    assert duplicates == []
    assert state == engine_invoices(services.engine)
    first = client.query_page(build_soql(
        "SELECT Name, Total__c, Status__c, Payment_Status__c, CurrencyIsoCode, Account__c, Issue_Date__c, "
        "Due_Date__c, Period_Start__c, Period_End__c, Balance__c FROM Invoice__c WHERE Billsync_Invoice_Id__c = {}",
        invoice_key(services.engine, 1)))["records"][0]
    with Session(services.engine) as session:
        invoice = session.get(Invoice, 1)
        customer = session.get(CustomerRow, invoice.customer_id)
    assert first["Name"] == invoice.number and first["Account__c"] == customer.salesforce_account_id
    assert (first["Status__c"], first["Payment_Status__c"], first["CurrencyIsoCode"]) == ("open", "unpaid", "EUR")
    assert Decimal(str(first["Total__c"])) == invoice.total == Decimal(str(first["Balance__c"]))
    assert (first["Period_Start__c"], first["Period_End__c"]) == ("2026-11-01", "2026-12-01")
    account = client.get("Account", customer.salesforce_account_id)
    assert Decimal(str(account["Balance__c"])) == invoice.total
    assert account["Billsync_Customer_Id__c"] == customer.id and account["Last_Invoice_Date__c"] == "2026-11-01"
    # The Salesforce id of each row's main record is written back on the row.
    invoice_ids = {r["Billsync_Invoice_Id__c"]: r["Id"]
                   for r in client.query_all("SELECT Id, Billsync_Invoice_Id__c FROM Invoice__c")}
    for row in rows(services.engine):
        assert row.status == "done" and row.locked_by is None
        expected = invoice_ids[invoice_key(services.engine, row.aggregate_id)] if row.aggregate_type == "invoice" else None
        if row.aggregate_type == "customer":
            with Session(services.engine) as session:
                expected = session.get(CustomerRow, row.aggregate_id).salesforce_account_id
        assert row.salesforce_id == expected

    # Nothing left: a second push makes no call.
    again = push_outbox(services, worker_id="w1", now=NOW + timedelta(hours=2))
    assert (again.claimed, again.composite_calls) == (0, 0)


def test_a_payment_pushes_the_payment_and_the_invoice_figures_it_changed(services, org):
    client = services.salesforce()
    accounts = create_accounts(client, 2)
    bill_customers(services.engine, accounts, lines=2)
    push_outbox(services, worker_id="w1", now=NOW)
    with transaction(services.engine) as session:
        invoice = session.get(Invoice, 1)
        part = (invoice.total / 2).quantize(Decimal("0.01"))
        record_payment(session, customer_id=invoice.customer_id, amount=part, currency="EUR",
                          received_on=date(2026, 11, 5), method="transfer", source="bank", external_reference="TX-1",
                          now=NOW + timedelta(days=4))

    report = push_outbox(services, worker_id="w1", now=NOW + timedelta(days=4))

    assert report.done == 2 and report.dead == report.retrying == 0  # payment.recorded + summary
    pay = client.query_page("SELECT Amount__c, Invoice__c, Status__c, Payment_Date__c, Reference__c FROM Payment__c"
                            )["records"]
    [inv] = client.query_page(build_soql("SELECT Id, Amount_Paid__c, Balance__c, Payment_Status__c FROM Invoice__c "
                                         "WHERE Billsync_Invoice_Id__c = {}", invoice_key(services.engine, 1)))["records"]
    assert len(pay) == 1 and Decimal(str(pay[0]["Amount__c"])) == part and pay[0]["Invoice__c"] == inv["Id"]
    assert (pay[0]["Status__c"], pay[0]["Payment_Date__c"], pay[0]["Reference__c"]) == ("succeeded", "2026-11-05",
                                                                                         "TX-1")
    assert Decimal(str(inv["Amount_Paid__c"])) == part and inv["Payment_Status__c"] == "partially_paid"
    assert Decimal(str(inv["Balance__c"])) == invoice.total - part
    state, duplicates = salesforce_invoices(client)
    assert duplicates == [] and state == engine_invoices(services.engine)


def test_record_errors_stay_on_the_row_back_off_then_dead_letter_until_retried(services, org):
    client = services.salesforce()
    accounts = create_accounts(client, 3)
    bill_customers(services.engine, accounts, lines=2)
    # Someone deletes customer c000001's Account in Salesforce: its invoice cannot be attached to it.
    client._call("DELETE", "sobjects/Account", lambda sf: sf.Account.delete(accounts[1]))

    report = push_outbox(services, worker_id="w1", now=NOW)

    assert report.done == 4 and report.retrying == 2  # the other customers' rows are not held back
    by_key = {(r.aggregate_type, r.aggregate_id): r for r in rows(services.engine)}
    bad = by_key[("invoice", "2")]
    assert bad.status == "pending" and bad.attempts == 1
    assert "Account__c" in bad.last_error or "ENTITY_IS_DELETED" in bad.last_error \
        or "INVALID_CROSS_REFERENCE_KEY" in bad.last_error, bad.last_error
    assert bad.next_attempt_at.replace(tzinfo=None) == (NOW + timedelta(minutes=1)).replace(tzinfo=None)
    # Not due yet: a push a few seconds later leaves it alone.
    assert push_outbox(services, worker_id="w1", now=NOW + timedelta(seconds=30)).claimed == 0

    at = NOW
    for _ in range(MAX_ATTEMPTS - 1):
        at += timedelta(hours=1)
        push_outbox(services, worker_id="w1", now=at)
    bad = {(r.aggregate_type, r.aggregate_id): r for r in rows(services.engine)}[("invoice", "2")]
    assert bad.status == "dead" and bad.attempts == MAX_ATTEMPTS
    assert push_outbox(services, worker_id="w1", now=at + timedelta(days=1)).claimed == 0  # parked

    env = sandbox_environment(org, str(services.engine.url.render_as_string(hide_password=False)))
    runner = CliRunner()
    status = runner.invoke(cli, ["sync", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "0 in flight" in status.output and "2 dead" in status.output
    assert f"last push {at.isoformat(timespec='seconds')}: pushed 2 outbox rows in 1 batches" in status.output
    assert f"#{bad.id} invoice.finalized invoice 2: {MAX_ATTEMPTS} attempts" in status.output
    assert "API usage" in status.output and "Pull (cursors)" in status.output
    assert "Notifications (webhook inbox)" in status.output

    # The admin links the customer to a live Account, then re-queues the dead letters.
    [fresh] = create_accounts(client, 1, prefix="Fresh")
    with transaction(services.engine) as session:
        session.execute(update(CustomerRow).where(CustomerRow.id == "c000001").values(salesforce_account_id=fresh))
    retried = runner.invoke(cli, ["sync", "retry", "--id", str(bad.id)], env=env)
    assert retried.exit_code == 0 and "re-queued 1 outbox row and 0 notifications;" in retried.output
    with transaction(services.engine) as session:
        assert retry_dead_letters(session) == 1  # the summary row, dead too
    final = push_outbox(services, worker_id="w1", now=at + timedelta(days=1))
    assert final.done == 2 and outbox_statuses(services.engine) == {"done": 6}
    state, duplicates = salesforce_invoices(client)
    assert duplicates == [] and state == engine_invoices(services.engine)


def test_sync_push_command_prints_what_it_did(services, org):
    accounts = create_accounts(services.salesforce(), 3)
    bill_customers(services.engine, accounts, lines=1)
    env = sandbox_environment(org, str(services.engine.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(cli, ["sync", "push"], env=env)
    assert result.exit_code == 0, result.output
    assert "pushed 6 outbox rows in 1 batches: 6 done, 0 to retry, 0 dead" in result.output
    assert "9 records in 2 composite calls" in result.output


@pytest.mark.parametrize("topic", ["no.such.topic"])
def test_a_row_the_push_cannot_deliver_is_kept_with_its_reason(services, org, topic):
    with transaction(services.engine) as session:
        session.add(OutboxRow(topic=topic, aggregate_type="thing", aggregate_id="1", payload="{}", created_at=NOW))
    report = push_outbox(services, worker_id="w1", now=NOW)
    [row] = rows(services.engine)
    assert report.retrying == 1 and row.status == "pending" and row.attempts == 1
    assert row.last_error == f"no push is defined for topic {topic!r}"


def test_broken_mapping_files_stop_the_push_before_anything_is_marked_delivered(services, org, tmp_path):
    accounts = create_accounts(services.salesforce(), 2)
    bill_customers(services.engine, accounts, lines=1)
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "invoice.yaml").write_text("outbound: [\n")
    env = sandbox_environment(org, str(services.engine.url.render_as_string(hide_password=False)),
                              MAPPINGS_DIR=str(mappings))
    result = CliRunner().invoke(cli, ["sync", "push"], env=env)
    assert result.exit_code == 2, result.output
    assert f"{mappings}/invoice.yaml" in result.output and "Traceback" not in result.output
    assert outbox_statuses(services.engine) == {"pending": 4}
    assert salesforce_invoices(services.salesforce())[0] == {}


def test_an_end_of_term_cancellation_shows_cancelling_then_cancelled_on_the_account_and_its_deal(services, org):
    """A 12-month deal cancelled at the end of its term, seen mid-term: the Account and the won
    Opportunity show `cancelling` and the last day billed; after the bill run of the end date, both
    show `cancelled` and the Account's MRR drops to 0.00, with no other change to the subscription."""
    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import SubscriptionItem, make_subscription
    from billing_engine.use_cases.billing import bill_customers as bill_run
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import cancel_subscription, start_subscription
    from tests.support.sandbox import client as sandbox_client

    sf = sandbox_client(org)
    account = sf.Account.create({"Name": "Ending GmbH", "CurrencyIsoCode": "EUR"})["id"]
    deal = sf.Opportunity.create({"Name": "Ending GmbH - New", "AccountId": account, "StageName": "Closed Won",
                                  "CloseDate": "2026-01-01", "CurrencyIsoCode": "EUR"})["id"]
    plan = make_price("pr-end", make_product("p-end", "END", "Plan"), currency="EUR", model="flat", unit_price="500")
    start = date(2026, 1, 1)
    with transaction(services.engine) as session:
        upsert_customer(session, Customer("cus-end", "Ending GmbH", "EUR", payment_terms_days=365,
                                          salesforce_account_id=account))
        upsert_product(session, plan.product)
        upsert_price(session, plan)
        start_subscription(session, make_subscription("sub-end", "cus-end", "EUR", start,
                                                      [SubscriptionItem("end-plan", plan)], term_months=12,
                                                      auto_renew=False, external_key=deal))
    bill_run(services.engine, start)

    def shown(day: date) -> tuple[tuple, tuple]:
        report = push_outbox(services, worker_id="w1", now=datetime.combine(day, time(6), tzinfo=UTC))
        assert report.dead == report.retrying == 0
        acc = sf.Account.get(account)
        opp = sf.Opportunity.get(deal)
        return ((acc["Billing_Status__c"], acc["Billing_Ends_On__c"], Decimal(str(acc["MRR__c"]))),
                (opp["Billsync_Subscription_Id__c"], opp["Billsync_Subscription_Status__c"],
                 opp["Billsync_Subscription_Ends_On__c"]))

    assert shown(date(2026, 1, 2)) == (("active", None, Decimal("500.00")), ("sub-end", "active", None))

    with transaction(services.engine) as session:
        cancel_subscription(session, "sub-end", date(2026, 6, 10),  # at the end of the term
                            now=datetime(2026, 6, 10, 9, tzinfo=UTC))
    assert shown(date(2026, 6, 10)) == (("cancelling", "2026-12-31", Decimal("500.00")),
                                        ("sub-end", "cancelling", "2026-12-31"))

    bill_run(services.engine, date(2027, 1, 1), now=datetime(2027, 1, 1, 5, tzinfo=UTC))
    assert shown(date(2027, 1, 1)) == (("cancelled", "2026-12-31", Decimal("0.00")),
                                       ("sub-end", "cancelled", "2026-12-31"))
