"""CRUD, upsert by external id, describe and error shapes, through unmodified simple-salesforce."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from simple_salesforce import format_external_id
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from sfsandbox.ids import to18

DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$")


def test_create_returns_201_and_an_18_character_id_with_the_account_prefix(sf):
    result = sf.Account.create({"Name": "Acme"})
    assert result["success"] is True and result["errors"] == []
    assert result["id"].startswith("001") and len(result["id"]) == 18
    assert to18(result["id"][:15]) == result["id"]


def test_get_returns_attributes_system_fields_and_exact_decimals(sf):
    account_id = sf.Account.create({"Name": "Acme", "Tax_Rate__c": "20.125", "MRR__c": 1234.5})["id"]
    record = sf.Account.get(account_id)
    assert record["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{account_id}"}
    raw = sf.session.get(f"{sf.base_url}sobjects/Account/{account_id}", headers=sf.headers).text
    # Exact number text on the wire (no float round trip): 20.125 and 1234.50 (scale 2).
    assert '"Tax_Rate__c":20.125,' in raw and '"MRR__c":1234.5' in raw
    queried = sf.query(f"SELECT Tax_Rate__c FROM Account WHERE Id = '{account_id}'")["records"][0]
    assert isinstance(queried["Tax_Rate__c"], Decimal) and queried["Tax_Rate__c"] == Decimal("20.125")
    assert record["IsDeleted"] is False
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert DATETIME.match(record[name]), record[name]


def test_update_returns_204_and_moves_last_modified(sf, sandbox):
    account_id = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Account.update(account_id, {"Name": "Acme 2", "Billing_Status__c": "active"}) == 204
    record = sf.Account.get(account_id)
    assert record["Name"] == "Acme 2" and record["Billing_Status__c"] == "active"


def test_fifteen_character_ids_are_accepted_on_input(sf):
    account_id = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Account.get(account_id[:15])["Id"] == account_id
    opp = sf.Opportunity.create({"Name": "D", "StageName": "Prospecting", "CloseDate": "2026-12-01",
                                 "AccountId": account_id[:15]})
    assert sf.Opportunity.get(opp["id"])["AccountId"] == account_id


def test_delete_then_get_is_entity_is_deleted_and_a_second_delete_too(sf):
    account_id = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Account.delete(account_id) == 204
    for call in (lambda: sf.Account.get(account_id), lambda: sf.Account.delete(account_id)):
        with pytest.raises(SalesforceResourceNotFound) as err:
            call()
        assert err.value.content == [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}]


def test_unknown_id_and_unknown_sobject_are_404_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Account.get("001Dn0000000000AAA")
    assert err.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Nope__c.create({"Name": "x"})
    assert err.value.content == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


@pytest.mark.parametrize(
    ("obj", "body", "code", "fields"),
    [
        ("Account", {"Industry": "Retail"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ("Opportunity", {"Name": "D"}, "REQUIRED_FIELD_MISSING", ["StageName", "CloseDate"]),
        ("Opportunity", {"Name": "D", "StageName": "Closed Won", "CloseDate": "2026-01-01", "IsWon": True},
         "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsWon"]),
        ("Account", {"Name": "A", "SystemModstamp": "2026-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE",
         ["SystemModstamp"]),
        ("Account", {"Name": "A", "Bogus__c": 1}, "INVALID_FIELD", ["Bogus__c"]),
        ("Account", {"Name": "A", "Billing_Status__c": "unknown"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
         ["Billing_Status__c"]),
        ("Account", {"Name": "A", "VAT_Id__c": "X" * 33}, "STRING_TOO_LONG", ["VAT_Id__c"]),
        # Number(12,6): twelve digits before the point at most, so 13 are outside its range
        ("Product2", {"Name": "P", "Included_Units__c": "1234567890123.5"}, "NUMBER_OUTSIDE_VALID_RANGE",
         ["Included_Units__c"]),
        ("Account", {"Name": "A", "MRR__c": "1" * 17}, "NUMBER_OUTSIDE_VALID_RANGE", ["MRR__c"]),
        ("Opportunity", {"Name": "D", "StageName": "Prospecting", "CloseDate": "2026-01-01", "AccountId": "nope"},
         "MALFORMED_ID", ["AccountId"]),
    ],
)
def test_dml_errors_are_400_with_a_list_body(sf, obj, body, code, fields):
    with pytest.raises(SalesforceMalformedRequest) as err:
        getattr(sf, obj).create(body)
    assert err.value.status == 400
    assert isinstance(err.value.content, list) and len(err.value.content) == 1
    entry = err.value.content[0]
    assert entry["errorCode"] == code and entry["fields"] == fields and entry["message"]


def test_malformed_json_is_400_json_parser_error(sf):
    response = sf.session.post(f"{sf.base_url}sobjects/Account/", data="{bad", headers=sf.headers)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_a_wrong_json_type_is_json_parser_error(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": "A", "MRR__c": "lots"})
    assert err.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_method_not_allowed_is_405_with_list_body(sf):
    with pytest.raises(SalesforceGeneralError) as err:
        sf.restful("sobjects/Account/describe", method="POST", json={})
    assert err.value.status == 405 and err.value.content[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_upsert_creates_201_then_updates_200_with_created_false(sf):
    path = format_external_id("Billsync_Customer_Id__c", "cus/1 #a")
    assert sf.Account.upsert(path, {"Name": "First"}) == 201
    raw = sf.Account.upsert(path, {"Name": "Second"}, raw_response=True)
    assert raw.status_code == 200
    body = raw.json()
    assert body["created"] is False and body["success"] is True and body["errors"] == []
    record = sf.Account.get_by_custom_id("Billsync_Customer_Id__c", "cus/1 #a")
    assert record["Name"] == "Second" and record["Id"] == body["id"]
    assert len(sf.query("SELECT Id FROM Account")["records"]) == 1


def test_upsert_create_body_has_created_true(sf):
    raw = sf.Account.upsert("Billsync_Customer_Id__c/c1", {"Name": "A"}, raw_response=True)
    assert raw.status_code == 201
    assert raw.json() == {"id": raw.json()["id"], "success": True, "errors": [], "created": True}


def test_upsert_before_api_46_answers_204_on_update(make_sf):
    old = make_sf(version="45.0")
    assert old.Account.upsert("Billsync_Customer_Id__c/c1", {"Name": "A"}) == 201
    assert old.Account.upsert("Billsync_Customer_Id__c/c1", {"Name": "B"}) == 204


def test_upsert_on_a_field_that_is_not_an_external_id_is_404(sf):
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Account.upsert("Name/x", {"Industry": "Retail"})
    assert err.value.content[0]["errorCode"] == "NOT_FOUND"


def test_upsert_with_several_matches_is_300_listing_them(sandbox, make_sf):
    sandbox.schema.objects["Account"].fields["Billsync_Customer_Id__c"].unique = False
    try:
        sf = make_sf()
        sf.Account.create({"Name": "A", "Billsync_Customer_Id__c": "dup"})
        sf.Account.create({"Name": "B", "Billsync_Customer_Id__c": "dup"})
        with pytest.raises(SalesforceMoreThanOneRecord) as err:
            sf.Account.upsert("Billsync_Customer_Id__c/dup", {"Name": "C"})
        assert err.value.status == 300
        assert len(err.value.content) == 2
        assert all(u.startswith("/services/data/v59.0/sobjects/Account/001") for u in err.value.content)
    finally:
        sandbox.schema.objects["Account"].fields["Billsync_Customer_Id__c"].unique = True


def test_upsert_sets_a_lookup_through_the_parents_external_id(sf):
    account_id = sf.Account.create({"Name": "A", "Billsync_Customer_Id__c": "cus_1"})["id"]
    sf.Invoice__c.upsert("Billsync_Invoice_Id__c/inv_1", {"Account__r": {"Billsync_Customer_Id__c": "cus_1"},
                                                           "Total__c": "10.50", "CurrencyIsoCode": "EUR"})
    assert sf.Invoice_Line__c.upsert("Billsync_Line_Id__c/line_1", {
        "Invoice__r": {"Billsync_Invoice_Id__c": "inv_1"}, "Amount__c": "10.50"}) == 201
    # The same body again (billsync pushes one body for both cases) updates.
    assert sf.Invoice_Line__c.upsert("Billsync_Line_Id__c/line_1", {
        "Invoice__r": {"Billsync_Invoice_Id__c": "inv_1"}, "Amount__c": "11"}) == 200
    invoice = sf.Invoice__c.get_by_custom_id("Billsync_Invoice_Id__c", "inv_1")
    assert invoice["Account__c"] == account_id
    line = sf.Invoice_Line__c.get_by_custom_id("Billsync_Line_Id__c", "line_1")
    assert line["Invoice__c"] == invoice["Id"] and line["Amount__c"] == Decimal("11.00")


def test_a_missing_parent_external_id_is_invalid_field(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Invoice__c.upsert("Billsync_Invoice_Id__c/inv_1", {"Account__r": {"Billsync_Customer_Id__c": "nobody"}})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_duplicate_external_id_value_is_duplicate_value(sf):
    sf.Account.create({"Name": "A", "Billsync_Customer_Id__c": "cus_1"})
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": "B", "Billsync_Customer_Id__c": "cus_1"})
    entry = err.value.content[0]
    assert entry["errorCode"] == "DUPLICATE_VALUE"
    assert re.match(r"duplicate value found: Billsync_Customer_Id__c duplicates value on record with id: 001\w{15}$",
                    entry["message"])


def test_global_describe_lists_standard_and_custom_objects(sf):
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    for name in ("Account", "Contact", "Product2", "Pricebook2", "PricebookEntry", "Opportunity",
                 "OpportunityLineItem", "Quote", "QuoteLineItem", "Contract", "Order", "Invoice__c",
                 "Invoice_Line__c", "Payment__c"):
        assert name in names
    assert names["Account"]["keyPrefix"] == "001" and names["Invoice__c"]["custom"] is True


def test_describe_reports_field_properties(sf):
    fields = {f["name"]: f for f in sf.Invoice__c.describe()["fields"]}
    ext = fields["Billsync_Invoice_Id__c"]
    assert (ext["type"], ext["externalId"], ext["unique"], ext["length"]) == ("string", True, True, 64)
    total = fields["Total__c"]
    assert (total["type"], total["precision"], total["scale"], total["nillable"]) == ("currency", 18, 2, True)
    status = fields["Status__c"]
    assert [p["value"] for p in status["picklistValues"]] == ["draft", "open", "paid", "void", "uncollectible"]
    account = fields["Account__c"]
    assert account["referenceTo"] == ["Account"] and account["relationshipName"] == "Account__r"
    opp = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert opp["IsWon"]["createable"] is False and opp["IsWon"]["updateable"] is False
    assert opp["StageName"]["nillable"] is False
    lines = {f["name"]: f for f in sf.Invoice_Line__c.describe()["fields"]}
    assert lines["Invoice__c"]["updateable"] is False and lines["Invoice__c"]["createable"] is True
    children = {c["relationshipName"] for c in sf.Invoice__c.describe()["childRelationships"]}
    assert "Invoice_Lines__r" in children


def test_every_rest_response_carries_the_limit_header(sf, sandbox):
    sf.Account.create({"Name": "A"})
    response = sf.session.get(f"{sf.base_url}sobjects/Account/001Dn0000000000AAA", headers=sf.headers)
    assert response.status_code == 404
    assert re.fullmatch(r"api-usage=\d+/100000", response.headers["Sforce-Limit-Info"])
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"].used == sandbox.api_calls == 3


def test_derived_opportunity_fields_follow_stage_name(sf):
    opp_id = sf.Opportunity.create({"Name": "D", "StageName": "Negotiation", "CloseDate": "2026-12-01"})["id"]
    record = sf.Opportunity.get(opp_id)
    assert (record["IsClosed"], record["IsWon"]) == (False, False)
    sf.Opportunity.update(opp_id, {"StageName": "Closed Won"})
    record = sf.Opportunity.get(opp_id)
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (True, True, Decimal(100))
    sf.Opportunity.update(opp_id, {"StageName": "Closed Lost"})
    assert (sf.Opportunity.get(opp_id)["IsClosed"], sf.Opportunity.get(opp_id)["IsWon"]) == (True, False)


def test_quote_lines_keep_discount_as_a_percentage_and_sync_sets_amount(sandbox, sf):
    sandbox.seed("small")
    entry = sf.query("SELECT Id, UnitPrice FROM PricebookEntry WHERE ProductCode = 'SEATS' "
                     "AND CurrencyIsoCode = 'EUR'")["records"][0]
    account_id = sf.Account.create({"Name": "A", "CurrencyIsoCode": "EUR"})["id"]
    opp_id = sf.Opportunity.create({"Name": "D", "AccountId": account_id, "StageName": "Proposal",
                                    "CloseDate": "2026-12-01"})["id"]
    quote_id = sf.Quote.create({"Name": "Q", "OpportunityId": opp_id})["id"]
    line_id = sf.QuoteLineItem.create({"QuoteId": quote_id, "PricebookEntryId": entry["Id"], "Quantity": 10,
                                       "UnitPrice": "22.00", "Discount": "12.5"})["id"]
    line = sf.QuoteLineItem.get(line_id)
    assert line["Discount"] == Decimal("12.5")
    assert line["ListPrice"] == entry["UnitPrice"] == Decimal("25.00")
    assert (line["Subtotal"], line["TotalPrice"]) == (Decimal("220.00"), Decimal("192.50"))
    sf.Opportunity.update(opp_id, {"SyncedQuoteId": quote_id})
    assert sf.Quote.get(quote_id)["IsSyncing"] is True
    assert sf.Opportunity.get(opp_id)["Amount"] == Decimal("192.50")
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Quote.update(quote_id, {"IsSyncing": False})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_a_line_change_moves_the_opportunitys_system_modstamp_even_when_amount_stays(sandbox, sf, monkeypatch):
    """As in Salesforce, saving an Opportunity's line recalculates its roll-ups and moves its
    SystemModstamp (not LastModifiedDate), also for a line priced 0 whose quantity changes, and
    also for a line of the synced quote."""
    from datetime import UTC, datetime, timedelta

    sandbox.seed("small")
    now = [datetime(2026, 5, 1, 9, 0, tzinfo=UTC)]
    monkeypatch.setattr(sandbox.org, "clock", lambda: now[0])
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE ProductCode = 'LIC' AND CurrencyIsoCode = 'EUR'")
    account_id = sf.Account.create({"Name": "A", "CurrencyIsoCode": "EUR"})["id"]
    opp_id = sf.Opportunity.create({"Name": "D", "AccountId": account_id, "StageName": "Proposal",
                                    "CloseDate": "2026-12-01"})["id"]
    line_id = sf.OpportunityLineItem.create({"OpportunityId": opp_id, "PricebookEntryId": entry["records"][0]["Id"],
                                             "Quantity": 12, "UnitPrice": 0})["id"]
    before = sf.Opportunity.get(opp_id)
    now[0] += timedelta(minutes=1)
    sf.OpportunityLineItem.update(line_id, {"Quantity": 20})
    after = sf.Opportunity.get(opp_id)
    assert after["Amount"] == before["Amount"] == Decimal("0.00")
    assert (before["SystemModstamp"], after["SystemModstamp"]) == ("2026-05-01T09:00:00.000+0000",
                                                                   "2026-05-01T09:01:00.000+0000")
    assert after["LastModifiedDate"] == before["LastModifiedDate"]

    quote_id = sf.Quote.create({"Name": "Q", "OpportunityId": opp_id})["id"]
    quote_line = sf.QuoteLineItem.create({"QuoteId": quote_id, "PricebookEntryId": entry["records"][0]["Id"],
                                          "Quantity": 3, "UnitPrice": 0})["id"]
    sf.Opportunity.update(opp_id, {"SyncedQuoteId": quote_id})
    now[0] += timedelta(minutes=1)
    sf.QuoteLineItem.update(quote_line, {"Quantity": 4})
    assert sf.Opportunity.get(opp_id)["SystemModstamp"] == "2026-05-01T09:02:00.000+0000"
