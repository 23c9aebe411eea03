"""``pull_changes`` / ``billsync sync pull`` against the local sandbox over HTTPS, on the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from simple_salesforce import Salesforce
from sqlalchemy import text
from sqlmodel import Session, select

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.subscriptions import AmendmentRow, SubscriptionRow
from billing_engine.use_cases.catalog import get_price
from billing_engine.use_cases.customers import find_customer_by_salesforce_id, get_customer
from billing_engine.use_cases.subscriptions import get_subscription
from connector.cli import cli
from connector.database import load_all_models
from connector.sync.apply import subscription_id_for
from connector.sync.pull import pull_changes, pull_records, pull_status
from tests.support.sandbox import sandbox_environment


def salesforce(org) -> Salesforce:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(org.ca_path)
    return Salesforce(instance_url=org.url, session_id=org.issue_token()["access_token"], session=session,
                      version="59.0", parse_float=Decimal)


def counts(report) -> dict[str, tuple[int, ...]]:
    return {o.object_name: (o.fetched, o.applied, o.unchanged, o.failed, o.deleted, o.flagged)
            for o in report.objects}


def table_contents(engine, skip=("sync_cursors",)) -> dict[str, list[tuple]]:
    """Every row of every table (sorted), except the cursors whose last-run columns move by design."""
    out = {}
    with engine.connect() as conn:
        for table in load_all_models().metadata.sorted_tables:
            if table.name in skip:
                continue
            out[table.name] = sorted(tuple(str(v) for v in row) for row in conn.execute(table.select()))
    return out


def won_opportunities(sf: Salesforce) -> list[dict]:
    return sf.query("SELECT Id, AccountId, Name FROM Opportunity WHERE IsWon = true ORDER BY CloseDate")["records"]


@pytest.fixture
def seeded(org, services):
    org.seed("small", 0)
    return services


def test_a_pull_applies_the_org_in_dependency_order_and_a_second_pull_changes_nothing(seeded, org):
    report = pull_changes(seeded)
    assert counts(report) == {"Account": (20, 20, 0, 0, 0, 0), "Product2": (10, 10, 0, 0, 0, 0),
                              "PricebookEntry": (30, 30, 0, 0, 0, 0), "Opportunity": (12, 12, 0, 0, 0, 0)}
    sf = salesforce(org)
    first = won_opportunities(sf)[0]
    with Session(seeded.engine) as session:
        assert len(session.exec(select(CustomerRow)).all()) == 20
        assert len(session.exec(select(SubscriptionRow)).all()) == 12
        sub = get_subscription(session, subscription_id_for(first["Id"]))
        customer = get_customer(session, sub.customer_id)
    assert customer.salesforce_account_id == first["AccountId"]
    assert customer.billing_address.country in ("FR", "DE", "ES")  # "France" etc. became ISO codes
    assert [i.price.product.code for i in sub.items] == ["LIC", "PLATFORM", "SUPPORT"]
    assert sub.items[0].quantity == Decimal(12)

    before = table_contents(seeded.engine)
    again = pull_changes(seeded)
    assert table_contents(seeded.engine) == before
    assert all(o.applied == o.failed == o.deleted == o.flagged == 0 for o in again.objects)


def test_the_next_pull_applies_a_changed_record_and_keeps_contract_prices_and_discounts(seeded, org):
    pull_changes(seeded)
    sf = salesforce(org)
    account = sf.query("SELECT Id FROM Account ORDER BY Name LIMIT 1")["records"][0]
    sf.Account.update(account["Id"], {"Name": "Renamed Ltd", "Payment_Terms_Days__c": 60})
    report = pull_changes(seeded)
    assert report.objects[0].applied == 1
    assert sum(o.applied for o in report.objects[1:]) == 0
    with Session(seeded.engine) as session:
        customer = find_customer_by_salesforce_id(session, account["Id"])
        assert (customer.name, customer.payment_terms_days) == ("Renamed Ltd", 60)
        # the seed's SEATS deal sells 20 seats at 0.88 × list: a contract price kept on the item
        items = [i for s in session.exec(select(SubscriptionRow.id)).all()
                 for i in get_subscription(session, s).items]
    seats = [i for i in items if i.price.product.code == "SEATS" and i.contract_unit_price is not None]
    assert seats and all(i.contract_unit_price < i.price.terms.unit_price for i in seats)
    assert any(i.discount_percent == Decimal(10) for i in items if i.price.product.code == "LIC")


def test_a_bad_record_is_recorded_with_its_reason_the_rest_proceed_and_it_is_retried(seeded, org):
    sf = salesforce(org)
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    product = sf.Product2.create({"Name": "Mystery", "ProductCode": "MYSTERY", "IsActive": True,
                                  "Charge_Type__c": "recurring", "Billing_Interval__c": "month"})["id"]
    entry = sf.PricebookEntry.create({"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 9,
                                      "CurrencyIsoCode": "EUR", "IsActive": True})["id"]
    report = pull_changes(seeded)
    by_object = {o.object_name: o for o in report.objects}
    assert (by_object["Product2"].applied, by_object["Product2"].failed) == (10, 1)
    assert (by_object["PricebookEntry"].applied, by_object["PricebookEntry"].failed) == (30, 1)
    assert by_object["Opportunity"].applied == 12
    with Session(seeded.engine) as session:
        errors = {e.record_id: e.reason for e in pull_status(session).errors}
    assert errors[product] == "Pricing_Model__c: is required but empty"
    assert "MYSTERY" in errors[entry] and "not been pulled yet" in errors[entry]

    sf.Product2.update(product, {"Pricing_Model__c": "flat"})
    report = pull_changes(seeded)
    by_object = {o.object_name: o for o in report.objects}
    assert (by_object["Product2"].applied, by_object["PricebookEntry"].applied) == (1, 1)
    with Session(seeded.engine) as session:
        assert pull_status(session).errors == []
        price = get_price(session, f"price-{entry}")
    assert (price.product.code, price.terms.model, price.terms.unit_price) == ("MYSTERY", "flat", Decimal("9.00"))


def test_a_deleted_or_reverted_won_deal_is_flagged_once_and_its_subscription_kept(seeded, org):
    pull_changes(seeded)
    sf = salesforce(org)
    deleted, reverted = won_opportunities(sf)[:2]
    sf.Opportunity.delete(deleted["Id"])
    sf.Opportunity.update(reverted["Id"], {"StageName": "Negotiation"})
    report = pull_changes(seeded)
    opportunity = report.objects[-1]
    assert (opportunity.deleted, opportunity.flagged) == (1, 2)
    with Session(seeded.engine) as session:
        flags = {f.record_id: f for f in pull_status(session).flags}
        for opp in (deleted, reverted):
            sub = get_subscription(session, subscription_id_for(opp["Id"]))
            assert sub.cancellation is None and sub.amendments == ()
        assert session.exec(select(AmendmentRow)).all() == []
    assert flags[deleted["Id"]].kind == "deleted" and "keeps the subscription" in flags[deleted["Id"]].reason
    assert flags[reverted["Id"]].kind == "reverted" and "'Negotiation'" in flags[reverted["Id"]].reason
    assert flags[reverted["Id"]].engine_id == subscription_id_for(reverted["Id"])

    again = pull_changes(seeded)
    assert (again.objects[-1].deleted, again.objects[-1].flagged) == (0, 0)
    with Session(seeded.engine) as session:
        assert len(pull_status(session).flags) == 2


def test_an_amendment_deal_changes_the_referenced_subscription_once(seeded, org):
    pull_changes(seeded)
    sf = salesforce(org)
    won = won_opportunities(sf)[0]  # EUR: LIC × 12, PLATFORM, SUPPORT from 2026-01-05
    sub_id = subscription_id_for(won["Id"])
    seats = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'SEATS' "
                     "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"]
    lic = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                   "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    amendment = sf.Opportunity.create({"Name": "Acme expansion", "AccountId": won["AccountId"],
                                       "StageName": "Negotiation", "CloseDate": "2026-02-20",
                                       "Type": "Amendment", "Subscription_Reference__c": sub_id,
                                       "Pricebook2Id": book})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": amendment, "PricebookEntryId": lic, "Quantity": 15,
                                   "UnitPrice": 0})
    sf.OpportunityLineItem.create({"OpportunityId": amendment, "PricebookEntryId": seats, "Quantity": 5,
                                   "UnitPrice": 20})
    sf.Opportunity.update(amendment, {"StageName": "Closed Won"})

    assert pull_changes(seeded, objects=["Opportunity"]).objects[0].applied == 1
    with Session(seeded.engine) as session:
        sub = get_subscription(session, sub_id)
    actions = [(a.action.value, a.effective_on.isoformat()) for a in sub.amendments]
    assert actions == [("change_quantity", "2026-02-20"), ("add_item", "2026-02-20")]
    added = sub.amendments[1].item
    assert (added.price.product.code, added.quantity, added.contract_unit_price) == ("SEATS", 5, Decimal("20.00"))

    before = table_contents(seeded.engine)
    assert pull_records(seeded, "Opportunity", [amendment]).unchanged == 1
    assert table_contents(seeded.engine) == before


def _amendment_of(sf: Salesforce, won: dict, quantity: int) -> str:
    """A Closed Won Amendment deal raising the LIC seats of ``won``'s subscription to ``quantity``."""
    lic = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                   "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    amendment = sf.Opportunity.create({"Name": "Acme expansion", "AccountId": won["AccountId"],
                                       "StageName": "Negotiation", "CloseDate": "2026-02-20",
                                       "Type": "Amendment", "Subscription_Reference__c": subscription_id_for(won["Id"]),
                                       "Pricebook2Id": book})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": amendment, "PricebookEntryId": lic, "Quantity": quantity,
                                   "UnitPrice": 0})
    sf.Opportunity.update(amendment, {"StageName": "Closed Won"})
    return amendment


