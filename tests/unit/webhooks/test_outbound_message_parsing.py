"""Parsing Salesforce's SOAP notifications envelope, defused."""

from __future__ import annotations

import pytest

from connector.webhooks.errors import MalformedNotificationError
from connector.webhooks.outbound_message import ACK, parse_outbound_message, soap_fault
from tests.support.webhook_messages import (
    BILLION_LAUGHS,
    CAPTURED,
    EXTERNAL_ENTITY,
    ORG_18,
    notification_id,
    outbound_envelope,
    record_id,
)


def test_the_captured_salesforce_request_parses():
    message = parse_outbound_message(CAPTURED)
    assert message.organization_id == "00D7F00000107XsUAI"
    assert message.action_id == "04k7F0000008V3hQAE"
    [note] = message.notifications
    assert (note.notification_id, note.object_name, note.record_id) == \
        ("04l7F000008aeAyQAI", "Opportunity", "0067F000003pmdWQAQ")
    assert note.last_modified_by_id is None
    assert "Express Logistics SLA" in note.fragment and "0067F000003pmdWQAQ" in note.fragment


def test_nil_and_omitted_fields_and_custom_objects_are_accepted():
    raw = outbound_envelope([(notification_id(1), "Invoice__c", record_id(1, "a0X"),
                              {"Amount__c": None, "LastModifiedById": "005RM000001hv4SYAQ"}),
                             (notification_id(2), "Account", record_id(2, "001"), {})])
    first, second = parse_outbound_message(raw).notifications
    assert first.object_name == "Invoice__c" and first.last_modified_by_id == "005RM000001hv4SYAQ"
    assert second.object_name == "Account" and second.record_id == record_id(2, "001")


def test_one_hundred_notifications_are_accepted_and_one_more_is_not():
    notes = [(notification_id(n), "Opportunity", record_id(n), {}) for n in range(101)]
    assert len(parse_outbound_message(outbound_envelope(notes[:100])).notifications) == 100
    with pytest.raises(MalformedNotificationError, match="at most 100"):
        parse_outbound_message(outbound_envelope(notes))


@pytest.mark.parametrize("raw", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_dtds_are_refused_before_any_entity_is_expanded(raw):
    with pytest.raises(MalformedNotificationError, match="DTDs, entities and external references"):
        parse_outbound_message(raw)


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty body"),
    (b"<soapenv:Envelope", "not well-formed"),
    (b"<Envelope/>", "not a SOAP Envelope"),
    (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>', "no SOAP Body"),
    (CAPTURED.replace(b"http://soap.sforce.com/2005/09/outbound", b"urn:other"), "no notifications"),
    (CAPTURED.replace(b"00D7F00000107XsUAI", b"not-an-id"), "OrganizationId"),
    (CAPTURED.replace(b"<Id>04l7F000008aeAyQAI</Id>", b""), "Notification 1: Id"),
    (CAPTURED.replace(b'xsi:type="sf:Opportunity"', b""), "xsi:type"),
    (CAPTURED.replace(b"<sf:Id>0067F000003pmdWQAQ</sf:Id>", b""), "sObject Id"),
    (outbound_envelope([]), "no Notification"),
])
def test_malformed_envelopes_say_what_is_wrong(raw, reason):
    with pytest.raises(MalformedNotificationError, match=reason):
        parse_outbound_message(raw)


def test_the_ack_is_salesforces_exact_envelope_and_a_fault_escapes_its_message():
    assert "<notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\">" in ACK
    assert "<Ack>true</Ack>" in ACK
    fault = soap_fault("bad <thing> & more")
    assert "<faultcode>soapenv:Client</faultcode>" in fault
    assert "<faultstring>bad &lt;thing&gt; &amp; more</faultstring>" in fault
    assert "<faultcode>soapenv:Server</faultcode>" in soap_fault("later", server=True)
    assert ORG_18 not in fault
