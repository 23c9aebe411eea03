"""Validation rules and unique fields declared in the schema file."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sfsandbox.server import SandboxServer


def test_invoice_total_rule_gives_field_custom_validation_exception(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Invoice__c.create({"Name": "INV-1", "Total__c": "-0.01"})
    assert err.value.content == [{"message": "An invoice total cannot be negative.",
                                  "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": ["Total__c"]}]
    assert sf.Invoice__c.create({"Name": "INV-1", "Total__c": "0"})["success"] is True


def test_rules_from_a_schema_extension_apply(tmp_path):
    extension = {
        "objects": {"Account": {"fields": {"Legacy_Code__c": {"type": "string", "length": 10}}}},
        "validation_rules": [{"object": "Account", "name": "Code_Needs_VAT",
                              "error_condition": "NOT(ISBLANK(Legacy_Code__c)) AND ISBLANK(VAT_Id__c)",
                              "message": "A legacy code needs a VAT id"}],
    }
    with SandboxServer(state_dir=tmp_path, schema_extensions=[extension]) as sb:
        sf = Salesforce(instance_url=sb.url, session_id=sb.issue_token()["access_token"],
                        session=sb.requests_session())
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.Account.create({"Name": "A", "Legacy_Code__c": "X1"})
        assert err.value.content[0] == {"message": "A legacy code needs a VAT id",
                                        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": []}
        assert sf.Account.create({"Name": "A", "Legacy_Code__c": "X1", "VAT_Id__c": "FR1"})["success"]
        assert "Legacy_Code__c" in {f["name"] for f in sf.Account.describe()["fields"]}


def test_external_ids_are_case_sensitive_and_unique(sf):
    sf.Payment__c.create({"Billsync_Payment_Id__c": "pay_A"})
    assert sf.Payment__c.create({"Billsync_Payment_Id__c": "pay_a"})["success"] is True
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Payment__c.create({"Billsync_Payment_Id__c": "pay_A"})
    assert err.value.content[0]["errorCode"] == "DUPLICATE_VALUE"


def test_a_deleted_record_frees_its_external_id(sf):
    first = sf.Payment__c.create({"Billsync_Payment_Id__c": "pay_1"})["id"]
    sf.Payment__c.delete(first)
    assert sf.Payment__c.upsert("Billsync_Payment_Id__c/pay_1", {"Amount__c": 1}) == 201


def test_deleting_an_invoice_deletes_its_lines(sf):
    invoice = sf.Invoice__c.create({"Billsync_Invoice_Id__c": "inv"})["id"]
    line = sf.Invoice_Line__c.create({"Invoice__c": invoice, "Amount__c": 1})["id"]
    sf.Invoice__c.delete(invoice)
    rows = sf.query_all(f"SELECT Id, IsDeleted FROM Invoice_Line__c WHERE Id = '{line}'", include_deleted=True)
    assert rows["records"][0]["IsDeleted"] is True


def test_price_book_rules(sandbox, sf):
    sandbox.seed("small")
    product = sf.Product2.create({"Name": "New", "ProductCode": "NEW", "IsActive": True})["id"]
    custom_book = sf.Pricebook2.create({"Name": "Partner", "IsActive": True})["id"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.PricebookEntry.create({"Pricebook2Id": custom_book, "Product2Id": product, "UnitPrice": 5,
                                  "CurrencyIsoCode": "EUR"})
    assert err.value.content[0]["errorCode"] == "STANDARD_PRICE_NOT_DEFINED"
    entry = sf.query("SELECT Id FROM PricebookEntry LIMIT 1")["records"][0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.PricebookEntry.delete(entry)
    assert err.value.content[0]["errorCode"] == "DELETE_FAILED"
