"""What the pull refuses for VAT: an Account's invalid VAT number, and, for a French seller, a product
without a VAT category; each with its reason, on the record, until it is fixed."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlmodel import Session

from billing_engine.tax import TaxCategory
from billing_engine.use_cases.catalog import get_product
from billing_engine.use_cases.customers import find_customer_by_salesforce_id
from connector.sync.pull import pull_changes, pull_status
from tests.integration.sync.test_pull import salesforce


@pytest.fixture
def seeded(org, services):
    org.seed("small", 0)
    pull_changes(services)
    return services


def errors(services) -> dict[str, str]:
    with Session(services.engine) as session:
        return {e.record_id: e.reason for e in pull_status(session).errors}


def test_an_account_with_an_invalid_vat_number_is_refused_with_the_reason(seeded, org):
    sf = salesforce(org)
    account = sf.Account.create({"Name": "Typo GmbH", "CurrencyIsoCode": "EUR", "BillingCountry": "DE",
                                 "VAT_Id__c": "DE136695977"})["id"]
    report = pull_changes(seeded)
    assert {o.object_name: o.failed for o in report.objects}["Account"] == 1
    assert errors(seeded)[account] == "vat_id: 'DE136695977' is not a valid VAT number: its check digits are wrong"
    with Session(seeded.engine) as session:
        assert find_customer_by_salesforce_id(session, account) is None

    sf.Account.update(account, {"VAT_Id__c": "DE 136 695 976"})
    pull_changes(seeded)
    assert account not in errors(seeded)
    with Session(seeded.engine) as session:
        assert find_customer_by_salesforce_id(session, account).vat_id == "DE136695976"


def test_a_french_sellers_product_needs_a_vat_category(org, services):
    org.seed("small", 0)
    french = replace(services, settings=services.settings.replace(seller_country="FR"))
    sf = salesforce(org)
    bare = sf.Product2.create({"Name": "Consulting", "ProductCode": "CONSULT", "IsActive": True,
                               "Pricing_Model__c": "flat", "Charge_Type__c": "one_time"})["id"]
    book = sf.Product2.create({"Name": "Library", "ProductCode": "BOOKS", "IsActive": True, "Pricing_Model__c": "flat",
                               "Billing_Interval__c": "month", "Tax_Category__c": "reduced", "Tax_Rate__c": 5.5})["id"]
    report = pull_changes(french)
    assert {o.object_name: o.failed for o in report.objects}["Product2"] == 1
    assert errors(french)[bare] == (
        "tax_category: product CONSULT has no VAT category (Tax_Category__c); a French invoice needs the category "
        "of every line (standard, reduced, zero, exempt, reverse_charge, out_of_scope)")
    with Session(french.engine) as session:
        library = get_product(session, f"prod-{book}")
    assert (library.tax.category, library.tax.percent) == (TaxCategory.REDUCED, Decimal("5.5"))
