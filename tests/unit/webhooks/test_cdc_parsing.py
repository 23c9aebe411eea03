"""Change events: the shapes a relay forwards, and what each change type asks of billsync."""

from __future__ import annotations

import json

import pytest

from connector.webhooks.cdc import parse_change_events
from connector.webhooks.errors import MalformedNotificationError
from tests.support.webhook_messages import cdc_body, change_event


def test_the_cometd_envelope_the_bare_payload_and_data_alone_all_parse():
    enveloped = change_event()
    shapes = [enveloped, enveloped["data"], change_event(envelope=False)]
    for shape in shapes:
        [event] = parse_change_events(cdc_body(shape))
        assert (event.entity_name, event.change_type, event.record_ids, event.sequence_number) == \
            ("Account", "UPDATE", ("001RM000004UF9sYAG",), 1)
        assert event.transaction_key == "0005e192-9e62-2554-3880-3c3718bd6308"
        assert event.change_origin == "com/salesforce/api/soap/51.0;client=SfdcInternalAPI/"
        assert json.loads(event.document) == shape


@pytest.mark.parametrize("change_type, action", [("CREATE", "upsert"), ("UPDATE", "upsert"), ("UNDELETE", "upsert"),
                                                 ("DELETE", "delete"), ("GAP_CREATE", "refetch"),
                                                 ("GAP_UPDATE", "refetch"), ("GAP_DELETE", "refetch"),
                                                 ("GAP_UNDELETE", "refetch"), ("GAP_OVERFLOW", "resync_object")])
def test_each_change_type_maps_to_what_processing_must_do(change_type, action):
    [event] = parse_change_events(cdc_body(change_event(change_type, origin="")))
    assert event.action == action
    assert event.change_origin is None


def test_overflow_names_no_record_and_a_merged_event_names_each_once():
    overflow, merged = parse_change_events(cdc_body([
        change_event("GAP_OVERFLOW", record_ids=["000000000000000AAA"]),
        change_event(record_ids=["001RM000004UF9sYAG", "001RM000004UF9tYAG", "001RM000004UF9sYAG"]),
    ]))
    assert overflow.record_ids == ()
    assert merged.record_ids == ("001RM000004UF9sYAG", "001RM000004UF9tYAG")


def header_with(**changes):
    event = change_event()
    event["data"]["payload"]["ChangeEventHeader"].update(changes)
    return event


@pytest.mark.parametrize("body, reason", [
    (b"", "empty body"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    (b'{"a": NaN}', "not valid JSON"),
    (b"[]", "empty list"),
    (b"42", "not a JSON object"),
    (cdc_body({"data": {"payload": 3}}), "no payload"),
    (cdc_body({"payload": {}}), "no ChangeEventHeader"),
    (cdc_body(header_with(entityName="Acc ount")), "entityName"),
    (cdc_body(header_with(changeType="SNAPSHOT")), "changeType"),
    (cdc_body(header_with(transactionKey="a:b")), "transactionKey"),
    (cdc_body(header_with(transactionKey="x" * 65)), "transactionKey"),
    (cdc_body(header_with(sequenceNumber="1")), "sequenceNumber"),
    (cdc_body(header_with(sequenceNumber=True)), "sequenceNumber"),
    (cdc_body(header_with(sequenceNumber=-1)), "sequenceNumber"),
    (cdc_body(header_with(commitTimestamp=None)), "commitTimestamp"),
    (cdc_body(header_with(changeOrigin="x" * 256)), "changeOrigin"),
    (cdc_body(header_with(changedFields="Fax")), "changedFields"),
    (cdc_body(header_with(recordIds=[])), "recordIds"),
    (cdc_body(header_with(recordIds=["001RM000004UF9sYAG", "nope"])), "not a Salesforce id"),
    (cdc_body(header_with(recordIds=["000000000000000AAA"])), "empty id"),
])
def test_malformed_events_say_what_is_wrong(body, reason):
    with pytest.raises(MalformedNotificationError, match=reason):
        parse_change_events(body)


def test_one_bad_event_refuses_the_whole_batch():
    with pytest.raises(MalformedNotificationError, match="event 2"):
        parse_change_events(cdc_body([change_event(), header_with(changeType="NOPE")]))


def test_a_key_prefix_wildcard_is_accepted():
    [event] = parse_change_events(cdc_body(change_event("GAP_UPDATE", record_ids=["001*"])))
    assert event.record_ids == ("001*",)
