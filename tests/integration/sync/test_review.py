"""Reviews shown on the Salesforce record, and ``billsync review list|resolve``, against the local sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.use_cases.subscriptions import get_subscription
from connector.cli import cli
from connector.sync.apply import subscription_id_for
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from connector.sync.review import ReviewError, open_reviews, resolve_review
from connector.sync.tables import ReviewFlag, ReviewMark
from tests.integration.sync.test_pull import salesforce, won_opportunities
from tests.support.sandbox import sandbox_environment


@pytest.fixture
def linked(org, services):
    """The small seed pulled and pushed: every won deal billed and linked."""
    org.seed("small", 0)
    pull_changes(services)
    push_outbox(services)
    return services


def shown(sf, object_name: str, record_id: str) -> tuple[bool, str | None]:
    row = sf.query(f"SELECT Billing_Review_Flag__c, Billing_Review_Reason__c FROM {object_name} "
                   f"WHERE Id = '{record_id}'")["records"][0]
    return row["Billing_Review_Flag__c"], row["Billing_Review_Reason__c"]


def lic_line(sf, opportunity_id: str) -> dict:
    quote = sf.query(f"SELECT SyncedQuoteId FROM Opportunity WHERE Id = '{opportunity_id}'")["records"][0]
    lic = sf.query("SELECT Id FROM Product2 WHERE ProductCode = 'LIC'")["records"][0]["Id"]
    lines = sf.query(f"SELECT Id, Quantity, Product2Id FROM QuoteLineItem "
                     f"WHERE QuoteId = '{quote['SyncedQuoteId']}'")["records"]
    return next(line for line in lines if line["Product2Id"] == lic)


def bad_amendment(sf, account_id: str, reference: str) -> str:
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                     "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    deal = sf.Opportunity.create({"Name": "Expansion", "AccountId": account_id, "StageName": "Negotiation",
                                  "CloseDate": "2026-03-01", "Type": "Amendment",
                                  "Subscription_Reference__c": reference, "Pricebook2Id": book})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entry, "Quantity": 20, "UnitPrice": 0})
    sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    return deal


def test_each_divergence_shows_a_readable_reason_on_the_deal_and_resolving_it_clears_it(linked, org,
                                                                                        database_url):
    sf = salesforce(org)
    edited, lost = won_opportunities(sf)[:2]
    line = lic_line(sf, edited["Id"])
    assert line["Quantity"] == 12
    sf.QuoteLineItem.update(line["Id"], {"Quantity": 15})  # a rep edits a won deal
    sf.Opportunity.update(lost["Id"], {"StageName": "Closed Lost"})  # ... moves one to Closed Lost
    bad = bad_amendment(sf, edited["AccountId"], "sub-NOPE")  # ... and names no subscription

    pull_changes(linked)
    report = push_outbox(linked)
    assert report.review_marks.done == 3
    edited_sub, lost_sub = subscription_id_for(edited["Id"]), subscription_id_for(lost["Id"])
    assert shown(sf, "Opportunity", edited["Id"]) == (
        True, f"Edited after Closed Won (LIC quantity 12 → 15). billsync keeps billing {edited_sub} as won: "
              "record the change as an Amendment deal, or ask finance to re-apply it.")
    assert shown(sf, "Opportunity", lost["Id"]) == (
        True, f"Moved to Closed Lost after billing started ({lost_sub}). billsync keeps billing until finance "
              "decides (keep billing, or cancel from a date).")
    assert shown(sf, "Opportunity", bad) == (
        True, "billsync cannot bill this deal: Subscription_Reference__c: no billsync subscription 'sub-NOPE'")
    with Session(linked.engine) as session:
        reviews = {r.record_id: r for r in open_reviews(session)}
    assert {r: (v.kind, v.in_salesforce) for r, v in reviews.items()} == {
        edited["Id"]: ("changed", "shown"), lost["Id"]: ("reverted", "shown"), bad: ("refused", "shown")}

    # Nothing moves on a second pull and push: the marks are written once.
    pull_changes(linked)
    assert push_outbox(linked).review_marks.claimed == 0

    env = sandbox_environment(org, database_url)
    runner = CliRunner()
    listed = runner.invoke(cli, ["review", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "3 open review(s)" in listed.output
    assert "reason: Edited after Closed Won (LIC quantity 12 → 15)" in listed.output

    with Session(linked.engine) as session:
        starts_on = get_subscription(session, lost_sub).starts_on
    cancel_on = (starts_on + timedelta(days=40)).isoformat()
    for args in ([str(reviews[edited["Id"]].id), "--action", "reapply", "--note", "rep was right: 15 seats"],
                 [str(reviews[lost["Id"]].id), "--action", "cancel", "--on", cancel_on, "--note", "deal lost"],
                 [str(reviews[bad].id), "--action", "keep", "--note", "duplicate of the won deal"]):
        result = runner.invoke(cli, ["review", "resolve", *args], env=env)
        assert result.exit_code == 0, result.output
    report = push_outbox(linked)
    assert report.review_marks.done == 3
    for record_id in (edited["Id"], lost["Id"], bad):
        assert shown(sf, "Opportunity", record_id) == (False, None)

    with Session(linked.engine) as session:
        assert open_reviews(session) == []
        edited_now = get_subscription(session, edited_sub)
        lost_now = get_subscription(session, lost_sub)
        notes = {f.record_id: (f.resolution, f.resolution_note) for f in session.exec(select(ReviewFlag)).all()}
    lic = next(i for i in edited_now.version_on(edited_now.starts_on).items.values()
               if i.price.product.code == "LIC")
    assert lic.quantity == Decimal(15)  # re-applied from the subscription's start
    assert lost_now.ends_before is not None and lost_now.ends_before.isoformat() == cancel_on
    assert notes[bad] == ("keep", "duplicate of the won deal")
    assert runner.invoke(cli, ["review", "list"], env=env).output.strip() == "no open reviews"


def test_a_deleted_won_deal_is_shown_on_its_account(linked, org):
    sf = salesforce(org)
    deal = won_opportunities(sf)[0]
    sf.Opportunity.delete(deal["Id"])
    pull_changes(linked)
    push_outbox(linked)
    flagged, reason = shown(sf, "Account", deal["AccountId"])
    assert flagged and reason.startswith(f"Deal {deal['Id']} was deleted after billing started")

    with Session(linked.engine) as session:
        [review] = open_reviews(session)
    assert review.shown_on == f"Account {deal['AccountId']}"
    resolve_review(linked, review.id, "keep", note="billed by contract")
    push_outbox(linked)
    assert shown(sf, "Account", deal["AccountId"]) == (False, None)


def test_a_refused_deal_clears_itself_once_the_rep_fixes_it(linked, org):
    sf = salesforce(org)
    won = won_opportunities(sf)[0]
    bad = bad_amendment(sf, won["AccountId"], "sub-NOPE")
    pull_changes(linked)
    push_outbox(linked)
    assert shown(sf, "Opportunity", bad)[0] is True

    sf.Opportunity.update(bad, {"Subscription_Reference__c": subscription_id_for(won["Id"])})
    pull_changes(linked)
    push_outbox(linked)
    assert shown(sf, "Opportunity", bad) == (False, None)
    with Session(linked.engine) as session:
        assert open_reviews(session) == []
        flag = session.exec(select(ReviewFlag).where(ReviewFlag.record_id == bad)).one()
    assert flag.resolution == "applied"


def test_resolve_refuses_bad_input_with_one_line_per_problem(linked, org, database_url):
    env = sandbox_environment(org, database_url)
    result = CliRunner().invoke(cli, ["review", "resolve", "7", "--action", "drop", "--on", "someday"], env=env)
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "error: --on 'someday': not a date (YYYY-MM-DD)",
        "error: --action 'drop': must be one of keep, cancel, reapply",
        "error: --note: say why (it is kept with the review)",
    ]
    result = CliRunner().invoke(cli, ["review", "resolve", "7", "--action", "keep", "--note", "x"], env=env)
    assert result.output.strip() == "error: review 7: no such review (see 'billsync review list')"

    sf = salesforce(org)
    bad = bad_amendment(sf, won_opportunities(sf)[0]["AccountId"], "sub-NOPE")
    pull_changes(linked)
    with Session(linked.engine) as session:
        [review] = open_reviews(session)
    with pytest.raises(ReviewError) as refused:
        resolve_review(linked, review.id, "cancel", on=won_date(), note="no")
    assert refused.value.lines == [f"review {review.id}: cannot cancel: billsync could not apply it, so nothing "
                                   "is billed: resolve it with keep or reapply"]
    with pytest.raises(ReviewError) as still:
        resolve_review(linked, review.id, "reapply", note="try again")
    assert still.value.lines == [f"review {review.id}: Opportunity {bad} still cannot be applied: "
                                 "Subscription_Reference__c: no billsync subscription 'sub-NOPE'"]
    with Session(linked.engine) as session:
        mark = session.exec(select(ReviewMark).where(ReviewMark.record_id == bad)).one()
    assert mark.flagged is True


def won_date():
    from datetime import date

    return date(2026, 6, 1)
