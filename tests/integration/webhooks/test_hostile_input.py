"""Hostile bodies are refused with a 400 (a request that will never be right), never a 500
or a 503 (which would make the sender retry for days), and nothing of them is stored."""

from __future__ import annotations

import json

import pytest

from connector.webhooks.verification import sign_cdc
from tests.support.webhook_messages import (
    CDC_URL,
    NOW,
    OM_URL,
    ORG_15,
    SECRET,
    SOAP,
    cdc_body,
    change_event,
    outbound_envelope,
)

NOTE_18 = "04l7F000008aeAyQAI"
DEAL_18 = "0067F000003pmdWQAQ"


def post_cdc(client, body: bytes):
    return client.post(CDC_URL, data=body, headers={"Content-Type": "application/json",
                                                     "X-Billsync-Signature": sign_cdc(SECRET, body, NOW)})


def deep_message(depth: int) -> bytes:
    body = outbound_envelope([(NOTE_18, "Opportunity", DEAL_18, {"Name": "deal"})])
    nested = b"<sf:Description>" + b"<x>" * depth + b"deep" + b"</x>" * depth + b"</sf:Description>"
    return body.replace(b"</sObject>", nested + b"</sObject>")


@pytest.mark.parametrize("depth", [40, 5000, 100_000])
def test_deep_xml_nesting_in_a_notification_is_a_400(client, inbox, depth):
    response = client.post(OM_URL, data=deep_message(depth), headers={"Content-Type": SOAP})
    assert response.status_code == 400, response.text[:300]
    assert "nested" in response.text and "<faultcode>soapenv:Client</faultcode>" in response.text
    assert inbox() == []


def test_ordinary_nesting_is_still_accepted(client, inbox):
    response = client.post(OM_URL, data=deep_message(3), headers={"Content-Type": SOAP})
    assert response.status_code == 200, response.text
    assert len(inbox()) == 1


@pytest.mark.parametrize("origin", ["api\u0000client", "\ud800", "a\udfffb", "line\nbreak", "esc\u001b[31m",
                                    "bell\u0007", "del\u007f"])
def test_a_control_character_or_lone_surrogate_in_change_origin_is_a_400(client, inbox, origin):
    response = post_cdc(client, cdc_body([change_event(origin=origin)]))
    assert response.status_code == 400, response.text
    assert response.json["error"] == "malformed" and "changeOrigin" in response.json["message"]
    assert inbox() == []


@pytest.mark.parametrize(("where", "value"), [
    ("field", "nul\u0000inside"), ("field", "\udc80"), ("key", "bad\u0000key"), ("key", "\ud83d"),
])
def test_invalid_text_anywhere_in_a_change_event_is_a_400(client, inbox, where, value):
    fields = {"Description": value} if where == "field" else {value: "x"}
    response = post_cdc(client, cdc_body([change_event(**fields)]))
    assert response.status_code == 400, response.text
    assert response.json["error"] == "malformed"
    assert inbox() == []


def test_tabs_and_line_breaks_in_record_fields_are_kept(client, inbox):
    response = post_cdc(client, cdc_body([change_event(Description="line one\r\nline\ttwo")]))
    assert response.status_code == 200, response.text
    assert "line one\\r\\nline\\ttwo" in inbox()[0].payload


@pytest.mark.parametrize("depth", [40, 900, 5000, 100_000])
def test_deep_json_nesting_is_a_400(client, inbox, depth):
    event = change_event()
    raw = json.dumps([event])[:-1] + ", " + "[" * depth + "]" * depth + "]"
    response = post_cdc(client, raw.encode())
    assert response.status_code == 400, response.text
    assert "nested" in response.json["message"]
    assert inbox() == []


def test_a_non_finite_number_is_a_400(client, inbox):
    raw = cdc_body([change_event()]).replace(b'"replayId": 12', b'"replayId": 1e999')
    response = post_cdc(client, raw)
    assert response.status_code == 400, response.text
    assert inbox() == []


# ---------------------------------------------------------------- one record, one notification


def test_15_and_18_character_forms_of_one_notification_are_stored_once(client, inbox):
    first = client.post(OM_URL, data=outbound_envelope([(NOTE_18, "Opportunity", DEAL_18, {})]),
                        headers={"Content-Type": SOAP})
    again = client.post(OM_URL, data=outbound_envelope([(NOTE_18[:15], "Opportunity", DEAL_18[:15], {})]),
                        headers={"Content-Type": SOAP})
    assert first.status_code == again.status_code == 200
    rows = inbox()
    assert [(r.dedup_key, r.record_id) for r in rows] == [(f"om:{NOTE_18}", DEAL_18)]


def test_15_and_18_character_forms_of_one_changed_record_are_stored_once(client, inbox):
    events = [change_event(record_ids=["001RM000004UF9s", "001RM000004UF9sYAG"]),
              change_event(record_ids=["001RM000004UF9s"])]
    for event in events:
        assert post_cdc(client, cdc_body([event])).status_code == 200
    assert [r.record_id for r in inbox()] == ["001RM000004UF9sYAG"]


@pytest.mark.parametrize("bad", ["0067F000003pmdWAAA", "0067F000003pmdwQAQ"])
def test_an_18_character_id_with_a_wrong_suffix_is_a_400(client, inbox, bad):
    om = client.post(OM_URL, data=outbound_envelope([(NOTE_18, "Opportunity", bad, {})]),
                     headers={"Content-Type": SOAP})
    cdc = post_cdc(client, cdc_body([change_event(record_ids=[bad])]))
    assert om.status_code == cdc.status_code == 400
    assert inbox() == []


def test_an_organization_id_with_a_wrong_suffix_is_a_400(client, inbox):
    for org_id in ("00D7F00000107XsAAA", "00D7F00000107XSUAI"):
        response = client.post(OM_URL, data=outbound_envelope([(NOTE_18, "Opportunity", DEAL_18, {})],
                                                              org_id=org_id),
                               headers={"Content-Type": SOAP})
        assert response.status_code in (400, 403), response.text
        assert "OrganizationId" in response.text
    assert client.post(OM_URL, data=outbound_envelope([(NOTE_18, "Opportunity", DEAL_18, {})], org_id=ORG_15),
                       headers={"Content-Type": SOAP}).status_code == 200
    assert len(inbox()) == 1
