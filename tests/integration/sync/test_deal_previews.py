"""Open deals previewed on the Opportunity (first invoice, MRR, ARR), against the sandbox.

The figures are computed by hand from the seed's catalogue (sfsandbox/seed.py), in EUR:
``LIC`` is graduated per month (units 1–5 at 200, 6–10 at 150, then 100), ``PLATFORM`` is
a flat 500 per month, ``SUPPORT`` is 10 % of the ``LIC`` lines. Tiered and percent
products carry ``UnitPrice`` 0 on the deal's lines, so ``Amount`` only counts the platform.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from simple_salesforce import Salesforce
from sqlalchemy import func
from sqlmodel import Session, select

from billing_engine.storage.subscriptions import SubscriptionRow
from connector.cli import cli
from connector.settings import PreviewStages
from connector.sync import preview as preview_module
from connector.sync.preview import DealPreviewRow
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from tests.support.sandbox import sandbox_environment

PREVIEW_FIELDS = ("Amount, Billsync_Preview_Total__c, Billsync_Preview_MRR__c, Billsync_Preview_ARR__c, "
                  "Billsync_Preview_Note__c, Billsync_Preview_Lines__c, Billsync_Previewed_At__c, SystemModstamp")
TAX = Decimal("0.20")


def salesforce(org) -> Salesforce:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(org.ca_path)
    return Salesforce(instance_url=org.url, session_id=org.issue_token()["access_token"], session=session,
                      version="59.0", parse_float=Decimal)


def licences(quantity: int) -> Decimal:
    """The seed's graduated LIC tiers in EUR: 1–5 at 200, 6–10 at 150, above at 100."""
    tiers = [(5, Decimal(200)), (10, Decimal(150)), (None, Decimal(100))]
    total, below = Decimal(0), 0
    for up_to, price in tiers:
        units = max(0, min(quantity, up_to if up_to is not None else quantity) - below)
        total += units * price
        below = up_to if up_to is not None else below
    return total


def expected(quantity: int) -> tuple[Decimal, Decimal, Decimal]:
    """(first invoice total with 20 % tax, MRR, ARR) of LIC × quantity + PLATFORM + SUPPORT."""
    monthly = licences(quantity) + Decimal(500) + licences(quantity) / 10
    return (monthly * (1 + TAX)).quantize(Decimal("0.01")), monthly.quantize(Decimal("0.01")), \
        (monthly * 12).quantize(Decimal("0.01"))


def open_deal(sf: Salesforce, *, stage: str = "Proposal", quantity: int = 12, **extra) -> tuple[str, str]:
    """An EUR customer's open deal with LIC × quantity, PLATFORM and SUPPORT lines: (deal id, LIC line id)."""
    account = sf.Account.create({"Name": "Preview GmbH", "CurrencyIsoCode": "EUR", "Tax_Rate__c": 20,
                                 "Billing_Timezone__c": "Europe/Berlin"})["id"]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    deal = sf.Opportunity.create({"Name": "Preview GmbH - New subscription", "AccountId": account,
                                  "StageName": stage, "CloseDate": "2026-07-01", "Pricebook2Id": book,
                                  "Type": "New Business", **extra})["id"]
    entries = {r["ProductCode"]: r["Id"] for r in sf.query(
        "SELECT Id, ProductCode FROM PricebookEntry WHERE CurrencyIsoCode = 'EUR' "
        "AND ProductCode IN ('LIC', 'PLATFORM', 'SUPPORT')")["records"]}
    line = sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entries["LIC"],
                                          "Quantity": quantity, "UnitPrice": 0})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entries["PLATFORM"],
                                   "Quantity": 1, "UnitPrice": 500})
    sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entries["SUPPORT"],
                                   "Quantity": 1, "UnitPrice": 0})
    return deal, line


def shown(sf: Salesforce, deal: str) -> dict:
    return sf.query(f"SELECT {PREVIEW_FIELDS} FROM Opportunity WHERE Id = '{deal}'")["records"][0]


def subscriptions(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(SubscriptionRow)).one()


def sync(services):
    pull = pull_changes(services)
    assert pull.object_errors == []
    return push_outbox(services, worker_id="test")


@pytest.fixture
def seeded(org, services):
    org.seed("small", 0)
    return services


