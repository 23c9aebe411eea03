"""Outbound Messages and CDC-style events delivered to a test listener on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from decimal import Decimal

from sfsandbox.notify import CdcConfig

NS = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "om": "http://soap.sforce.com/2005/09/outbound",
      "sf": "urn:sobject.enterprise.soap.sforce.com", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
FIELDS = ["Name", "StageName", "Amount", "CloseDate", "AccountId", "IsWon"]


def notifications(body: bytes) -> list[ET.Element]:
    root = ET.fromstring(body)
    return root.findall("soapenv:Body/om:notifications/om:Notification", NS)


def won_deal(sf, name="Deal", amount="1200.50"):
    return sf.Opportunity.create({"Name": name, "StageName": "Closed Won", "CloseDate": "2026-12-01",
                                  "Amount": amount})["id"]


def test_outbound_message_retried_until_acked_with_the_same_notification_id(sf, sandbox, make_listener, acks):
    ack, nack = acks
    listener = make_listener(answers=[(500, "boom"), (200, nack)])
    action = sandbox.add_outbound_message("Opportunity", FIELDS, listener.url, condition="StageName = 'Closed Won'")
    sf.Opportunity.create({"Name": "Open", "StageName": "Prospecting", "CloseDate": "2026-12-01"})
    opp_id = won_deal(sf)
    assert listener.wait_for(3)
    time.sleep(0.3)
    assert len(listener.requests) == 3  # acknowledged on the third attempt: no more
    ids = [[n.findtext("om:Id", namespaces=NS) for n in notifications(body)] for _, body in listener.requests]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 1 and ids[0][0].startswith("04l")
    headers, body = listener.requests[-1]
    assert headers["content-type"].startswith("text/xml")
    root = ET.fromstring(body)
    envelope = root.find("soapenv:Body/om:notifications", NS)
    assert envelope.findtext("om:OrganizationId", namespaces=NS) == sandbox.org_id
    assert envelope.findtext("om:ActionId", namespaces=NS) == action.action_id
    assert action.action_id.startswith("04k") and len(action.action_id) == 18
    assert envelope.find("om:SessionId", NS).get(f"{{{NS['xsi']}}}nil") == "true"
    assert envelope.findtext("om:PartnerUrl", namespaces=NS).endswith(f"/services/Soap/u/59.0/{sandbox.org_id[:15]}")
    sobject = notifications(body)[0].find("om:sObject", NS)
    assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Opportunity"
    values = {child.tag.split("}")[1]: child.text for child in sobject}
    assert values["Id"] == opp_id and values["Name"] == "Deal" and values["StageName"] == "Closed Won"
    assert values["Amount"] == "1200.50" and values["IsWon"] == "true" and values["CloseDate"] == "2026-12-01"
    assert sobject.find("sf:AccountId", NS).get(f"{{{NS['xsi']}}}nil") == "true"


def test_many_changes_are_batched_at_most_100_per_message(sf, sandbox, make_listener):
    listener = make_listener()
    sandbox.add_outbound_message("Opportunity", ["Name"], listener.url)
    for start in (0, 150):
        records = [{"attributes": {"type": "Opportunity"}, "Name": f"D{i}", "StageName": "Prospecting",
                    "CloseDate": "2026-12-01"} for i in range(start, start + 150)]
        sf.restful("composite/sobjects", method="POST", json={"records": records})
    deadline = time.monotonic() + 10
    while sandbox.outbound.pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = [len(notifications(body)) for _, body in listener.requests]
    assert max(counts) <= 100 and sum(counts) == 300
    delivered = {n.findtext("om:sObject/sf:Id", namespaces=NS) for _, b in listener.requests for n in notifications(b)}
    assert len(delivered) == 300


def test_duplicate_delivery_fault_sends_acked_messages_twice(sf, sandbox, make_listener):
    listener = make_listener()
    sandbox.configure_faults(duplicate_notifications=True)
    sandbox.add_outbound_message("Opportunity", ["Name"], listener.url)
    won_deal(sf)
    assert listener.wait_for(2)
    first, second = (notifications(body)[0].findtext("om:Id", namespaces=NS) for _, body in listener.requests[:2])
    assert first == second


def _verify(secret: str, headers: dict, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["x-billsync-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_cdc_events_are_signed_and_carry_the_change_event_header(sf, sandbox, make_listener):
    listener = make_listener(default=(200, "{}"))
    sandbox.configure_cdc(CdcConfig(listener.url, "s3cret", entities=["Account"]))
    account_id = sf.Account.create({"Name": "Acme", "MRR__c": "10.10"})["id"]
    sf.Account.update(account_id, {"MRR__c": "20.20", "VAT_Id__c": None})
    sf.Account.delete(account_id)
    sf.Opportunity.create({"Name": "ignored", "StageName": "Prospecting", "CloseDate": "2026-12-01"})
    deadline = time.monotonic() + 10
    events = []
    while len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        events = [e for _, body in listener.requests for e in json.loads(body, parse_float=Decimal)]
    assert all(_verify("s3cret", headers, body) for headers, body in listener.requests)
    assert [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in events] == ["CREATE", "UPDATE", "DELETE"]
    create, update, delete = (e["data"]["payload"] for e in events)
    assert events[0]["channel"] == "/data/AccountChangeEvent"
    header = create["ChangeEventHeader"]
    assert header["entityName"] == "Account" and header["recordIds"] == [account_id]
    assert header["changeOrigin"] == f"com/salesforce/api/rest/59.0;client={sandbox.credentials.client_id}"
    assert header["sequenceNumber"] == 1 and len(header["transactionKey"]) == 36
    assert isinstance(header["commitTimestamp"], int) and header["commitTimestamp"] > 1_700_000_000_000
    assert create["Name"] == "Acme" and create["MRR__c"] == Decimal("10.10") and "SystemModstamp" not in create
    assert create["CreatedDate"].endswith("Z")
    assert set(update["ChangeEventHeader"]["changedFields"]) == {"MRR__c", "LastModifiedDate"}
    assert update["MRR__c"] == Decimal("20.20")
    assert delete["ChangeEventHeader"]["changedFields"] == [] and set(delete) == {"ChangeEventHeader"}
    replay = [e["data"]["event"]["replayId"] for e in events]
    assert replay == sorted(replay) and len(set(replay)) == 3


def test_cdc_gap_events_on_demand_and_retry_until_2xx(sandbox, make_listener):
    listener = make_listener(answers=[(503, "busy")], default=(200, "{}"))
    sandbox.configure_cdc(CdcConfig(listener.url, "k"))
    sandbox.cdc.emit_gap("GAP_OVERFLOW", "Opportunity")
    assert listener.wait_for(2)
    first, second = (json.loads(body) for _, body in listener.requests[:2])
    assert first == second
    header = second[0]["data"]["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "GAP_OVERFLOW" and header["recordIds"] == ["000000000000000AAA"]
    assert header["changeOrigin"] == ""


def test_reorder_fault_delivers_out_of_order(sf, sandbox, make_listener):
    listener = make_listener(default=(200, "{}"))
    sandbox.configure_faults(reorder_notifications=True, seed=3)
    sandbox.configure_cdc(CdcConfig(listener.url, "k", entities=["Account"]))
    sf.restful("composite/sobjects", method="POST", json={"records": [
        {"attributes": {"type": "Account"}, "Name": f"A{i}"} for i in range(20)]})
    assert listener.wait_for(1)
    events = [e for _, body in listener.requests for e in json.loads(body)]
    sequence = [e["data"]["payload"]["ChangeEventHeader"]["sequenceNumber"] for e in events]
    assert sorted(sequence) == list(range(1, 21)) and sequence != sorted(sequence)
