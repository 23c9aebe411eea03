"""Generated requests against both endpoints: every answer is a deliberate one (never a 5xx),
in the endpoint's own format; the fuzz reaches the parsers (it is not all refused at the door);
and a refused request stores nothing.

- 1,000 requests mixing both endpoints (bodies, content types, tokens, signatures);
- 2,000 hostile bodies per endpoint, correctly addressed and signed so that they reach the
  parser: deep nesting, control characters, lone surrogates (encoded and escaped),
  oversize bodies, and bodies sent chunked without a Content-Length.
"""

from __future__ import annotations

import copy
import io
import json
from collections import Counter
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from connector.webhooks.inbox import WebhookInbox
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


# ---------------------------------------------------------------- 2,000 hostile bodies per endpoint

HOSTILE_EXAMPLES = 2000
MAX_BODY = 64 * 1024  # a small limit keeps the oversize cases cheap
# Characters XML and JSON text must not carry (or that need care): C0/C1 controls, DEL, separators.
CONTROLS = st.sampled_from([chr(c) for c in (*range(0, 32), 0x7F, 0x85, 0x9F, 0x2028, 0x2029)])
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
NASTY_TEXT = st.lists(CONTROLS | SURROGATES | st.characters(codec="utf-8") | st.just("\ufffe"),
                      min_size=1, max_size=12).map("".join)
# Raw bytes that are not valid UTF-8: encoded surrogates, overlong forms, stray continuation bytes.
BAD_UTF8 = st.sampled_from([b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\x80", b"\x80", b"\xff\xfe", b"\xf4\x90\x80\x80",
                            b"\x00"])
DEPTHS = st.integers(1, 40) | st.integers(41, 20_000)


def _xml_escape_keep_controls(text: str) -> bytes:
    """The text as XML content, escaping markup but keeping every character as it is (as a
    numeric reference when it cannot be encoded), so the parser sees the hostile character."""
    out = []
    for char in text:
        if char in "<>&":
            out.append({"<": "&lt;", ">": "&gt;", "&": "&amp;"}[char])
        elif "\ud800" <= char <= "\udfff" or ord(char) < 32:
            out.append(f"&#x{ord(char):x};")
        else:
            out.append(char)
    return "".join(out).encode("utf-8")


@st.composite
def hostile_outbound_bodies(draw) -> bytes:
    base = outbound_envelope([(notification_id(n), "Opportunity", record_id(n), {"Name": "deal"})
                              for n in range(1, draw(st.integers(1, 3)) + 1)])
    kind = draw(st.sampled_from(["deep", "deep_anywhere", "text", "raw_bytes", "id_text", "oversize", "mutated"]))
    if kind == "deep":
        depth = draw(DEPTHS)
        nested = b"<sf:Description>" + b"<x>" * depth + b"t" + b"</x>" * depth + b"</sf:Description>"
        return base.replace(b"</sObject>", nested + b"</sObject>", 1)
    if kind == "deep_anywhere":
        depth = draw(DEPTHS)
        at = draw(st.sampled_from([b"<soapenv:Body>", b"<Notification>", b"</sf:Id>"]))
        return base.replace(at, at + b"<a>" * depth + b"</a>" * depth, 1)
    if kind == "text":
        where = draw(st.sampled_from([b"deal", b"04l7F", b"Opportunity", b"00D7F"]))
        return base.replace(where, _xml_escape_keep_controls(draw(NASTY_TEXT)), 1)
    if kind == "raw_bytes":
        where = draw(st.sampled_from([b"deal", b"<sf:Id>", b"</OrganizationId>", b"<Id>"]))
        return base.replace(where, draw(BAD_UTF8) + where, 1)
    if kind == "id_text":
        value = draw(NASTY_TEXT | st.sampled_from(["0067F000003pmdWAAA", "0067F000003pmdW", "006*", " " * 15]))
        return outbound_envelope([(notification_id(1), "Opportunity", "RECORD_ID", {})]).replace(
            b"RECORD_ID", _xml_escape_keep_controls(value))
    if kind == "oversize":
        return base + b" " * (MAX_BODY + 1 - len(base) + draw(st.integers(0, 4096)))
    return mutate(base, draw(MUTATIONS))