def test_a_first_pull_applies_an_amendment_after_the_deal_it_references_whatever_their_order(seeded, org,
                                                                                             monkeypatch):
    sf = salesforce(org)
    won = won_opportunities(sf)[0]
    _amendment_of(sf, won, 15)
    # The won deal changes after its amendment (billsync's own write-back does this): by
    # SystemModstamp the amendment comes first.
    later = datetime.now(UTC) + timedelta(minutes=1)
    monkeypatch.setattr(org.org, "clock", lambda: later)
    sf.Opportunity.update(won["Id"], {"Description": "touched after the amendment"})
    stamps = sf.query("SELECT Id FROM Opportunity WHERE IsWon = true ORDER BY SystemModstamp DESC, Id DESC")
    assert stamps["records"][0]["Id"] == won["Id"]

    report = pull_changes(seeded)
    assert counts(report)["Opportunity"] == (13, 13, 0, 0, 0, 0)
    with Session(seeded.engine) as session:
        assert pull_status(session).errors == []
        sub = get_subscription(session, subscription_id_for(won["Id"]))
    assert [(a.action.value, a.quantity) for a in sub.amendments] == [("change_quantity", 15)]
    again = counts(pull_changes(seeded))["Opportunity"]
    assert (again[1], again[3]) == (0, 0)  # nothing applied twice, nothing failed


