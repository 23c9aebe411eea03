"""Change Data Capture events as JSON: one event or a list, in any of the shapes a
relay forwards them.

- the CometD envelope ``{"data": {"payload": {..., "ChangeEventHeader": {...}},
  "event": {"replayId": n}}, "channel": "/data/AccountChangeEvent"}``;
- ``{"payload": {...}, "event": {...}}`` (the envelope's ``data``);
- the bare payload ``{"ChangeEventHeader": {...}, <fields>}`` (Pub/Sub, decoded).

Only the header matters to billsync: processing re-reads the records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from connector.webhooks.errors import MalformedNotificationError
from connector.webhooks.identifiers import EMPTY_ID, WILDCARD_ID, is_object_name, is_salesforce_id
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
    items = document if isinstance(document, list) else [document]
    if not items:
        raise _malformed("an empty list holds no change event")
    events = [_event(item, index) for index, item in enumerate(items, 1)]
    records = sum(max(len(event.record_ids), 1) for event in events)
    if records > MAX_RECORDS:
        raise _malformed(f"{records} records in one request; send at most {MAX_RECORDS}")
    return events


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
    if origin is not None and (not isinstance(origin, str) or len(origin) > CHANGE_ORIGIN_LENGTH):
        raise _malformed(f"{where}: changeOrigin is not a string of at most {CHANGE_ORIGIN_LENGTH} characters")
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
    return tuple(dict.fromkeys(value))
