"""The default inbound specs: Salesforce records (query JSON) → engine commands."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from mappings import InvalidRecordError, MappingContext, apply_inbound, select_line_source

ACC = "0017F00000AbCdEQAV"
OPP = "0067F000003pmdWQAQ"
QUOTE = "0Q07F000000AbCdQAC"


def account(**overrides):
    record = {
        "attributes": {"type": "Account"}, "Id": ACC, "Name": " Acme GmbH ", "CurrencyIsoCode": "EUR",
        "Billing_Timezone__c": None, "BillingStreet": "Hauptstr. 1", "BillingCity": "Berlin", "BillingState": None,
        "BillingPostalCode": "10115", "BillingCountry": "DE", "Payment_Terms_Days__c": None,
        "Tax_Rate__c": Decimal("19.000"), "Tax_Exempt_Reason__c": None, "VAT_Id__c": "DE123456789",
        "Billing_Language__c": None, "Billsync_Customer_Id__c": None,
    }
    return {**record, **overrides}


def test_an_account_becomes_upsert_customer(defaults, context):
    out = apply_inbound(defaults.get_inbound("customer"), account(), context)
    assert out == {"command": "upsert_customer", "key": ACC, "data": {
        "salesforce_account_id": ACC, "name": "Acme GmbH", "currency": "EUR", "timezone": "Europe/Paris",
        "billing_address": {"street": "Hauptstr. 1", "city": "Berlin", "state": None, "postal_code": "10115",
                            "country": "DE"},
        "payment_terms_days": 30, "tax_rate": Decimal("19.000"), "tax_exempt_reason": None, "vat_id": "DE123456789",
        "language": None, "customer_id": None,
    }}


def test_an_account_takes_its_own_timezone_and_terms_and_a_15_char_id(defaults):
    record = account(Id=ACC[:15], Billing_Timezone__c="America/New_York", Payment_Terms_Days__c=Decimal("45"),
                     CurrencyIsoCode=None)
    out = apply_inbound(defaults.get_inbound("customer"), record, MappingContext("UTC", default_currency="USD"))
    assert out["key"] == ACC
    assert (out["data"]["timezone"], out["data"]["payment_terms_days"], out["data"]["currency"]) == (
        "America/New_York", 45, "USD")


def test_every_bad_account_value_is_reported_at_once(defaults, context):
    record = account(Name="", Billing_Timezone__c="Berlin", Payment_Terms_Days__c=30.0, Tax_Rate__c="twenty")
    del record["VAT_Id__c"]
    with pytest.raises(InvalidRecordError) as raised:
        apply_inbound(defaults.get_inbound("customer"), record, context)
    assert str(raised.value).splitlines() == [
        "Name: is required but empty",
        "Billing_Timezone__c: 'Berlin' is not an IANA time zone (e.g. Europe/Paris)",
        "Payment_Terms_Days__c: 30.0 is a binary float; exact values must arrive as Decimal or text",
        "Tax_Rate__c: 'twenty' is not a decimal number",
        "VAT_Id__c: is missing from the record (the query did not select it)",
    ]


def product(**overrides):
    record = {
        "Id": "01t7F000000AbCdQAK", "ProductCode": "LIC", "Name": "Licences", "IsActive": True,
        "Pricing_Model__c": "graduated", "Charge_Type__c": None, "Billing_Interval__c": "month",
        "Package_Size__c": None, "Included_Units__c": None, "Percent__c": None,
        "Percent_Of_Products__c": None, "Unit_Of_Measure__c": "licence", "Tax_Category__c": "standard",
        "Tax_Rate__c": None, "Tax_Exemption_Reason__c": None, "Self_Service__c": True,
    }
    return {**record, **overrides}


def test_a_product2_becomes_upsert_product(defaults, context):
    out = apply_inbound(defaults.get_inbound("product"), product(), context)
    assert out["command"] == "upsert_product"
    assert out["data"] == {
        "salesforce_product_id": "01t7F000000AbCdQAK", "code": "LIC", "name": "Licences", "active": True,
        "pricing_model": "graduated", "charge_type": "recurring", "interval": "month", "package_size": None,
        "included_units": None, "percent": None, "percent_of_products": None, "unit_of_measure": "licence",
        "tax_category": "standard", "tax_rate": None, "tax_exemption_reason": None, "self_service": True,
    }
    support = apply_inbound(defaults.get_inbound("product"), product(
        Pricing_Model__c="percent_of", Percent__c=Decimal("10"), Percent_Of_Products__c="LIC, DATA"), context)
    assert support["data"]["percent"] == Decimal(10) and support["data"]["percent_of_products"] == ["LIC", "DATA"]


def test_a_product_without_code_or_with_an_unknown_model_is_rejected(defaults, context):
    with pytest.raises(InvalidRecordError) as raised:
        apply_inbound(defaults.get_inbound("product"),
                      product(ProductCode=None, Pricing_Model__c="tiered", Package_Size__c=Decimal("0")), context)
    assert str(raised.value).splitlines() == [
        "ProductCode: is required but empty",
        "Pricing_Model__c: 'tiered' is not one of the mapped values: 'flat', 'per_unit', 'graduated', 'volume', "
        "'package', 'allowance', 'percent_of'",
        "Package_Size__c: 0 is below the minimum 1",
    ]
    with pytest.raises(InvalidRecordError, match="^Pricing_Model__c: is required but empty$"):
        apply_inbound(defaults.get_inbound("product"), product(Pricing_Model__c=None), context)


def test_a_pricebook_entry_becomes_upsert_price_with_exact_tiers(defaults, context):
    record = {
        "Id": "01u7F000000AbCdQAK", "Product2Id": "01t7F000000AbCdQAK", "Pricebook2Id": "01s7F000000AbCdQAK",
        "Product2": {"ProductCode": "LIC"}, "CurrencyIsoCode": "EUR", "UnitPrice": Decimal("0"),
        "Price_Tiers__c": '[{"up_to": 5, "unit_price": "200"}, {"up_to": 10, "unit_price": "150"}, '
                          '{"up_to": null, "unit_price": "100", "flat_fee": "0"}]',
        "Overage_Price__c": None, "IsActive": True,
    }
    out = apply_inbound(defaults.get_inbound("price"), record, context)
    assert out["command"] == "upsert_price" and out["key"] == "01u7F000000AbCdQAK"
    assert out["data"]["product_code"] == "LIC" and out["data"]["unit_price"] == Decimal(0)
    assert out["data"]["tiers"] == [
        {"up_to": Decimal(5), "unit_price": Decimal(200), "flat_fee": Decimal(0)},
        {"up_to": Decimal(10), "unit_price": Decimal(150), "flat_fee": Decimal(0)},
        {"up_to": None, "unit_price": Decimal(100), "flat_fee": Decimal(0)},
    ]
    record["Price_Tiers__c"] = '[{"up_to": 5, "unit_price": "200"},]'
    record["Product2"] = None
    with pytest.raises(InvalidRecordError) as raised:
        apply_inbound(defaults.get_inbound("price"), record, context)
    assert str(raised.value).splitlines() == [
        "Product2.ProductCode: is required but empty",
        "Price_Tiers__c: '[{\"up_to\": 5, \"unit_price\": \"200\"},]' is not valid JSON (Expecting value at line 1 "
        "column 36)",
    ]


def line(id_, code="LIC", **overrides):
    record = {
        "Id": id_, "Product2": {"ProductCode": code}, "PricebookEntry": {"Product2": {"ProductCode": code}},
        "Product2Id": "01t7F000000AbCdQAK", "Quantity": Decimal("12.00"), "UnitPrice": Decimal("180.00"),
        "ListPrice": Decimal("200.00"), "Discount": None, "Discount_Amount__c": None, "ServiceDate": None,
    }
    return {**record, **overrides}


def opportunity(**overrides):
    record = {
        "Id": OPP, "SystemModstamp": "2026-11-20T10:00:00.000+0000", "Type": None, "AccountId": ACC,
        "Name": "Acme – licences", "Subscription_Reference__c": None, "Service_Start_Date__c": None,
        "Billsync_Subscription_Id__c": None,
        "CloseDate": "2026-11-20", "Term_Months__c": None, "Auto_Renew__c": True, "Billing_Anchor_Day__c": None,
        "Renewal_Uplift__c": None, "Minimum_Commitment__c": None, "Cancellation_Mode__c": None, "Billed_Through__c": None,
        "CurrencyIsoCode": "EUR", "SyncedQuoteId": None, "PO_Number__c": None, "Buyer_Reference__c": None,
        "Account": {"Buyer_Reference__c": None},
        "OpportunityLineItems": {"totalSize": 1, "done": True, "records": [line("00k7F000001AbCdQAK")]},
    }
    return {**record, **overrides}


def test_a_won_deal_without_a_quote_starts_a_subscription_from_its_products(defaults, context):
    spec = defaults.get_inbound("subscription")
    assert select_line_source(spec, opportunity()).object == "OpportunityLineItem"
    out = apply_inbound(spec, opportunity(), context)
    assert out["command"] == "start_subscription" and out["key"] == OPP
    assert out["data"] == {
        "salesforce_opportunity_id": OPP, "salesforce_account_id": ACC, "name": "Acme – licences",
        "subscription_reference": None, "starts_on": date(2026, 11, 20), "term_months": 12, "auto_renew": True,
        "anchor_day": None, "renewal_uplift": None, "minimum_commitment": None, "cancellation_mode": "end_of_term",
        "currency": "EUR", "billed_through": None, "billsync_subscription_id": None, "purchase_order": None,
        "buyer_reference": None,
        "items": [{
            "salesforce_line_id": "00k7F000001AbCdQAK", "product_code": "LIC",
            "salesforce_product_id": "01t7F000000AbCdQAK", "quantity": Decimal("12.00"),
            "unit_price": Decimal("180.00"), "list_price": Decimal("200.00"), "discount_percent": None,
            "discount_amount": None, "service_date": None,
        }],
    }


def test_the_buyers_references_come_from_the_deal_else_its_account(defaults, context):
    spec = defaults.get_inbound("subscription")
    out = apply_inbound(spec, opportunity(PO_Number__c="PO-2026-0042", Account={"Buyer_Reference__c": "ACME-FIN"}),
                        context)
    assert (out["data"]["purchase_order"], out["data"]["buyer_reference"]) == ("PO-2026-0042", "ACME-FIN")
    out = apply_inbound(spec, opportunity(Buyer_Reference__c="CC-7", Account={"Buyer_Reference__c": "ACME-FIN"}),
                        context)
    assert out["data"]["buyer_reference"] == "CC-7"


def test_a_products_tax_category_is_one_of_the_mapped_values(defaults, context):
    out = apply_inbound(defaults.get_inbound("product"), product(Tax_Category__c="reduced",
                                                                 Tax_Rate__c=Decimal("5.500")), context)
    assert (out["data"]["tax_category"], out["data"]["tax_rate"]) == ("reduced", Decimal("5.500"))
    with pytest.raises(InvalidRecordError, match="^Tax_Category__c: 'vat20' is not one of the mapped values"):
        apply_inbound(defaults.get_inbound("product"), product(Tax_Category__c="vat20"), context)


def test_billed_through_is_read_as_a_date(defaults, context):
    """Billed_Through__c: the last day billed before billsync (docs/custom-objects.md)."""
    out = apply_inbound(defaults.get_inbound("subscription"), opportunity(Billed_Through__c="2026-12-31"), context)
    assert out["data"]["billed_through"] == date(2026, 12, 31)


def test_an_empty_child_subquery_is_null_in_salesforce_json(defaults, context):
    out = apply_inbound(defaults.get_inbound("subscription"), opportunity(OpportunityLineItems=None), context)
    assert out["data"]["items"] == []


def test_a_synced_quote_supplies_the_lines_the_connector_fetched(defaults, context):
    spec = defaults.get_inbound("subscription")
    record = opportunity(SyncedQuoteId=QUOTE, Service_Start_Date__c="2026-12-01")
    assert select_line_source(spec, record).object == "QuoteLineItem"
    with pytest.raises(InvalidRecordError) as raised:
        apply_inbound(spec, record, context)
    assert str(raised.value) == f"SyncedQuoteId: {QUOTE!r} needs its QuoteLineItem records, which the connector did not pass"
    quote_lines = [line("0QL7F000001AbCdWAK", Product2=None, Discount=Decimal("10"), QuoteId=QUOTE),
                   line("0QL7F000001AbCeWAK", code="SUP", Quantity="1", Discount_Amount__c=Decimal("50.00"))]
    out = apply_inbound(spec, record, context, lines=quote_lines)
    assert out["data"]["starts_on"] == date(2026, 12, 1)
    assert [(i["salesforce_line_id"], i["product_code"], i["quantity"], i["discount_percent"], i["discount_amount"])
            for i in out["data"]["items"]] == [
        ("0QL7F000001AbCdWAK", "LIC", Decimal("12.00"), Decimal(10), None),
        ("0QL7F000001AbCeWAK", "SUP", Decimal(1), None, Decimal("50.00")),
    ]


@pytest.mark.parametrize(("type_", "command"), [
    ("New Business", "start_subscription"), ("Amendment", "amend_subscription"),
    ("Renewal", "renew_subscription"), ("Cancellation", "cancel_subscription"),
])
def test_the_opportunity_type_picks_the_command(defaults, context, type_, command):
    record = opportunity(Type=type_, Subscription_Reference__c="sub_123", Cancellation_Mode__c="immediate")
    out = apply_inbound(defaults.get_inbound("subscription"), record, context)
    assert out["command"] == command and out["data"]["subscription_reference"] == "sub_123"
    assert out["data"]["cancellation_mode"] == "immediate"


def test_an_amendment_needs_its_subscription_reference_and_lines_are_named(defaults, context):
    record = opportunity(Type="Amendment", Term_Months__c=Decimal("0"), Billing_Anchor_Day__c=Decimal("32"))
    record["OpportunityLineItems"]["records"] = [line("00k7F000001AbCdQAK", Quantity="abc", Discount=Decimal("150"))]
    with pytest.raises(InvalidRecordError) as raised:
        apply_inbound(defaults.get_inbound("subscription"), record, context)
    assert str(raised.value).splitlines() == [
        "Subscription_Reference__c: is required for amend_subscription but empty",
        "Billing_Anchor_Day__c: 32 is above the maximum 31",
        "OpportunityLineItem 00k7F000001AbCdQAK: Quantity: 'abc' is not a decimal number",
        "OpportunityLineItem 00k7F000001AbCdQAK: Discount: 150 is not a percentage between 0 and 100",
    ]
    [*_, quantity, _] = raised.value.errors
    assert (quantity.field, quantity.value, quantity.record) == ("Quantity", "abc", "OpportunityLineItem 00k7F000001AbCdQAK")


def test_an_unknown_opportunity_type_is_rejected(defaults, context):
    with pytest.raises(InvalidRecordError, match="^Type: 'Upsell' is not one of 'New Business', 'Amendment', "
                                                 "'Renewal', 'Cancellation'$"):
        apply_inbound(defaults.get_inbound("subscription"), opportunity(Type="Upsell"), context)


def test_a_record_without_its_synced_quote_field_is_not_silently_read_from_its_products(defaults, context):
    record = opportunity()
    del record["SyncedQuoteId"]
    with pytest.raises(InvalidRecordError, match=r"^SyncedQuoteId: is missing from the record \(the query did not "
                                                 r"select it\)$"):
        apply_inbound(defaults.get_inbound("subscription"), record, context)
