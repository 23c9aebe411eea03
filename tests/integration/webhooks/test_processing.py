"""Inbox processing against the sandbox org: notifications (as the receiving side stores
them) become engine changes by re-reading the records from Salesforce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from simple_salesforce import Salesforce
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.subscriptions import SubscriptionRow
from connector.database import transaction
from connector.queue import backoff
from connector.sync.tables import ReviewFlag
from connector.webhooks.inbox import WebhookInbox, add_to_inbox
from connector.webhooks.processing import OWN_CHANGE_NOTE, inbox_status, process_inbox

pytestmark = pytest.mark.timeout(120)

REP_CLIENT = "SfdcSalesConsole"
_count = iter(range(1, 10**6))


def rep(org) -> Salesforce:
    token = org.auth.issue(REP_CLIENT, org.url)["access_token"]
    return Salesforce(instance_url=org.url, session_id=token, session=org.requests_session(), version="59.0",
                      parse_float=Decimal)


def won_deal(sf: Salesforce, *, kind: str = "New Business") -> str:
    account = sf.query("SELECT Id FROM Account WHERE CurrencyIsoCode = 'EUR' ORDER BY Name LIMIT 1")["records"][0]
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'PLATFORM' "
                     "AND CurrencyIsoCode = 'EUR' AND Pricebook2.IsStandard = true")["records"][0]["Id"]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    deal = sf.Opportunity.create({"Name": f"{kind} deal", "AccountId": account["Id"], "StageName": "Negotiation",
                                  "CloseDate": "2026-11-02", "Type": kind, "Pricebook2Id": book})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entry, "Quantity": 1, "UnitPrice": 500})
    sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    return deal


def notify(engine, object_name: str, record_id: str | None, *, action: str = "upsert", origin: str | None = None,
           source: str = "cdc") -> None:
    """A notification as the receiving side stores it."""
    now = datetime.now(UTC)
    n = next(_count)
    key = f"om:04l{n:015d}" if source == "outbound_message" else f"cdc:tx-{n}:1:{record_id}"
    with transaction(engine) as session:
        add_to_inbox(session, [{"source": source, "dedup_key": key, "object_name": object_name,
                                "record_id": record_id, "action": action, "change_origin": origin, "received_at": now,
                                "payload": "{}", "status": "pending", "attempts": 0, "next_attempt_at": now}])


def rows(engine) -> list[WebhookInbox]:
    with Session(engine) as session:
        return list(session.execute(select(WebhookInbox).order_by(WebhookInbox.id)).scalars())


def subscriptions(engine) -> list[str]:
    with Session(engine) as session:
        return list(session.execute(select(SubscriptionRow.id)).scalars())


def test_notifications_twice_and_out_of_order_make_one_subscription(org, services):
    org.seed("small", 0)
    sf = rep(org)
    deal = won_deal(sf)
    engine = services.engine
    # The newest notifications arrive first, one of them twice under two keys (OM and CDC),
    # with a Contact change no mapping reads. Nothing was pulled before: the deal's Account
    # and prices are caught up first.
    notify(engine, "Opportunity", deal, origin=f"com/salesforce/api/rest/59.0;client={REP_CLIENT}")
    notify(engine, "Opportunity", deal, source="outbound_message")
    notify(engine, "Contact", "003Dn0000000001AAA")
    first = process_inbox(services, worker_id="t")
    assert (first.claimed, first.done, first.records, first.coalesced, first.unmapped) == (3, 3, 1, 1, 1)
    assert "Account" in first.dependencies_pulled
    assert subscriptions(engine) == [f"sub-{deal}"]
    assert rows(engine)[2].last_error == "no mapping reads Contact"

    # The older notification of the deal's creation turns up last: it changes nothing.
    notify(engine, "Opportunity", deal, origin=f"com/salesforce/api/rest/59.0;client={REP_CLIENT}")
    second = process_inbox(services, worker_id="t")
    assert (second.done, second.dependencies_pulled) == (1, [])
    assert [(o.object_name, o.fetched, o.unchanged) for o in second.objects] == [("Opportunity", 1, 1)]
    assert subscriptions(engine) == [f"sub-{deal}"]
    assert {r.status for r in rows(engine)} == {"done"}


def test_billsyncs_own_changes_are_ignored_without_reading_salesforce(org, services, connected_settings):
    org.seed("small", 0)
    sf = rep(org)
    deal = won_deal(sf)
    client = services.salesforce()
    notify(services.engine, "Opportunity", deal, origin=f"com/salesforce/api/rest/59.0;client={org.credentials.client_id}")
    notify(services.engine, "Account", "001Dn0000000001AAA",
           origin=f"com/salesforce/api/rest/59.0;client={connected_settings.sf_client_id}")
    report = process_inbox(services, worker_id="t")
    assert (report.done, report.own_changes, client.calls_made) == (2, 2, 0)
    assert all(r.last_error.startswith(OWN_CHANGE_NOTE) for r in rows(services.engine))

    # An Outbound Message carrying LastModifiedById = billsync's integration user (found by
    # SF_USERNAME) is billsync's own write too; another user's is processed.
    notify(services.engine, "Opportunity", deal, origin=f"user:{org.user_id}", source="outbound_message")
    report = process_inbox(services, worker_id="t")
    assert (report.own_changes, report.records, subscriptions(services.engine)) == (1, 0, [])
    notify(services.engine, "Opportunity", deal, origin="user:005Dn0000000099AAA", source="outbound_message")
    report = process_inbox(services, worker_id="t")
    assert (report.own_changes, report.records, subscriptions(services.engine)) == (0, 1, [f"sub-{deal}"])


def test_a_deal_that_cannot_be_applied_waits_with_its_reason_and_succeeds_once_fixed(org, services):
    org.seed("small", 0)
    sf = rep(org)
    deal = won_deal(sf, kind="Amendment")  # an amendment naming no subscription
    notify(services.engine, "Opportunity", deal)
    now = datetime.now(UTC)
    report = process_inbox(services, worker_id="t", now=now)
    assert (report.retrying, subscriptions(services.engine)) == (1, [])
    with Session(services.engine) as session:
        [failed] = inbox_status(session).failed
    assert failed.record_id == deal and failed.attempts == 1
    assert "Subscription_Reference__c" in failed.last_error
    assert failed.next_attempt_at == now + backoff(1)
    assert process_inbox(services, worker_id="t", now=now + timedelta(seconds=59)).claimed == 0

    sf.Opportunity.update(deal, {"Type": "New Business"})  # the admin fixes the deal
    report = process_inbox(services, worker_id="t", now=now + backoff(1))
    assert (report.claimed, report.done) == (1, 1)
    assert subscriptions(services.engine) == [f"sub-{deal}"]


def test_a_deleted_deal_is_flagged_for_review_not_cancelled(org, services):
    org.seed("small", 0)
    sf = rep(org)
    deal = won_deal(sf)
    notify(services.engine, "Opportunity", deal)
    process_inbox(services, worker_id="t")
    sf.Opportunity.delete(deal)
    notify(services.engine, "Opportunity", deal, action="delete")
    report = process_inbox(services, worker_id="t")
    assert (report.done, [o.deleted for o in report.objects]) == (1, [1])
    assert subscriptions(services.engine) == [f"sub-{deal}"]
    with Session(services.engine) as session:
        [flag] = session.execute(select(ReviewFlag)).scalars().all()
    assert (flag.record_id, flag.kind) == (deal, "deleted")


def test_a_salesforce_limit_releases_the_rows_untouched_until_it_ends(org, services):
    org.seed("small", 0)
    sf = rep(org)
    deal = won_deal(sf)
    notify(services.engine, "Opportunity", deal)
    notify(services.engine, "Account", "001Dn0000000001AAA")
    org.configure_faults(api_allocation=org.api_calls)  # the org's daily allocation is spent
    now = datetime.now(UTC)
    report = process_inbox(services, worker_id="t", now=now)
    assert (report.claimed, report.released, report.retrying) == (2, 2, 0)
    assert report.paused_until is not None and report.paused_until > now
    assert [(r.status, r.attempts, r.last_error) for r in rows(services.engine)] == [("pending", 0, None)] * 2
    assert process_inbox(services, worker_id="t", now=now).claimed == 0


def test_an_overflow_resyncs_the_whole_object_once(org, services):
    org.seed("small", 0)
    notify(services.engine, "Account", None, action="resync_object")
    notify(services.engine, "Account", None, action="resync_object")  # two overflows in one batch
    notify(services.engine, "Account", "001Dn0000000001AAA")
    report = process_inbox(services, worker_id="t")
    assert (report.done, report.resynced, report.coalesced) == (3, ["Account"], 1)
    with Session(services.engine) as session:
        assert len(session.execute(select(CustomerRow.id)).all()) == 20
