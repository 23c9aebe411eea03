"""POST /webhooks/salesforce/cdc: signed change events stored once per record; refused with a
JSON error and nothing stored otherwise."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from connector.webhooks.verification import sign_cdc
from tests.support.webhook_messages import CDC_URL, NOW, SECRET, cdc_body, change_event

TX = "0005e192-9e62-2554-3880-3c3718bd6308"


def post(client, body, *, secret=SECRET, stamp=NOW, content_type="application/json", signature=None, **kw):
    headers = {"Content-Type": content_type,
               "X-Billsync-Signature": signature if signature is not None else sign_cdc(secret, body, stamp)}
    return client.post(CDC_URL, data=body, headers=headers, **kw)


def assert_error(response, status, error, says):
    assert response.status_code == status, response.text
    assert response.is_json
    assert response.json["error"] == error
    assert says in response.json["message"]


def test_a_batch_is_stored_one_row_per_record_and_counted(client, inbox):
    events = [
        change_event("UPDATE", sequence=1),
        change_event("CREATE", entity="Opportunity", record_ids=["0067F000003pmdWQAQ"], sequence=2, origin=""),
        change_event("DELETE", record_ids=["001RM000004UF9tYAG", "001RM000004UF9uYAG"], sequence=3),
        change_event("GAP_UPDATE", record_ids=["001RM000004UF9vYAG"], sequence=4, origin=""),
        change_event("GAP_OVERFLOW", entity="Opportunity", record_ids=["000000000000000AAA"], sequence=5),
    ]
    response = post(client, cdc_body(events))
    assert response.status_code == 200
    assert response.json == {"stored": 6, "duplicates": 0}
    rows = [(r.dedup_key, r.object_name, r.record_id, r.action) for r in inbox()]
    assert rows == [
        (f"cdc:{TX}:1:001RM000004UF9sYAG", "Account", "001RM000004UF9sYAG", "upsert"),
        (f"cdc:{TX}:2:0067F000003pmdWQAQ", "Opportunity", "0067F000003pmdWQAQ", "upsert"),
        (f"cdc:{TX}:3:001RM000004UF9tYAG", "Account", "001RM000004UF9tYAG", "delete"),
        (f"cdc:{TX}:3:001RM000004UF9uYAG", "Account", "001RM000004UF9uYAG", "delete"),
        (f"cdc:{TX}:4:001RM000004UF9vYAG", "Account", "001RM000004UF9vYAG", "refetch"),
        (f"cdc:{TX}:5", "Opportunity", None, "resync_object"),
    ]
    first = inbox()[0]
    assert first.source == "cdc" and first.status == "pending"
    assert first.change_origin == "com/salesforce/api/soap/51.0;client=SfdcInternalAPI/"
    assert '"replayId":12' in first.payload
    assert inbox()[1].change_origin is None


def test_a_single_bare_event_is_accepted(client, inbox):
    response = post(client, cdc_body(change_event(envelope=False)))
    assert response.json == {"stored": 1, "duplicates": 0}
    assert len(inbox()) == 1


def test_a_redelivered_event_is_counted_as_a_duplicate_and_stored_once(client, inbox):
    assert post(client, cdc_body([change_event(sequence=1)])).json == {"stored": 1, "duplicates": 0}
    again = post(client, cdc_body([change_event(sequence=1, replay_id=99), change_event(sequence=2)]))
    assert again.json == {"stored": 1, "duplicates": 1}
    assert [r.dedup_key.split(":")[2] for r in inbox()] == ["1", "2"]


def test_the_sandbox_relays_signature_is_accepted(client, inbox):
    from sfsandbox.notify import sign as sandbox_sign

    body = cdc_body([change_event()])
    assert post(client, body, signature=sandbox_sign(SECRET, body, NOW)).status_code == 200
    assert len(inbox()) == 1


# ------------------------------------------------------------------ security: each refused, nothing stored


@pytest.mark.parametrize("signature, says", [
    ("", "missing X-Billsync-Signature"),
    ("t=abc,v1=00", "malformed X-Billsync-Signature"),
    (sign_cdc("wrong-secret", cdc_body([change_event()]), NOW), "bad signature"),
    (sign_cdc(SECRET, cdc_body([change_event(sequence=2)]), NOW), "bad signature"),
])
def test_a_bad_or_missing_hmac_is_401_and_nothing_is_stored(client, inbox, signature, says):
    assert_error(post(client, cdc_body([change_event()]), signature=signature), 401, "unauthenticated", says)
    assert inbox() == []


def test_no_signature_header_at_all_is_401(client, inbox):
    response = client.post(CDC_URL, data=cdc_body([change_event()]), content_type="application/json")
    assert_error(response, 401, "unauthenticated", "missing X-Billsync-Signature header")
    assert inbox() == []


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_replayed_event_beyond_the_window_is_401_and_nothing_is_stored(client, inbox, age):
    response = post(client, cdc_body([change_event()]), stamp=NOW - age)
    assert_error(response, 401, "unauthenticated", "signature timestamp outside the 300 s replay window")
    assert inbox() == []


def test_the_replay_window_is_configurable(make_client, inbox):
    client = make_client(cdc_replay_window_seconds=30)
    assert_error(post(client, cdc_body([change_event()]), stamp=NOW - 31), 401, "unauthenticated", "30 s")
    assert post(client, cdc_body([change_event()]), stamp=NOW - 30).status_code == 200
    assert len(inbox()) == 1


def test_without_a_secret_nothing_is_stored_and_the_relay_retries(make_client, inbox):
    assert_error(post(make_client(cdc_hmac_secret=None), cdc_body([change_event()])), 503, "unavailable",
                 "CDC_HMAC_SECRET")
    assert inbox() == []


def test_a_malformed_event_is_400_and_nothing_of_its_batch_is_stored(client, inbox):
    bad = change_event(sequence=2)
    bad["data"]["payload"]["ChangeEventHeader"]["changeType"] = "SNAPSHOT"
    assert_error(post(client, cdc_body([change_event(), bad])), 400, "malformed", "event 2: changeType")
    assert inbox() == []


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b"\x00\xff"])
def test_signed_garbage_is_400_and_nothing_is_stored(client, inbox, body):
    assert_error(post(client, body), 400, "malformed", "")
    assert inbox() == []


def test_a_10_mb_body_is_413_and_nothing_is_stored(client, inbox):
    body = cdc_body([change_event(Description="x" * 10_000_000)])
    assert_error(post(client, body), 413, "payload_too_large", "exceeds the 1048576-byte limit")
    assert inbox() == []


@pytest.mark.parametrize("content_type", ["text/xml", "text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415_and_nothing_is_stored(client, inbox, content_type):
    assert_error(post(client, cdc_body([change_event()]), content_type=content_type), 415,
                 "unsupported_media_type", "not accepted")
    assert inbox() == []


def test_a_storage_failure_is_a_503_not_a_500(client, inbox, monkeypatch):
    from connector.webhooks.inbox import add_to_inbox

    def broken(session, rows):
        add_to_inbox(session, rows)
        raise OperationalError("COMMIT", {}, Exception("database is down"))

    monkeypatch.setattr("connector.webhooks.receive.add_to_inbox", broken)
    assert_error(post(client, cdc_body([change_event()])), 503, "unavailable", "retry later")
    assert inbox() == []
