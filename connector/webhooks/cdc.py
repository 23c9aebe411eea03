"""Change Data Capture events as JSON: one event or a list, in any of the shapes a
relay forwards them.

- the CometD envelope ``{"data": {"payload": {..., "ChangeEventHeader": {...}},
  "event": {"replayId": n}}, "channel": "/data/AccountChangeEvent"}``;
- ``{"payload": {...}, "event": {...}}`` (the envelope's ``data``);
- the bare payload ``{"ChangeEventHeader": {...}, <fields>}`` (Pub/Sub, decoded).

Only the header matters to billsync: processing re-reads the records. The whole
document is still checked before anything is stored: nested at most ``MAX_DEPTH``
deep, valid Unicode (no lone surrogate), no control character (record field values
may hold tabs and line breaks; the header's text may not), finite numbers. Record
ids are kept in their 18-character form, so one record sent as a 15- and an
18-character id is stored once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from connector.webhooks.errors import MalformedNotificationError
from connector.webhooks.identifiers import EMPTY_ID, WILDCARD_ID, id18, is_object_name, is_salesforce_id
from connector.webhooks.inbox import CHANGE_ORIGIN_LENGTH

CHANGE_ACTIONS = {
    "CREATE": "upsert",
    "UPDATE": "upsert",
    "UNDELETE": "upsert",
    "DELETE": "delete",
    "GAP_CREATE": "refetch",
    "GAP_UPDATE": "refetch",
    "GAP_DELETE": "refetch",
    "GAP_UNDELETE": "refetch",
    "GAP_OVERFLOW": "resync_object",
}
TRANSACTION_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_SEQUENCE_NUMBER = 10**12
MAX_RECORDS = 10_000  # inbox rows per request
#: Deepest nesting of arrays and objects: a CometD envelope holding compound fields is about 6 deep.
MAX_DEPTH = 32
#: Control characters (and lone surrogates) no text of a change event may hold.
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: The same, for the header's text: no tab or line break either.
_BAD_HEADER_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass(frozen=True)
class ChangeEvent:
    entity_name: str
    change_type: str
    record_ids: tuple[str, ...]  # 15/18-char ids or key-prefix wildcards (``001*``); empty for GAP_OVERFLOW
    transaction_key: str
    sequence_number: int
    commit_timestamp: int  # epoch milliseconds
    change_origin: str | None
    document: str  # the event as received, re-serialised as compact JSON

    @property
    def action(self) -> str:
        return CHANGE_ACTIONS[self.change_type]


def _malformed(message: str) -> MalformedNotificationError:
    return MalformedNotificationError(f"malformed change event: {message}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_change_events(raw: bytes) -> list[ChangeEvent]:
    if not raw.strip():
        raise _malformed("empty body")
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise _malformed("JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise _malformed(f"not valid JSON ({exc})") from exc
    _check_document(document)
    items = document if isinstance(document, list) else [document]
    if not items:
        raise _malformed("an empty list holds no change event")
    events = [_event(item, index) for index, item in enumerate(items, 1)]
    records = sum(max(len(event.record_ids), 1) for event in events)
    if records > MAX_RECORDS:
        raise _malformed(f"{records} records in one request; send at most {MAX_RECORDS}")
    return events


def _describe(text: str, limit: int = 80) -> str:
    return json.dumps(text[:limit])  # quoted and escaped: safe to show whatever it holds


def _check_document(document: Any) -> None:
    """Depth, text and numbers of the whole document, without recursion; a problem
    names where it is (``[0].data.payload.ChangeEventHeader.changeOrigin``)."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _malformed(f"JSON nested more than {MAX_DEPTH} deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, f"a key in {path or 'the document'}")
                    stack.append((item, depth + 1, f"{path}.{key}" if path else key))
            else:
                stack.extend((item, depth + 1, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _malformed(f"{path}: the number is out of range")


def _check_text(text: str, where: str) -> None:
    found = _BAD_TEXT.search(text)
    if found:
        kind = "a lone surrogate" if "\ud800" <= found.group() <= "\udfff" else "a control character"
        raise _malformed(f"{_describe(where)}: {kind} in {_describe(text)}; text must be valid Unicode "
                         "without control characters")


def _event(item: Any, index: int) -> ChangeEvent:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise _malformed(f"{where} is not a JSON object")
    payload: Any = item
    if isinstance(item.get("data"), dict):
        payload = item["data"].get("payload")
    elif "payload" in item and "ChangeEventHeader" not in item:
        payload = item["payload"]
    if not isinstance(payload, dict):
        raise _malformed(f"{where} has no payload object")
    header = payload.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise _malformed(f"{where} has no ChangeEventHeader")
    entity = header.get("entityName")
    if not is_object_name(entity):
        raise _malformed(f"{where}: entityName is missing or not an object API name")
    change_type = header.get("changeType")
    if not isinstance(change_type, str) or change_type not in CHANGE_ACTIONS:
        raise _malformed(f"{where}: changeType must be one of {', '.join(CHANGE_ACTIONS)}")
    key = header.get("transactionKey")
    if not isinstance(key, str) or not TRANSACTION_KEY.fullmatch(key):
        raise _malformed(f"{where}: transactionKey is missing or not 1-64 characters of [A-Za-z0-9._-]")
    sequence = header.get("sequenceNumber")
    if not _is_int(sequence) or not 0 <= sequence <= MAX_SEQUENCE_NUMBER:
        raise _malformed(f"{where}: sequenceNumber is missing or not a non-negative integer")
    commit = header.get("commitTimestamp")
    if not _is_int(commit) or commit < 0:
        raise _malformed(f"{where}: commitTimestamp is missing or not epoch milliseconds")
    origin = header.get("changeOrigin")
    if origin is not None and (not isinstance(origin, str) or len(origin) > CHANGE_ORIGIN_LENGTH
                               or _BAD_HEADER_TEXT.search(origin)):
        raise _malformed(f"{where}: changeOrigin is not a string of at most {CHANGE_ORIGIN_LENGTH} characters "
                         "without control characters")
    changed = header.get("changedFields")
    if changed is not None and not (isinstance(changed, list) and all(isinstance(f, str) for f in changed)):
        raise _malformed(f"{where}: changedFields is not a list of field names")
    record_ids = _record_ids(header.get("recordIds"), change_type, where)
    return ChangeEvent(entity, change_type, record_ids, key, sequence, commit, origin or None,
                       json.dumps(item, separators=(",", ":")))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _record_ids(value: Any, change_type: str, where: str) -> tuple[str, ...]:
    if change_type == "GAP_OVERFLOW":  # the whole entity: recordIds holds the empty id
        return ()
    if not isinstance(value, list) or not value:
        raise _malformed(f"{where}: recordIds is missing or empty")
    for record_id in value:
        if not (is_salesforce_id(record_id) or (isinstance(record_id, str) and WILDCARD_ID.fullmatch(record_id))):
            raise _malformed(f"{where}: recordIds holds {str(record_id)[:40]!r}, not a Salesforce id")
        if record_id == EMPTY_ID:
            raise _malformed(f"{where}: recordIds holds the empty id outside GAP_OVERFLOW")
    return tuple(dict.fromkeys(record_id if record_id.endswith("*") else id18(record_id) for record_id in value))