def _deep_json(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def hostile_cdc_bodies(draw) -> bytes:
    event = copy.deepcopy(draw(st.sampled_from(CDC_BASES)))
    header = event["data"]["payload"]["ChangeEventHeader"] if "data" in event else event["ChangeEventHeader"]
    kind = draw(st.sampled_from(["deep", "text", "escaped", "raw_bytes", "key", "numbers", "oversize", "mutated"]))
    if kind == "deep":
        raw = json.dumps([event])
        nested = _deep_json(draw(DEPTHS), draw(st.sampled_from(["[", "{"])))
        return (raw[:-2] + ', "Nested__c": ' + nested + "}]").encode()
    if kind == "text":
        field = draw(st.sampled_from(["changeOrigin", "entityName", "transactionKey", "commitUser"]))
        header[field] = draw(NASTY_TEXT)
        # ensure_ascii writes lone surrogates and controls as \u escapes
        return json.dumps([event]).encode()
    if kind == "escaped":
        value = draw(NASTY_TEXT)
        target = draw(st.sampled_from(["Description", "changeOrigin"]))
        if target == "changeOrigin":
            header["changeOrigin"] = value
        else:
            (event["data"]["payload"] if "data" in event else event)["Description"] = value
        return json.dumps([event], ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "raw_bytes":
        raw = json.dumps([event]).encode()
        at = raw.find(b"com/salesforce")
        return raw[:at] + draw(BAD_UTF8) + raw[at:]
    if kind == "key":
        header[draw(NASTY_TEXT)] = "x"
        return json.dumps([event]).encode()
    if kind == "numbers":
        raw = json.dumps([event])
        number = draw(st.sampled_from(["1e999", "-1e999", "9" * 5000, "1" + "0" * 400, "NaN", "Infinity", "-0"]))
        return raw.replace('"replayId": 12', f'"replayId": {number}').encode()
    if kind == "oversize":
        raw = cdc_body([event])
        return raw + b" " * (MAX_BODY + 1 - len(raw) + draw(st.integers(0, 4096)))
    return mutate(cdc_body([event]), draw(MUTATIONS))


def _stored(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(WebhookInbox)).scalar_one()


def _send(client, path: str, body: bytes, headers: dict, chunked: bool):
    if not chunked:
        return client.post(path, data=body, headers=headers)
    # Transfer-Encoding: chunked, no Content-Length: the server reads to the end of the stream.
    return client.post(path, input_stream=io.BytesIO(body), headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_base={"wsgi.input_terminated": True})


def _fuzz_endpoint(client, engine, bodies, request_for, check_format) -> Counter:
    statuses: Counter = Counter()

    @settings(max_examples=HOSTILE_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(body=bodies, chunked=st.booleans())
    def check(body, chunked):
        before = _stored(engine)
        path, headers = request_for(body)
        response = _send(client, path, body, headers, chunked)
        statuses[response.status_code] += 1
        assert response.status_code < 500, (response.status_code, response.text[:300])
        assert response.status_code in EXPECTED, (response.status_code, response.text[:300])
        check_format(response)
        if response.status_code != 200:
            assert _stored(engine) == before, "a refused request stored something"

    check()
    return statuses


def test_two_thousand_hostile_outbound_messages_get_no_5xx_and_refusals_store_nothing(make_client, engine):
    client = make_client(webhook_token=TOKEN, webhook_max_body_bytes=MAX_BODY)

    def check_format(response):
        assert response.mimetype == "text/xml"
        assert (response.text == ACK) == (response.status_code == 200)

    statuses = _fuzz_endpoint(client, engine, hostile_outbound_bodies(),
                              lambda body: (f"{OM_URL}/{TOKEN}", {"Content-Type": "text/xml; charset=utf-8"}),
                              check_format)
    assert sum(statuses.values()) == HOSTILE_EXAMPLES
    assert statuses[400] > 0 and statuses[413] > 0 and statuses[200] > 0, statuses


def test_two_thousand_hostile_change_events_get_no_5xx_and_refusals_store_nothing(make_client, engine):
    client = make_client(webhook_max_body_bytes=MAX_BODY)

    def check_format(response):
        assert response.is_json
        assert ("stored" in response.json) == (response.status_code == 200)

    statuses = _fuzz_endpoint(client, engine, hostile_cdc_bodies(),
                              lambda body: (CDC_URL, {"Content-Type": "application/json",
                                                      "X-Billsync-Signature": sign_cdc(SECRET, body, NOW)}),
                              check_format)
    assert sum(statuses.values()) == HOSTILE_EXAMPLES
    assert statuses[400] > 0 and statuses[413] > 0 and statuses[200] > 0, statuses
