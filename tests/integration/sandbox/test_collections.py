"""sObject Collections, composite, getUpdated/getDeleted and limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

ROLLED_BACK = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
               "message": "Record rolled back because not all records were valid and the request was using "
                          "AllOrNone header", "fields": []}


def account(name=None, **extra):
    record = {"attributes": {"type": "Account"}, **extra}
    if name is not None:
        record["Name"] = name
    return record


def names(sf):
    return sorted(r["Name"] for r in sf.query("SELECT Name FROM Account")["records"])


def test_create_all_or_none_false_reports_each_record(sf):
    results = sf.restful("composite/sobjects", method="POST",
                         json={"allOrNone": False, "records": [account("A"), account(), account("C")]})
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["id"].startswith("001") and results[0]["errors"] == []
    assert results[1] == {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                                        "message": "Required fields are missing: [Name]",
                                                        "fields": ["Name"]}]}
    assert names(sf) == ["A", "C"]


def test_create_all_or_none_true_rolls_everything_back(sf):
    results = sf.restful("composite/sobjects", method="POST",
                         json={"allOrNone": True, "records": [account("A"), account(), account("C")]})
    assert results[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[2] == {"success": False, "errors": [ROLLED_BACK]}
    assert names(sf) == []


def test_update_and_delete_collections(sf):
    ids = [r["id"] for r in sf.restful("composite/sobjects", method="POST",
                                       json={"records": [account("A"), account("B")]})]
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Account"}, "id": ids[0], "Name": "A2"},
        {"attributes": {"type": "Account"}, "id": ids[1], "Billing_Status__c": "bogus"}]})
    assert results[0] == {"id": ids[0], "success": True, "errors": []}
    assert results[1]["success"] is False and results[1]["id"] == ids[1]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert deleted == [{"id": i, "success": True, "errors": []} for i in ids]
    again = sf.restful("composite/sobjects", method="DELETE", params={"ids": ids[0]})
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def test_upsert_collection_by_external_id(sf):
    sf.Account.create({"Name": "Old", "Billsync_Customer_Id__c": "c1"})
    results = sf.restful("composite/sobjects/Account/Billsync_Customer_Id__c", method="PATCH", json={
        "allOrNone": False, "records": [account("New", Billsync_Customer_Id__c="c1"),
                                        account("Fresh", Billsync_Customer_Id__c="c2")]})
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True)]
    assert names(sf) == ["Fresh", "New"]


def test_upsert_collection_with_lookups_and_duplicate_keys(sf):
    sf.Account.create({"Name": "A", "Billsync_Customer_Id__c": "cus_1"})
    sf.Invoice__c.upsert("Billsync_Invoice_Id__c/inv_1", {"Account__r": {"Billsync_Customer_Id__c": "cus_1"}})
    line = {"attributes": {"type": "Invoice_Line__c"}, "Invoice__r": {"Billsync_Invoice_Id__c": "inv_1"}}
    results = sf.restful("composite/sobjects/Invoice_Line__c/Billsync_Line_Id__c", method="PATCH", json={
        "allOrNone": False, "records": [{**line, "Billsync_Line_Id__c": "l1", "Amount__c": 5},
                                        {**line, "Billsync_Line_Id__c": "l2", "Amount__c": 6},
                                        {**line, "Billsync_Line_Id__c": "l2", "Amount__c": 7}]})
    assert results[0]["success"] is True and results[0]["created"] is True
    assert [r["errors"][0]["statusCode"] for r in results[1:]] == ["DUPLICATE_EXTERNAL_ID"] * 2


def test_more_than_200_records_is_refused(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="POST", json={"records": [account(f"A{i}") for i in range(201)]})
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_composite_references_and_one_api_call(sf, sandbox):
    before = sandbox.api_calls
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "acc",
         "body": {"Name": "Acme"}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Opportunity", "referenceId": "opp",
         "body": {"Name": "Deal", "AccountId": "@{acc.id}", "StageName": "Prospecting", "CloseDate": "2026-12-01"}},
        {"method": "GET", "url": "/services/data/v59.0/query?q=SELECT+Id,Name+FROM+Account", "referenceId": "q"},
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Account/@{q.records[0].Id}", "referenceId": "upd",
         "body": {"Industry": "Retail"}},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [201, 201, 200, 204]
    assert result[0]["httpHeaders"]["Location"] == f"/services/data/v59.0/sobjects/Account/{result[0]['body']['id']}"
    assert sf.Opportunity.get(result[1]["body"]["id"])["AccountId"] == result[0]["body"]["id"]
    assert sandbox.api_calls - before == 2  # the composite call, then the get


def test_composite_all_or_none_halts_and_rolls_back(sf):
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "a", "body": {"Name": "A"}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "b", "body": {}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "c", "body": {"Name": "C"}},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [400, 400, 400]
    assert result[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert result[0]["body"][0]["errorCode"] == result[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert names(sf) == []


def test_composite_without_all_or_none_keeps_the_successes(sf):
    body = {"compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "a", "body": {}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "b", "body": {"Name": "B"}},
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Account/@{a.id}", "referenceId": "c",
         "body": {"Name": "x"}},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [400, 201, 400]
    assert result[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert names(sf) == ["B"]


def test_composite_upserts_with_parent_external_ids(sf):
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Account/Billsync_Customer_Id__c/cus_9",
         "referenceId": "acc", "body": {"Name": "Nine"}},
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Payment__c/Billsync_Payment_Id__c/pay_1",
         "referenceId": "pay", "body": {"Account__r": {"Billsync_Customer_Id__c": "cus_9"}, "Amount__c": "12.30"}},
    ]}
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [201, 201]
    assert sf.Payment__c.get(result[1]["body"]["id"])["Account__c"] == result[0]["body"]["id"]


def test_more_than_25_subrequests_is_refused(sf):
    subs = [{"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": f"r{i}"} for i in range(26)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite", method="POST", json={"compositeRequest": subs})


def test_updated_and_deleted(sf):
    start = datetime.now(UTC) - timedelta(minutes=2)
    keep = sf.Account.create({"Name": "Keep"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    end = datetime.now(UTC) + timedelta(minutes=2)
    updated = sf.Account.updated(start, end)
    assert updated["ids"] == [keep] and updated["latestDateCovered"].endswith("+0000")
    deleted = sf.Account.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [gone]
    assert {"earliestDateAvailable", "latestDateCovered"} <= set(deleted)
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.updated(end, start)
    assert err.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_limits_report_the_daily_allocation(sf, sandbox):
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    assert limits["DailyApiRequests"]["Remaining"] == 100000 - sandbox.api_calls


def test_composite_takes_at_most_five_collections_or_queries(sf):
    """Salesforce: of a composite's 25 subrequests, at most 5 may be sObject Collections or queries."""
    def collection(n):
        return {"method": "POST", "url": "/services/data/v59.0/composite/sobjects", "referenceId": f"c{n}",
                "body": {"records": [account(f"C{n}")]}}

    accepted = sf.restful("composite", method="POST", json={"compositeRequest": [collection(n) for n in range(5)]})
    assert [r["httpStatusCode"] for r in accepted["compositeResponse"]] == [200] * 5
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite", method="POST", json={"compositeRequest": [collection(n) for n in range(6)]})
    assert err.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 5  # the refused call wrote nothing
