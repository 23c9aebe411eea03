"""Subscriptions in Salesforce: one Billsync_Subscription__c with its items per won deal, kept up
to date by the push (upserts by external id), against the sandbox: pulled, billed, pushed, then
amended and cancelled from Salesforce."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from sqlmodel import Session, func, select

from billing_engine.storage.outbox import OutboxRow
from connector.billing_jobs import run_bill_run
from connector.sync.apply import subscription_id_for
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from tests.integration.sync.test_pull import salesforce, won_opportunities

pytestmark = pytest.mark.timeout(180)

AS_OF = date(2026, 11, 24)
SUBSCRIPTIONS = ("SELECT Id, Name, Account__c, Opportunity__c, Status__c, Ends_On__c, Start_Date__c, Term_Months__c, "
                 "Term_End_Date__c, Renewal_Date__c, Next_Invoice_Date__c, MRR__c, ARR__c, CurrencyIsoCode, "
                 "(SELECT Id, Name, Product_Code__c, Quantity__c, Pricing_Model__c, Contract_Price__c FROM Items__r "
                 "ORDER BY Product_Code__c) FROM Billsync_Subscription__c ORDER BY Name")


def drain(services, on: date) -> None:
    """Push until nothing is due, as of ``on``."""
    now = datetime.combine(on, time(6), tzinfo=UTC)
    for _ in range(10):
        push_outbox(services, worker_id="test", batch_size=200, now=now)
        with Session(services.engine) as session:
            left = session.exec(select(func.count()).select_from(OutboxRow)
                                .where(OutboxRow.status.in_(("pending", "in_flight")))).one()
        if left == 0:
            return
    with Session(services.engine) as session:
        stuck = session.exec(select(OutboxRow).where(OutboxRow.status != "done")).all()
    raise AssertionError(f"outbox rows not pushed: {[(r.topic, r.last_error) for r in stuck]}")


def by_name(sf) -> dict[str, dict]:
    return {r["Name"]: r for r in sf.query(SUBSCRIPTIONS)["records"]}


def items(record: dict) -> dict[str, dict]:
    return {i["Product_Code__c"]: i for i in (record["Items__r"] or {"records": []})["records"]}


def deal(sf, won: dict, kind: str, close_on: str, **fields) -> str:
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    opportunity = sf.Opportunity.create({"Name": f"{kind} of {won['Name']}", "AccountId": won["AccountId"],
                                         "StageName": "Negotiation", "CloseDate": close_on, "Type": kind,
                                         "Subscription_Reference__c": subscription_id_for(won["Id"]),
                                         "Pricebook2Id": book, **fields})["id"]
    return opportunity


@pytest.fixture
def pushed(org, services):
    """The small org pulled, billed as of 2026-11-24 and pushed."""
    org.seed("small", 0)
    pull_changes(services)
    reviewed = dataclasses.replace(services, settings=services.settings.replace(bill_run_max_periods=24))
    assert run_bill_run(reviewed, AS_OF).invoices_finalized == 12
    drain(services, AS_OF)
    return services


def test_each_won_deal_has_one_subscription_record_with_its_items_amended_in_place_and_cancelled_at_term_end(
        pushed, org):
    sf = salesforce(org)
    won = won_opportunities(sf)
    shown = by_name(sf)
    assert sorted(shown) == sorted(subscription_id_for(w["Id"]) for w in won)
    for w in won:
        record = shown[subscription_id_for(w["Id"])]
        assert record["Opportunity__c"] == w["Id"] and record["Account__c"] == w["AccountId"]
        assert record["Status__c"] == "active" and record["MRR__c"] > 0 and record["ARR__c"] > 0
        lines = sf.query(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{w['Id']}'")["records"]
        quote_lines = sf.query("SELECT Id FROM QuoteLineItem WHERE Quote.OpportunityId = "
                               f"'{w['Id']}'")["records"]
        assert len(items(record)) == max(len(lines), len(quote_lines)) > 0

    first = won[0]  # EUR: LIC × 12, PLATFORM, SUPPORT from 2026-01-05, 12 months, renewing
    sub_id = subscription_id_for(first["Id"])
    before = shown[sub_id]
    assert (before["Start_Date__c"], before["Term_Months__c"], before["Term_End_Date__c"],
            before["Renewal_Date__c"], before["Next_Invoice_Date__c"]) == (
        "2026-01-05", Decimal(12), "2027-01-04", "2027-01-05", "2026-12-05")
    assert {code: i["Quantity__c"] for code, i in items(before).items()} == {
        "LIC": Decimal(12), "PLATFORM": Decimal(1), "SUPPORT": Decimal(1)}
    assert items(before)["LIC"]["Pricing_Model__c"] == "graduated"

    # An amendment from Salesforce: 15 licences. The same record and the same items change.
    lic = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                   "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"]
    amendment = deal(sf, first, "Amendment", "2026-11-25")
    sf.OpportunityLineItem.create({"OpportunityId": amendment, "PricebookEntryId": lic, "Quantity": 15, "UnitPrice": 0})
    sf.Opportunity.update(amendment, {"StageName": "Closed Won"})
    pull_changes(pushed)
    drain(pushed, date(2026, 11, 25))
    after = by_name(sf)
    assert len(after) == len(won)
    amended = after[sub_id]
    assert amended["Id"] == before["Id"]
    assert {code: i["Id"] for code, i in items(amended).items()} == {code: i["Id"] for code, i in items(before).items()}
    assert items(amended)["LIC"]["Quantity__c"] == Decimal(15)
    assert amended["MRR__c"] > before["MRR__c"] and amended["Status__c"] == "active"

    # A cancellation at the end of the term, seen mid-term: `cancelling`, with the last day billed.
    cancellation = deal(sf, first, "Cancellation", "2026-11-26", Cancellation_Mode__c="end_of_term")
    sf.Opportunity.update(cancellation, {"StageName": "Closed Won"})
    pull_changes(pushed)
    drain(pushed, date(2026, 11, 26))
    cancelled = by_name(sf)[sub_id]
    assert cancelled["Id"] == before["Id"]
    assert (cancelled["Status__c"], cancelled["Ends_On__c"], cancelled["Renewal_Date__c"]) == (
        "cancelling", "2027-01-04", None)
    assert cancelled["Next_Invoice_Date__c"] == "2026-12-05"
    assert len(by_name(sf)) == len(won)
