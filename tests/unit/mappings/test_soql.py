"""SOQL templates built from the specs: what the connector's pull selects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from simple_salesforce import format_soql

from mappings import load_specs, soql_for, soql_for_lines


def test_the_account_query_selects_every_mapped_field(defaults):
    soql = soql_for(defaults.get_inbound("customer"), where="SystemModstamp > {}")
    assert soql == (
        "SELECT Id, SystemModstamp, Name, CurrencyIsoCode, Billing_Timezone__c, BillingStreet, BillingCity, "
        "BillingState, BillingPostalCode, BillingCountry, Payment_Terms_Days__c, Tax_Rate__c, Tax_Exempt_Reason__c, "
        "VAT_Id__c, Billsync_Customer_Id__c, Billing_Language__c FROM Account WHERE (SystemModstamp > {}) ORDER BY SystemModstamp")
    bound = format_soql(soql, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert bound.endswith("WHERE (SystemModstamp > 2026-11-24T09:00:00+00:00) ORDER BY SystemModstamp")


def test_the_opportunity_query_has_its_filter_paths_and_line_subquery(defaults):
    soql = soql_for(defaults.get_inbound("subscription"), where="Id IN {}", order_by=None, limit=200)
    assert soql.startswith("SELECT Id, SystemModstamp, Type, AccountId, ")
    assert ", Service_Start_Date__c, CloseDate, " in soql and ", SyncedQuoteId, " in soql
    assert ("(SELECT Id, Product2.ProductCode, PricebookEntry.Product2.ProductCode, Product2Id, Quantity, UnitPrice, "
            "ListPrice, Discount, Discount_Amount__c, ServiceDate FROM OpportunityLineItems)") in soql
    assert soql.endswith("FROM Opportunity WHERE (IsWon = true AND Billsync_Change_Id__c = null) AND (Id IN {}) "
                         "LIMIT 200")
    assert format_soql(soql, ["006A", "006B"]).endswith("AND (Id IN ('006A','006B')) LIMIT 200")


def test_the_synced_quote_lines_are_a_separate_query(defaults):
    spec = defaults.get_inbound("subscription")
    quote_source, opportunity_source = spec.lines.sources
    soql = soql_for_lines(spec, quote_source)
    assert soql == ("SELECT Id, QuoteId, Product2.ProductCode, PricebookEntry.Product2.ProductCode, Product2Id, "
                    "Quantity, UnitPrice, ListPrice, Discount, Discount_Amount__c, ServiceDate FROM QuoteLineItem "
                    "WHERE QuoteId = {} ORDER BY Id")
    assert "WHERE QuoteId IN {}" in soql_for_lines(spec, quote_source, many=True)
    with pytest.raises(ValueError, match="child subquery"):
        soql_for_lines(spec, opportunity_source)


def test_braces_in_an_admin_filter_survive_format_soql(tmp_path):
    (tmp_path / "product.yaml").write_text(
        "inbound:\n  - name: product\n    object: Product2\n    command: upsert_product\n"
        "    filter: \"Family = '{odd}'\"\n    fields:\n"
        "      code: {from: ProductCode, transform: string}\n      name: {from: Name, transform: string}\n"
        "      pricing_model: {from: Pricing_Model__c, transform: picklist_map, map: {flat: flat}}\n")
    spec = load_specs(tmp_path, include_defaults=False).get_inbound("product")
    assert format_soql(soql_for(spec, where="Id = {}"), "01t'x") == (
        "SELECT Id, SystemModstamp, ProductCode, Name, Pricing_Model__c FROM Product2 "
        "WHERE (Family = '{odd}') AND (Id = '01t\\'x') ORDER BY SystemModstamp")
