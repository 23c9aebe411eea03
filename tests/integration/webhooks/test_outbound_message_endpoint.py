"""POST /webhooks/salesforce/outbound-message: stored once, then acknowledged; refused with a
SOAP fault and nothing stored otherwise."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import OperationalError

from connector.webhooks.outbound_message import ACK
from tests.support.webhook_messages import (
    BILLION_LAUGHS,
    CAPTURED,
    EXTERNAL_ENTITY,
    NOW,
    OM_URL,
    ORG_15,
    OTHER_ORG,
    SOAP,
    notification_id,
    opportunity_message,
    outbound_envelope,
    record_id,
)


def post(client, body, url=OM_URL, content_type=SOAP, **kw):
    return client.post(url, data=body, headers={"Content-Type": content_type, "SOAPAction": '""'}, **kw)


def assert_fault(response, status, faultcode, says):
    assert response.status_code == status, response.text
    assert response.mimetype == "text/xml"
    assert f"<faultcode>{faultcode}</faultcode>" in response.text
    assert says in response.text
    assert "<Ack>" not in response.text


def test_every_notification_is_stored_then_acknowledged_with_salesforces_envelope(client, inbox):
    response = post(client, opportunity_message(10))
    assert response.status_code == 200
    assert response.text == ACK
    rows = inbox()
    assert [r.dedup_key for r in rows] == [f"om:{notification_id(n)}" for n in range(1, 11)]
    first = rows[0]
    assert (first.source, first.object_name, first.record_id, first.action, first.status, first.attempts) == \
        ("outbound_message", "Opportunity", record_id(1), "upsert", "pending", 0)
    assert first.received_at.replace(tzinfo=UTC) == datetime.fromtimestamp(NOW, UTC)
    assert first.next_attempt_at.replace(tzinfo=UTC) == datetime.fromtimestamp(NOW, UTC)
    assert "Closed Won" in first.payload and first.processed_at is None and first.last_error is None


def test_the_captured_request_is_acknowledged_and_stored(client, inbox):
    assert post(client, CAPTURED).text == ACK
    [row] = inbox()
    assert (row.dedup_key, row.record_id) == ("om:04l7F000008aeAyQAI", "0067F000003pmdWQAQ")


def test_a_redelivery_is_acknowledged_again_and_stored_once(client, inbox):
    assert post(client, opportunity_message(3)).text == ACK
    # Salesforce retries the same notifications, possibly batched with new ones.
    assert post(client, opportunity_message(5)).text == ACK
    assert [r.dedup_key for r in inbox()] == [f"om:{notification_id(n)}" for n in range(1, 6)]


def test_last_modified_by_is_kept_to_recognise_our_own_changes(client, inbox):
    body = outbound_envelope([(notification_id(1), "Account", record_id(1, "001"),
                               {"LastModifiedById": "005RM000001hv4SYAQ"})])
    assert post(client, body).status_code == 200
    assert inbox()[0].change_origin == "user:005RM000001hv4SYAQ"


@pytest.mark.parametrize("content_type", ["text/xml", "text/xml; charset=utf-8", "application/soap+xml",
                                          "application/soap+xml; charset=UTF-8; action=\"\""])
def test_soap_content_types_are_accepted(client, inbox, content_type):
    assert post(client, opportunity_message(1), content_type=content_type).status_code == 200
    assert len(inbox()) == 1


def test_the_15_character_configured_org_accepts_the_18_character_message(make_client, inbox):
    client = make_client(sf_org_id=ORG_15)
    assert post(client, opportunity_message(1)).text == ACK
    assert len(inbox()) == 1


# ------------------------------------------------------------------ security: each refused, nothing stored


def test_a_forged_org_id_is_403_and_nothing_is_stored(client, inbox):
    response = post(client, opportunity_message(2, org_id=OTHER_ORG))
    assert_fault(response, 403, "soapenv:Client", "OrganizationId does not match")
    assert inbox() == []


def test_without_a_configured_org_nothing_is_stored_and_salesforce_retries(make_client, inbox):
    response = post(make_client(sf_org_id=None), opportunity_message(1))
    assert_fault(response, 503, "soapenv:Server", "SF_ORG_ID")
    assert inbox() == []


@pytest.mark.parametrize("path, reason", [("", "missing secret token"), ("/wrong", "wrong secret token"),
                                          ("/s3cret-but-longer", "wrong secret token")])
def test_a_bad_or_missing_path_token_is_401_and_nothing_is_stored(make_client, inbox, path, reason):
    client = make_client(webhook_token="s3cret")
    assert_fault(post(client, opportunity_message(1), url=OM_URL + path), 401, "soapenv:Client", reason)
    assert inbox() == []
    assert post(client, opportunity_message(1), url=OM_URL + "/s3cret").text == ACK
    assert len(inbox()) == 1


def test_a_token_where_none_is_configured_is_404_and_nothing_is_stored(client, inbox):
    assert_fault(post(client, opportunity_message(1), url=OM_URL + "/guess"), 404, "soapenv:Client", "no secret token")
    assert inbox() == []


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("headers", [{}, basic("sf", "wrong"), basic("other", "pw"), {"Authorization": "Basic %%"}])
def test_bad_or_missing_basic_auth_is_401_with_a_challenge_and_nothing_is_stored(make_client, inbox, headers):
    client = make_client(webhook_basic_user="sf", webhook_basic_password="pw")
    response = client.post(OM_URL, data=opportunity_message(1), headers={"Content-Type": SOAP, **headers})
    assert_fault(response, 401, "soapenv:Client", "basic auth")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert inbox() == []
    good = client.post(OM_URL, data=opportunity_message(1), headers={"Content-Type": SOAP, **basic("sf", "pw")})
    assert good.text == ACK and len(inbox()) == 1


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_an_xml_bomb_or_external_entity_is_400_and_nothing_is_stored(client, inbox, body):
    assert_fault(post(client, body), 400, "soapenv:Client", "DTDs, entities and external references")
    assert inbox() == []


def test_a_bomb_inside_an_otherwise_valid_message_is_refused_whole(client, inbox):
    body = opportunity_message(3).replace(b"<soapenv:Envelope", b'<!DOCTYPE x [<!ENTITY a "b">]><soapenv:Envelope', 1)
    assert_fault(post(client, body), 400, "soapenv:Client", "DTDs")
    assert inbox() == []


def test_one_malformed_notification_refuses_the_whole_message(client, inbox):
    body = opportunity_message(3).replace(f"<Id>{notification_id(2)}</Id>".encode(), b"<Id>bad</Id>")
    assert_fault(post(client, body), 400, "soapenv:Client", "Notification 2: Id")
    assert inbox() == []


def test_a_10_mb_body_is_413_and_nothing_is_stored(client, inbox):
    body = opportunity_message(1).replace(b"Closed Won", b"x" * 10_000_000)
    assert_fault(post(client, body), 413, "soapenv:Client", "exceeds the 1048576-byte limit")
    assert inbox() == []


def test_a_body_larger_than_it_declares_is_413_and_nothing_is_stored(client, inbox):
    body = opportunity_message(1).replace(b"Closed Won", b"x" * 2_000_000)
    # No Content-Length (as with chunked transfer): the limit is enforced while reading.
    response = client.post(OM_URL, input_stream=io.BytesIO(body), headers={"Content-Type": SOAP})
    assert_fault(response, 413, "soapenv:Client", "exceeds the 1048576-byte limit")
    assert inbox() == []


def test_the_body_limit_is_configurable(make_client, inbox):
    client = make_client(webhook_max_body_bytes=2048)
    assert_fault(post(client, opportunity_message(20)), 413, "soapenv:Client", "2048-byte limit")
    assert post(client, opportunity_message(1)).status_code == 200
    assert len(inbox()) == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415_and_nothing_is_stored(client, inbox, content_type):
    assert_fault(post(client, opportunity_message(1), content_type=content_type), 415, "soapenv:Client",
                 "not accepted")
    assert inbox() == []


def test_a_storage_failure_is_a_503_fault_not_a_500_and_no_ack(client, inbox, monkeypatch):
    from connector.webhooks.inbox import add_to_inbox

    def broken(session, rows):
        add_to_inbox(session, rows)  # the rows are written, then the transaction fails: all rolled back
        raise OperationalError("COMMIT", {}, Exception("database is down"))

    monkeypatch.setattr("connector.webhooks.receive.add_to_inbox", broken)
    response = post(client, opportunity_message(2))
    assert_fault(response, 503, "soapenv:Server", "retry later")
    assert inbox() == []


def test_a_notification_repeated_inside_one_message_is_stored_once(client, inbox):
    twice = (notification_id(1), "Opportunity", record_id(1), {})
    assert post(client, outbound_envelope([twice, twice])).text == ACK
    assert [r.dedup_key for r in inbox()] == [f"om:{notification_id(1)}"]


@pytest.mark.postgres_only
def test_concurrent_overlapping_redeliveries_are_all_acknowledged_and_stored_once(client, inbox):
    from concurrent.futures import ThreadPoolExecutor

    notes = [(notification_id(n), "Opportunity", record_id(n), {}) for n in range(40)]
    # Eight deliveries of overlapping notifications, half of them in reverse order.
    bodies = [outbound_envelope(notes[i * 4:i * 4 + 20][::(-1) ** i]) for i in range(8)]
    app = client.application

    def deliver(body):
        return post(app.test_client(), body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(deliver, bodies))
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.text == ACK for r in responses)
    assert sorted(r.dedup_key for r in inbox()) == sorted(f"om:{n[0]}" for n in notes)
