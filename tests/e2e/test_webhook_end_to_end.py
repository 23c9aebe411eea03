"""A deal won in Salesforce becomes a subscription, and its invoice goes back, with no manual
step: the sandbox's notifications reach billsync's real webhook endpoints over HTTP, the
worker's inbox processing re-reads the records, the bill run invoices, the push writes
Invoice__c.

- Outbound Messages on Opportunity (criteria ``IsWon = true``), each message delivered twice
  and its notifications shuffled: exactly one subscription.
- The CDC relay (signed events): the same, plus a GAP_UPDATE (only that record is read
  again) and a GAP_OVERFLOW (the whole object is resynced, picking up a change made while
  notifications were off); the events echoing billsync's own writes are recognised and
  cost no Salesforce call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal

import pytest
from simple_salesforce import Salesforce
from sqlalchemy import func, select
from sqlmodel import Session
from werkzeug.serving import make_server

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.subscriptions import SubscriptionRow
from connector.billing_jobs import run_bill_run
from connector.sync.push import push_outbox
from connector.webhooks.inbox import WebhookInbox
from connector.webhooks.processing import OWN_CHANGE_NOTE, inbox_status, process_inbox
from connector.wiring import build_app, build_services
from sfsandbox.notify import CdcConfig

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

TOKEN = "e2e-webhook-token"
SECRET = "e2e-cdc-secret"
STARTS_ON = "2026-11-02"
REP_CLIENT = "SfdcSalesConsole"  # the sales rep's app: not billsync's connected app


@pytest.fixture
def billsync(org, connected_settings) -> Iterator[tuple[str, object]]:
    """billsync's web app on a free loopback port (webhooks configured) and the worker's services."""
    settings = connected_settings.replace(webhook_token=TOKEN, cdc_hmac_secret=SECRET)
    server = make_server("127.0.0.1", 0, build_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    services = build_services(settings)
    try:
        yield f"http://127.0.0.1:{server.server_port}", services
    finally:
        server.shutdown()
        server.server_close()
        services.engine.dispose()


def rep(org) -> Salesforce:
    """A sales rep working in Salesforce through another app than billsync's."""
    token = org.auth.issue(REP_CLIENT, org.url)["access_token"]
    return Salesforce(instance_url=org.url, session_id=token, session=org.requests_session(), version="59.0",
                      parse_float=Decimal)


def new_deal(sf: Salesforce) -> tuple[str, str]:
    """An open Platform-fee deal (500.00 EUR a month) for a EUR account: (opportunity, account)."""
    account = sf.query("SELECT Id FROM Account WHERE CurrencyIsoCode = 'EUR' ORDER BY Name LIMIT 1")["records"][0]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'PLATFORM' "
                     "AND CurrencyIsoCode = 'EUR' AND Pricebook2.IsStandard = true")["records"][0]["Id"]
    opportunity = sf.Opportunity.create({"Name": "Webhook deal", "AccountId": account["Id"], "StageName": "Negotiation",
                                         "CloseDate": STARTS_ON, "Type": "New Business", "Pricebook2Id": book,
                                         "Term_Months__c": 12})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 1,
                                   "UnitPrice": 500})
    return opportunity, account["Id"]


def close_won(sf: Salesforce, opportunity: str) -> None:
    """Two changes to the deal in one Salesforce transaction: two notifications, sent together."""
    path = f"/services/data/v59.0/sobjects/Opportunity/{opportunity}"
    result = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "PATCH", "url": path, "referenceId": "won", "body": {"StageName": "Closed Won"}},
        {"method": "PATCH", "url": path, "referenceId": "next", "body": {"Description": "Kick-off call booked"}},
    ]})
    assert [r["httpStatusCode"] for r in result["compositeResponse"]] == [204, 204]


