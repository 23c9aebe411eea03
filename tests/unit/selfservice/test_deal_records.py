"""The records the push writes for a self-service order: what the Opportunity and its lines carry,
and that the integration user's permission set lets it write every one of their fields."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billing_engine.customers import Address, Customer
from billing_engine.use_cases.self_service import SoldDeal, SoldLine
from connector.sync.deals import DealDelivery, DealError, line_fields, opportunity_fields, possible_duplicate

ROOT = Path(__file__).resolve().parents[3]


def _package():
    spec = importlib.util.spec_from_file_location("salesforce_package", ROOT / "scripts" / "salesforce_package.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["salesforce_package"] = module
    spec.loader.exec_module(module)
    return module


DEAL = SoldDeal(Customer("cus-web-1", "Borealis SAS", "EUR", billing_address=Address(country="FR")),
                "sub-web-1", None, "EUR", date(2026, 12, 6),
                (SoldLine("sub-web-1-1", "price-01u000000000001AAA", "LIC", "Licences", Decimal(12),
                          Decimal("1950.00")),))


def test_the_won_deal_is_closed_won_self_service_evergreen_and_priced_per_period():
    deal = opportunity_fields(DEAL, "001000000000001AAA", "it@borealis.example")
    assert {k: deal[k] for k in ("StageName", "Type", "LeadSource", "CloseDate", "Term_Months__c")} == {
        "StageName": "Closed Won", "Type": "New Business", "LeadSource": "Self-Service",
        "CloseDate": date(2026, 12, 6), "Term_Months__c": 0}
    assert deal["Name"] == "Borealis SAS – Licences"
    assert line_fields(DEAL.lines[0]) == {"PricebookEntryId": "01u000000000001AAA", "Quantity": Decimal(12),
                                          "TotalPrice": Decimal("1950.00")}


def test_a_price_that_is_no_price_book_entry_cannot_be_a_line():
    line = SoldLine("i", "p-local", "LIC", "Licences", Decimal(1), Decimal(200))
    with pytest.raises(DealError, match="not a Salesforce Price Book entry"):
        line_fields(line)


def test_the_integration_user_may_write_every_field_of_the_records():
    writes = _package().CONNECTOR_WRITES
    assert set(opportunity_fields(DEAL, "001", "a@b.example")) <= writes["Opportunity"]
    assert set(line_fields(DEAL.lines[0])) | {"OpportunityId"} <= writes["OpportunityLineItem"]


class _Org:
    def __init__(self):
        self.queries: list[str] = []

    def query_page(self, soql):
        self.queries.append(soql)
        return {"records": []}


def test_a_public_mail_domain_never_names_a_possible_duplicate():
    org = _Org()
    assert possible_duplicate(org, "001OWN", "Borealis SAS", None, "founder@gmail.com", DealDelivery()) is None
    assert org.queries == []
    possible_duplicate(org, "001OWN", "Borealis SAS", "FR40303265045", "it@borealis.example", DealDelivery())
    assert [q.split(" WHERE ")[1].split(" AND Id")[0] for q in org.queries] == [
        "VAT_Id__c = 'FR40303265045'", "Name = 'Borealis SAS' AND Website LIKE '%borealis.example%'"]
    assert all("Id != '001OWN'" in q for q in org.queries)


def test_a_possible_duplicate_is_named_in_the_deals_description_only():
    deal = opportunity_fields(DEAL, "001000000000001AAA", "it@borealis.example", "001000000000009AAA")
    assert deal["AccountId"] == "001000000000001AAA"
    assert deal["Description"] == "Ordered online by it@borealis.example. Possible duplicate of Account 001000000000009AAA"