def test_a_webhook_pull_of_an_amendment_pulls_the_deal_it_references_first(seeded, org):
    sf = salesforce(org)
    won = won_opportunities(sf)[0]
    amendment = _amendment_of(sf, won, 15)
    pull_changes(seeded, objects=["Account", "Product2", "PricebookEntry"])

    report = pull_records(seeded, "Opportunity", [amendment])
    assert (report.fetched, report.applied, report.failed) == (2, 2, 0)
    with Session(seeded.engine) as session:
        sub = get_subscription(session, subscription_id_for(won["Id"]))
    assert [a.action.value for a in sub.amendments] == ["change_quantity"]


def test_pull_records_applies_only_the_given_records(seeded, org):
    account = salesforce(org).query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    report = pull_records(seeded, "Account", [account])
    assert (report.fetched, report.applied) == (1, 1)
    with Session(seeded.engine) as session:
        assert session.execute(text("SELECT COUNT(*) FROM customers")).scalar() == 1
        assert pull_status(session).cursors == []  # a targeted pull does not move cursors


def test_the_cli_prints_counts_per_object_and_stops_cleanly_at_the_api_limit(org, database_url, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    org.seed("small", 0)
    env = sandbox_environment(org, database_url)
    runner = CliRunner()
    org.configure_faults(api_allocation=org.api_calls + 4)
    result = runner.invoke(cli, ["sync", "pull"], env=env)
    assert result.exit_code == 0, result.output
    assert "paused until" in result.output
    assert "Opportunity: skipped (paused)" in result.output
    assert "Traceback" not in result.output

    org.configure_faults(api_allocation=100_000)
    from sfsandbox.server import AdminClient

    AdminClient(org.url, org.admin_token, org.ca_path).call("POST", "api-usage/reset")
    result = runner.invoke(cli, ["sync", "pull"], env=env)
    # the client of the first run paused itself; this is a new process: it runs to the end
    assert result.exit_code == 0, result.output
    assert "Opportunity: fetched 12, applied 12" in result.output


def test_the_cli_refuses_to_pull_without_salesforce_with_one_line(database_url):
    result = CliRunner().invoke(cli, ["sync", "pull"], env={"DATABASE_URL": database_url, "SF_AUTH": "none",
                                                            "LOG_LEVEL": "warning"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Salesforce is not configured")


def test_a_won_deal_writes_exactly_one_account_summary_event(seeded, org):
    from billing_engine.storage.outbox import OutboxRow
    from connector.sync.push import SUMMARY_TOPICS

    pull_changes(seeded)
    sf = salesforce(org)
    won = won_opportunities(sf)
    with Session(seeded.engine) as session:
        rows = session.exec(select(OutboxRow)).all()
        customers = {find_customer_by_salesforce_id(session, o["AccountId"]).customer_id for o in won}
    for customer_id in customers:
        summaries = [r.topic for r in rows if r.topic in SUMMARY_TOPICS and r.aggregate_id == customer_id]
        assert summaries == ["customer.summary_changed"], (customer_id, summaries)
    created = [r.aggregate_id for r in rows if r.topic == "subscription.created"]
    assert sorted(created) == sorted(subscription_id_for(o["Id"]) for o in won)
