"""1,000 generated requests against both endpoints: every answer is a deliberate one (never a 500),
in the endpoint's own format; and the fuzz reaches the parsers (it is not all refused at the door)."""

from __future__ import annotations

import copy
from collections import Counter
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.webhooks.outbound_message import ACK
from connector.webhooks.verification import sign_cdc
from tests.support.webhook_messages import (
    CDC_URL,
    NOW,
    OM_URL,
    ORG_18,
    SECRET,
    cdc_body,
    change_event,
    notification_id,
    opportunity_message,
    outbound_envelope,
    record_id,
)

TOKEN = "fuzz-token"
EXPECTED = {200, 400, 401, 403, 404, 413, 415}
text = st.text(max_size=16)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=8,
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
content_types = st.one_of(st.just("VALID"), st.sampled_from(
    ["text/plain", "application/octet-stream", "multipart/form-data; boundary=x", "", "text/xml; charset=latin-1",
     "application/json; charset=utf-8", "application/soap+xml"]))


INSERTS = st.binary(max_size=20) | text.map(str.encode) | st.sampled_from(
    [b"<", b">", b"&", b"&lol;", b"<!DOCTYPE a>", b'xmlns:sf="x"', b"{", b"}", b"[", b'"', b"\x00", b"\xff"])
# (where, how many bytes to cut, what to insert) up to three times
MUTATIONS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 30), INSERTS), min_size=1, max_size=3)
IDS = st.sampled_from([notification_id(1), record_id(2), ORG_18]) | text
NOTES = st.lists(st.tuples(IDS, st.sampled_from(["Opportunity", "Invoice__c"]) | text, IDS,
                           st.dictionaries(st.sampled_from(["Amount", "LastModifiedById", "Name"]),
                                           st.none() | text, max_size=3)), max_size=3)
HEADER_KEYS = sorted(change_event()["data"]["payload"]["ChangeEventHeader"])
HEADER_CHANGES = st.lists(st.tuples(st.sampled_from(HEADER_KEYS) | text, json_values), min_size=1, max_size=3)
OM_BASES = [opportunity_message(n) for n in (1, 2, 3)]
CDC_BASES = [change_event(kind, envelope=envelope) for kind in ("UPDATE", "DELETE", "GAP_UPDATE", "GAP_OVERFLOW")
             for envelope in (True, False)]


def mutate(base: bytes, mutations: list[tuple[int, int, bytes]]) -> bytes:
    body = bytearray(base)
    for where, cut, insert in mutations:
        at = where % (len(body) + 1)
        body[at:at + cut] = insert
    return bytes(body)


@st.composite
def outbound_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "mutated", "fields"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "mutated":
        return mutate(draw(st.sampled_from(OM_BASES)), draw(MUTATIONS))
    return outbound_envelope(draw(NOTES), org_id=draw(st.just(ORG_18) | text), action_id=draw(text))


@st.composite
def cdc_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "header", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return cdc_body(draw(json_values))
    event = copy.deepcopy(draw(st.sampled_from(CDC_BASES)))
    if kind == "mutated":
        return mutate(cdc_body([event]), draw(MUTATIONS))
    header = event["data"]["payload"]["ChangeEventHeader"] if "data" in event else event["ChangeEventHeader"]
    for key, value in draw(HEADER_CHANGES):
        header[key] = value
    return cdc_body(draw(st.sampled_from([event, [event], [event, event]])))


OM_REQUESTS = st.fixed_dictionaries({
    "kind": st.just("om"), "body": outbound_bodies(), "content_type": content_types,
    # the right token, or not (one path segment: other URL shapes are not this endpoint)
    "token": st.just(TOKEN) | st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12),
})
CDC_REQUESTS = st.fixed_dictionaries({
    "kind": st.just("cdc"), "body": cdc_bodies(), "content_type": content_types,
    # a good signature made this many seconds before/after now, or a random header value
    "signature": st.sampled_from([0, 0, 0, 0, -400, 400]) | header_text,
})


def as_request(case: dict) -> dict:
    if case["kind"] == "om":
        content_type = "text/xml; charset=utf-8" if case["content_type"] == "VALID" else case["content_type"]
        return {"path": f"{OM_URL}/{quote(case['token'], safe='')}", "data": case["body"],
                "headers": {"Content-Type": content_type}}
    content_type = "application/json" if case["content_type"] == "VALID" else case["content_type"]
    signature = case["signature"]
    if isinstance(signature, int):
        signature = sign_cdc(SECRET, case["body"], NOW + signature)
    return {"path": CDC_URL, "data": case["body"],
            "headers": {"Content-Type": content_type, "X-Billsync-Signature": signature}}


def test_a_thousand_fuzzed_requests_never_get_a_500(make_client):
    client = make_client(webhook_token=TOKEN)
    statuses: Counter = Counter()

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=OM_REQUESTS | CDC_REQUESTS)
    def check(case):
        response = client.post(**as_request(case))
        statuses[(case["kind"], response.status_code)] += 1
        assert response.status_code in EXPECTED, (response.status_code, response.text[:300])
        if case["kind"] == "om":
            assert response.mimetype == "text/xml"
            assert (response.text == ACK) == (response.status_code == 200)
            if response.status_code != 200:
                assert "<faultcode>soapenv:Client</faultcode>" in response.text
        else:
            assert response.is_json
            assert ("stored" in response.json) == (response.status_code == 200)

    check()
    assert sum(statuses.values()) == 1000
    # The generator reaches the parsers and the store, not only the door checks.
    for reached in [("om", 400), ("om", 200), ("cdc", 400), ("cdc", 200), ("om", 401), ("cdc", 401), ("om", 415)]:
        assert statuses[reached] > 0, statuses