def test_an_open_deal_shows_what_it_would_bill_and_follows_its_lines_without_a_subscription(seeded, org):
    sf = salesforce(org)
    deal, line = open_deal(sf)
    assert shown(sf, deal)["Amount"] == Decimal("500.00")  # the rep's number: tiered and percent lines count 0

    sync(seeded)
    won = subscriptions(seeded.engine)
    assert won == 12  # the seed's won deals; the open one is only previewed
    total, mrr, arr = expected(12)
    assert (total, mrr, arr) == (Decimal("3174.00"), Decimal("2645.00"), Decimal("31740.00"))
    fields = shown(sf, deal)
    assert (fields["Billsync_Preview_Total__c"], fields["Billsync_Preview_MRR__c"],
            fields["Billsync_Preview_ARR__c"]) == (total, mrr, arr)
    assert fields["Billsync_Preview_Note__c"] == (
        "First invoice on 2026-07-01: 3,174.00 EUR (2,645.00 + tax 529.00). MRR +2,645.00 EUR, "
        "ARR +31,740.00 EUR. By billsync; billed once won.")
    assert fields["Billsync_Previewed_At__c"]
    assert fields["Amount"] == Decimal("500.00")  # billsync leaves Amount alone

    # Our own write moved the deal's SystemModstamp: the next pull reads it, finds the same
    # figures, and the push writes nothing (no write loop).
    again = sync(seeded)
    assert (again.previews_written, again.previews_failed) == (0, 0)
    assert shown(sf, deal)["SystemModstamp"] == fields["SystemModstamp"]

    # A rep changes a line's quantity: Amount does not move (UnitPrice 0), the preview does.
    sf.OpportunityLineItem.update(line, {"Quantity": 20})
    assert shown(sf, deal)["Amount"] == Decimal("500.00")
    report = sync(seeded)
    assert report.previews_written == 1
    total, mrr, arr = expected(20)
    assert (total, mrr, arr) == (Decimal("4230.00"), Decimal("3525.00"), Decimal("42300.00"))
    fields = shown(sf, deal)
    assert (fields["Billsync_Preview_Total__c"], fields["Billsync_Preview_MRR__c"],
            fields["Billsync_Preview_ARR__c"]) == (total, mrr, arr)
    assert subscriptions(seeded.engine) == won  # still no subscription for the open deal
    with Session(seeded.engine) as session:
        assert session.exec(select(SubscriptionRow).where(SubscriptionRow.external_key == deal)).first() is None


def preview_lines(sf: Salesforce, deal: str) -> list[dict]:
    text = shown(sf, deal)["Billsync_Preview_Lines__c"]
    return json.loads(text)


def test_an_open_deal_lists_its_first_invoice_lines_with_how_each_was_computed(seeded, org):
    sf = salesforce(org)
    deal, line = open_deal(sf)
    sync(seeded)

    lines = preview_lines(sf, deal)
    assert lines == [
        {"description": "Licences (Jul 1 – Aug 1 2026)", "quantity": "12", "amount": "1950.00", "currency": "EUR",
         "explanation": "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100"},
        {"description": "Platform fee (Jul 1 – Aug 1 2026)", "quantity": "1", "amount": "500.00", "currency": "EUR",
         "explanation": "Platform fee flat 500"},
        {"description": "Premium support (Jul 1 – Aug 1 2026)", "quantity": "1950", "amount": "195.00",
         "currency": "EUR", "explanation": "Premium support 10 % of 1950 (Licences)"},
    ]
    assert Decimal(lines[0]["amount"]) == licences(12)
    total, mrr, _ = expected(12)
    assert sum(Decimal(x["amount"]) for x in lines) == mrr  # the lines are the invoice before tax
    assert shown(sf, deal)["Billsync_Preview_Total__c"] == total

    # Nothing changed: the next round writes nothing, the lines field included.
    before = shown(sf, deal)
    again = sync(seeded)
    assert (again.previews_written, again.previews_failed) == (0, 0)
    assert shown(sf, deal) == before

    # The graduated line follows the rep's change, tier by tier.
    sf.OpportunityLineItem.update(line, {"Quantity": 20})
    assert sync(seeded).previews_written == 1
    lines = preview_lines(sf, deal)
    assert (lines[0]["quantity"], lines[0]["amount"], lines[0]["explanation"]) == (
        "20", "2750.00", "Licences 20 × graduated: 5 × 200 + 5 × 150 + 10 × 100")
    assert lines[2]["amount"] == "275.00"


