"""Field-by-field comparison of the sandbox's responses with the shapes a real org returns: error
bodies, CRUD and upsert statuses, sObject Collections results, composite, query and replication
responses, and the Outbound Message envelope (what the sandbox supports: docs/sandbox.md). The samples,
observed on real orgs, are copied here so the test runs anywhere."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.exceptions import SalesforceError

# Error bodies as a real org returns them (a JSON list of {message, errorCode[, fields]}).
DOC_ERRORS = {
    "INVALID_SESSION_ID": [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    "REQUEST_LIMIT_EXCEEDED": [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    "ENTITY_IS_DELETED": [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}],
    "NOT_FOUND": [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}],
    "REQUIRED_FIELD_MISSING": [{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING",
                                "fields": ["Name"]}],
    "METHOD_NOT_ALLOWED": [{"errorCode": "METHOD_NOT_ALLOWED",
                            "message": "HTTP Method 'PATCH' not allowed. Allowed are HEAD,GET,POST"}],
}
# An Outbound Message request captured from a real org (whitespace removed), with its sObject fields.
DOC_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<OrganizationId>00D7F00000107XsUAI</OrganizationId><ActionId>04k7F0000008V3hQAE</ActionId>"
    '<SessionId xsi:nil="true"/><EnterpriseUrl>https://ap5.salesforce.com/services/Soap/c/47.0/00D7F00000107Xs'
    "</EnterpriseUrl><PartnerUrl>https://ap5.salesforce.com/services/Soap/u/47.0/00D7F00000107Xs</PartnerUrl>"
    "<Notification><Id>04l7F000008aeAyQAI</Id>"
    '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
    "<sf:Id>0067F000003pmdWQAQ</sf:Id><sf:Amount>120000.0</sf:Amount><sf:CloseDate>2017-04-03</sf:CloseDate>"
    "<sf:Name>Express Logistics SLA</sf:Name><sf:StageName>Perception Analysis</sf:StageName></sObject>"
    "</Notification></notifications></soapenv:Body></soapenv:Envelope>"
)


def error_of(call):
    with pytest.raises(SalesforceError) as err:
        call()
    return err.value.status, err.value.content


def test_error_bodies_match_the_documented_samples(sf, make_sf, sandbox):
    assert error_of(lambda: make_sf(token="bad").query("SELECT Id FROM Account")) == (
        401, DOC_ERRORS["INVALID_SESSION_ID"])
    assert error_of(lambda: sf.Account.get("001Dn0000000000AAA")) == (404, DOC_ERRORS["NOT_FOUND"])
    assert error_of(lambda: sf.Account.create({})) == (400, DOC_ERRORS["REQUIRED_FIELD_MISSING"])
    assert error_of(lambda: sf.restful("sobjects/Account/", method="PATCH", json={})) == (
        405, DOC_ERRORS["METHOD_NOT_ALLOWED"])
    account_id = sf.Account.create({"Name": "A"})["id"]
    sf.Account.delete(account_id)
    assert error_of(lambda: sf.Account.get(account_id)) == (404, DOC_ERRORS["ENTITY_IS_DELETED"])
    sandbox.configure_faults(api_allocation=sandbox.api_calls)
    assert error_of(lambda: sf.query("SELECT Id FROM Account")) == (403, DOC_ERRORS["REQUEST_LIMIT_EXCEEDED"])


def test_error_bodies_with_variable_messages_have_the_documented_keys(sf):
    sf.Account.create({"Name": "A", "Billsync_Customer_Id__c": "x"})
    status, body = error_of(lambda: sf.Account.create({"Name": "B", "Billsync_Customer_Id__c": "x"}))
    assert status == 400 and set(body[0]) == {"message", "errorCode", "fields"} and body[0]["fields"] == []
    assert re.fullmatch(r"duplicate value found: \w+ duplicates value on record with id: \w{15,18}", body[0]["message"])
    status, body = error_of(lambda: sf.Invoice__c.create({"Total__c": -1}))
    assert (status, set(body[0]), body[0]["errorCode"]) == (400, {"message", "errorCode", "fields"},
                                                          "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    status, body = error_of(lambda: sf.query("SELECT Id, From Account"))
    assert status == 400 and set(body[0]) == {"message", "errorCode"} and body[0]["errorCode"] == "MALFORMED_QUERY"
    assert re.search(r"\^\nERROR at Row:1:Column:\d+\n", body[0]["message"])
    status, body = error_of(lambda: sf.query("SELECT foo__c FROM Account"))
    assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")


def test_crud_and_upsert_statuses_and_bodies(sf):
    created = sf.session.post(f"{sf.base_url}sobjects/Account/", json={"Name": "A"}, headers=sf.headers)
    assert created.status_code == 201 and set(created.json()) == {"id", "success", "errors"}
    assert sf.Account.update(created.json()["id"], {"Name": "B"}) == 204
    up = sf.Account.upsert("Billsync_Customer_Id__c/e1", {"Name": "U"}, raw_response=True)
    assert up.status_code == 201 and up.json() == {"id": up.json()["id"], "success": True, "errors": [],
                                                   "created": True}
    up = sf.Account.upsert("Billsync_Customer_Id__c/e1", {"Name": "U2"}, raw_response=True)
    assert up.status_code == 200 and up.json() == {"id": up.json()["id"], "success": True, "errors": [],
                                                   "created": False}
    assert error_of(lambda: sf.Account.upsert("NoSuch__c/1", {"Name": "x"}))[1][0]["errorCode"] == "NOT_FOUND"
    assert sf.Account.delete(created.json()["id"]) == 204


def test_collection_results_have_the_documented_shape(sf):
    ok_and_bad = sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Account"}, "Name": "A"}, {"attributes": {"type": "Account"}}]})
    assert set(ok_and_bad[0]) == {"id", "success", "errors"}
    assert set(ok_and_bad[1]) == {"success", "errors"} and set(ok_and_bad[1]["errors"][0]) == {
        "statusCode", "message", "fields"}
    rolled = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "Name": "A"}, {"attributes": {"type": "Account"}}]})
    assert rolled[0]["errors"] == [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                    "message": "Record rolled back because not all records were valid and the "
                                               "request was using AllOrNone header", "fields": []}]


def test_composite_query_and_replication_shapes(sf):
    out = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "refAccount",
         "body": {"Name": "A"}}]})
    entry = out["compositeResponse"][0]
    assert set(entry) == {"body", "httpHeaders", "httpStatusCode", "referenceId"}
    assert entry["httpHeaders"]["Location"].startswith("/services/data/v59.0/sobjects/Account/001")
    query = sf.query("SELECT Id FROM Account")
    assert set(query) == {"totalSize", "done", "records"} and set(query["records"][0]) == {"attributes", "Id"}
    now = datetime.now(UTC)
    assert set(sf.Account.updated(now - timedelta(days=1), now)) == {"ids", "latestDateCovered"}
    assert set(sf.Account.deleted(now - timedelta(days=1), now)) == {
        "deletedRecords", "earliestDateAvailable", "latestDateCovered"}


def _shape(element: ET.Element, depth: int = 0) -> list:
    """Tag names in order, down to the sObject element (its fields are configured per action)."""
    out = []
    for child in element:
        tag = child.tag.split("}")[-1]
        out.append((tag, child.attrib if tag in ("SessionId",) else None,
                    _shape(child, depth + 1) if tag != "sObject" else None))
    return out


def test_outbound_envelope_matches_the_captured_request(sf, sandbox, make_listener):
    listener = make_listener()
    sandbox.add_outbound_message("Opportunity", ["Amount", "CloseDate", "Name", "StageName"], listener.url)
    sf.Opportunity.create({"Name": "Express Logistics SLA", "StageName": "Negotiation", "CloseDate": "2017-04-03",
                           "Amount": "120000.0"})
    assert listener.wait_for(1)
    ours = ET.fromstring(listener.requests[0][1])
    documented = ET.fromstring(DOC_ENVELOPE)
    assert _shape(ours) == _shape(documented)
    ns = {"sf": "urn:sobject.enterprise.soap.sforce.com", "om": "http://soap.sforce.com/2005/09/outbound"}
    path = "{*}Body/om:notifications/om:Notification/om:sObject"
    ours_obj, doc_obj = ours.find(path, ns), documented.find(path, ns)
    assert ours_obj.attrib == doc_obj.attrib
    assert [c.tag for c in ours_obj] == [c.tag for c in doc_obj]
    for field in ("Amount", "CloseDate", "Name"):
        assert ours_obj.findtext(f"sf:{field}", namespaces=ns) == doc_obj.findtext(f"sf:{field}", namespaces=ns)
    for tag, length in (("OrganizationId", 18), ("ActionId", 18)):
        assert len(ours.find(f"{{*}}Body/om:notifications/om:{tag}", ns).text) == length