def wait_for(what: str, condition: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def at_least(count: int, items: list) -> list | None:
    return items if len(items) >= count else None


def inbox_rows(services, **where) -> list[WebhookInbox]:
    with Session(services.engine) as session:
        query = select(WebhookInbox).order_by(WebhookInbox.id)
        for name, value in where.items():
            query = query.where(getattr(WebhookInbox, name) == value)
        return list(session.execute(query).scalars())


def subscriptions(services) -> list[SubscriptionRow]:
    with Session(services.engine) as session:
        return list(session.execute(select(SubscriptionRow)).scalars())


def pending_outbox(services) -> int:
    with Session(services.engine) as session:
        return session.execute(select(func.count()).select_from(OutboxRow)
                               .where(OutboxRow.status.in_(("pending", "in_flight")))).scalar_one()


def process(services) -> None:
    """The worker's inbox drain, until every row is settled."""
    for _ in range(10):
        process_inbox(services, worker_id="e2e")
        with Session(services.engine) as session:
            status = inbox_status(session)
        counts = status.counts
        if counts["pending"] == counts["in_flight"] == 0:
            assert counts["failed"] == counts["dead"] == 0, status.failed + status.dead
            return
    raise AssertionError(f"inbox not drained: {counts}")


def bill_and_push(services, sf: Salesforce, opportunity: str, account: str) -> dict:
    result = run_bill_run(services, date.fromisoformat(STARTS_ON))
    assert (result.invoices_finalized, result.failures) == (1, {})
    for _ in range(10):
        push_outbox(services, worker_id="e2e", batch_size=200)
        if pending_outbox(services) == 0:
            break
    assert pending_outbox(services) == 0
    [invoice] = sf.query_all("SELECT Id, Account__c, Opportunity__c, Subtotal__c, Status__c, CurrencyIsoCode "
                             "FROM Invoice__c")["records"]
    assert (invoice["Account__c"], invoice["Opportunity__c"]) == (account, opportunity)
    assert (invoice["Subtotal__c"], invoice["CurrencyIsoCode"], invoice["Status__c"]) == (Decimal("500.00"), "EUR",
                                                                                            "open")
    return invoice


def test_a_deal_won_in_salesforce_is_billed_through_outbound_messages(org, billsync):
    base, services = billsync
    org.seed("small", 0)
    sf = rep(org)
    opportunity, account = new_deal(sf)
    org.configure_faults(duplicate_notifications=True, reorder_notifications=True, seed=1)
    org.add_outbound_message("Opportunity", ["Id", "StageName", "AccountId", "CloseDate"],
                             f"{base}/webhooks/salesforce/outbound-message/{TOKEN}", condition="IsWon = true")
    existing = len(subscriptions(services))

    close_won(sf, opportunity)
    deliveries = wait_for("both deliveries of the message", lambda: at_least(2, [
        d for d in org.deliveries()["outbound"] if d["acked"]]))
    notes = deliveries[0]["notification_ids"]
    assert len(notes) == 2 and deliveries[1]["notification_ids"] == notes  # delivered twice ...
    assert notes != sorted(notes)  # ... newest first
    rows = wait_for("the inbox rows", lambda: inbox_rows(services, object_name="Opportunity"))
    assert sorted(r.dedup_key for r in rows) == sorted(f"om:{n}" for n in notes)  # stored once each

    process(services)
    [subscription] = subscriptions(services)
    assert existing == 0 and subscription.id == f"sub-{opportunity}"
    assert subscription.starts_on == date.fromisoformat(STARTS_ON)
    assert {r.status for r in inbox_rows(services)} == {"done"}

    bill_and_push(services, sf, opportunity, account)

    # The push wrote Billsync_Subscription_Id__c on the (still won) deal: Salesforce notifies
    # again; processing reads it, changes nothing, and queues nothing to push back.
    linked = sf.Opportunity.get(opportunity)["Billsync_Subscription_Id__c"]
    assert linked == f"sub-{opportunity}"
    wait_for("the echo of billsync's write", lambda: len(inbox_rows(services)) > len(rows))
    process(services)
    assert len(subscriptions(services)) == 1
    assert pending_outbox(services) == 0


def test_a_deal_won_in_salesforce_is_billed_through_cdc_with_gap_and_overflow(org, billsync):
    base, services = billsync
    org.seed("small", 0)
    sf = rep(org)
    opportunity, account = new_deal(sf)
    cdc = CdcConfig(f"{base}/webhooks/salesforce/cdc", SECRET)
    org.configure_faults(duplicate_notifications=True, reorder_notifications=True, seed=1)
    org.configure_cdc(cdc)

    close_won(sf, opportunity)
    updates = wait_for("the deal's two change events", lambda: at_least(2, [
        r for r in inbox_rows(services, record_id=opportunity) if '"changeType":"UPDATE"' in r.payload]))
    assert len(updates) == 2
    assert all(r.change_origin.endswith(f";client={REP_CLIENT}") for r in updates)
    wait_for("the duplicate deliveries", lambda: len([d for d in org.deliveries()["cdc"] if d["acked"]]) >= 2)

    process(services)
    [subscription] = subscriptions(services)
    assert subscription.id == f"sub-{opportunity}"

    # Changes made while the relay was down: Salesforce reports a gap for one account, then an
    # overflow for the whole object.
    org.configure_cdc(None)
    (gap_account, _), (other_account, other_name) = [(r["Id"], r["Name"]) for r in sf.query(
        "SELECT Id, Name FROM Account WHERE Id != '" + account + "' ORDER BY Name LIMIT 2")["records"]]
    sf.Account.update(gap_account, {"Name": "Renamed during the gap"})
    sf.Account.update(other_account, {"Name": "Renamed during the overflow"})
    org.configure_cdc(cdc)
    org.cdc.emit_gap("GAP_UPDATE", "Account", [gap_account])
    wait_for("the GAP_UPDATE row", lambda: inbox_rows(services, action="refetch"))
    process(services)
    # Only the named record was read again.
    assert customer_names(services, gap_account, other_account) == ["Renamed during the gap", other_name]

    org.cdc.emit_gap("GAP_OVERFLOW", "Account")
    wait_for("the GAP_OVERFLOW row", lambda: inbox_rows(services, action="resync_object"))
    process(services)
    names = customer_names(services, gap_account, other_account)
    assert names == ["Renamed during the gap", "Renamed during the overflow"]
    assert len(subscriptions(services)) == 1

    # billsync's own writes (the invoice, the account summaries, the deal's subscription link)
    # come back as change events: recognised, no Salesforce call, nothing pushed back.
    before = len(inbox_rows(services))
    bill_and_push(services, sf, opportunity, account)
    wait_for("the echo of billsync's writes", lambda: any(
        r.object_name == "Invoice__c" for r in inbox_rows(services)[before:]))
    wait_for("the relay to deliver the rest of the echo", lambda: org.stats()["cdc_pending"] == 0)
    calls = services.salesforce().calls_made
    process(services)
    echo = inbox_rows(services)[before:]
    assert echo and all(r.last_error.startswith(OWN_CHANGE_NOTE) for r in echo)
    assert services.salesforce().calls_made == calls
    assert pending_outbox(services) == 0 and len(subscriptions(services)) == 1


def customer_names(services, *account_ids: str) -> list[str | None]:
    with Session(services.engine) as session:
        found = dict(session.execute(select(CustomerRow.salesforce_account_id, CustomerRow.name)
                                     .where(CustomerRow.salesforce_account_id.in_(account_ids))).all())
    return [found.get(a) for a in account_ids]