def test_lines_that_do_not_fit_the_field_are_left_out_whole_and_the_note_says_so(seeded, org, monkeypatch):
    sf = salesforce(org)
    deal, _ = open_deal(sf)
    monkeypatch.setattr(preview_module, "LINES_LENGTH", 400)  # room for two of the three lines
    sync(seeded)

    fields = shown(sf, deal)
    assert len(fields["Billsync_Preview_Lines__c"]) <= 400
    lines = json.loads(fields["Billsync_Preview_Lines__c"])
    assert [x["explanation"] for x in lines] == ["Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100",
                                                 "Platform fee flat 500"]
    assert fields["Billsync_Preview_Note__c"].startswith(
        "Only 2 of 3 lines listed (the lines field is full). First invoice on 2026-07-01: 3,174.00 EUR")
    assert fields["Billsync_Preview_Total__c"] == Decimal("3174.00")  # the figures stay whole


def test_a_deal_that_cannot_be_previewed_says_why_and_stages_can_be_chosen(org, connected_settings):
    from connector.wiring import build_services

    org.seed("small", 0)
    sf = salesforce(org)
    amendment, _ = open_deal(sf, Type="Amendment")
    negotiation, _ = open_deal(sf, stage="Negotiation")
    services = build_services(connected_settings.replace(preview_stages=PreviewStages(stages=("Negotiation",))))
    try:
        sync(services)
        assert shown(sf, amendment)["Billsync_Preview_Note__c"] is None  # Proposal is not previewed here
        assert shown(sf, negotiation)["Billsync_Preview_Total__c"] == Decimal("3174.00")
    finally:
        services.engine.dispose()

    services = build_services(connected_settings)  # PREVIEW_STAGES=open: every open stage
    try:
        sync(services)
        fields = shown(sf, amendment)
        assert fields["Billsync_Preview_Total__c"] is None
        assert fields["Billsync_Preview_Note__c"] == (
            "No billsync preview: Subscription_Reference__c: is required for amend_subscription but empty")
        with Session(services.engine) as session:
            assert {r.opportunity_id for r in session.exec(select(DealPreviewRow)).all()} == {amendment, negotiation}

        # The rep removes every product: the preview is cleared, with the reason.
        for line in sf.query(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{negotiation}'")["records"]:
            sf.OpportunityLineItem.delete(line["Id"])
        assert sync(services).previews_written == 1
        fields = shown(sf, negotiation)
        assert (fields["Billsync_Preview_Total__c"], fields["Billsync_Preview_MRR__c"]) == (None, None)
        assert fields["Billsync_Preview_Note__c"] == "No billsync preview: the deal has no products."
        assert fields["Billsync_Preview_Lines__c"] is None
    finally:
        services.engine.dispose()


def test_mappings_preview_shows_an_open_deal_without_mapping_edits(org, database_url, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    org.seed("small", 0)
    deal, _ = open_deal(salesforce(org))
    result = CliRunner().invoke(cli, ["mappings", "preview", deal], env=sandbox_environment(org, database_url))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "an open deal: previewed as if it closed as it stands" in out
    assert f"engine command: start_subscription (key {deal})" in out
    assert "First invoice (on 2026-07-01), EUR:" in out
    assert "total 3174.00" in out
    assert "MRR: 0.00 → 2645.00 EUR (+2645.00)" in out
    assert "nothing was written" in out


def test_a_refused_preview_write_is_kept_and_retried_later(seeded, org):
    sf = salesforce(org)
    deal, _ = open_deal(sf)
    assert pull_changes(seeded).object_errors == []
    sf.Opportunity.delete(deal)  # gone before the push: Salesforce refuses the update

    report = push_outbox(seeded, worker_id="test")
    assert (report.previews_written, report.previews_failed) == (0, 1)
    assert "deal previews written, 1 failed" in report.lines()[-1]
    with Session(seeded.engine) as session:
        row = session.get(DealPreviewRow, deal)
        assert row.written_hash is None and row.attempts == 1
        assert deal in row.last_error and row.next_attempt_at is not None
    again = push_outbox(seeded, worker_id="test")  # not due yet: no call for it
    assert (again.previews_written, again.previews_failed) == (0, 0)
