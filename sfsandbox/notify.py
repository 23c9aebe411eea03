"""Change notifications out of the sandbox.

- Outbound Messages: Salesforce's SOAP ``notifications`` envelope (at most 100
  ``Notification`` elements), retried with growing backoff until the listener answers
  HTTP 200 with ``<Ack>true</Ack>``; the same Notification/Id on every retry; at least
  once (so possibly twice); dropped after 24 hours.
- CDC relay stand-in: CometD-shaped change events (a JSON list per POST), signed with
  ``X-Billsync-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

Both deliver from a background thread and never block a REST call.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

import requests

from sfsandbox import ids, wire
from sfsandbox.formula import Formula
from sfsandbox.org import Org
from sfsandbox.store import Change

MAX_NOTIFICATIONS = 100
_ACK = re.compile(r"<(?:[\w-]+:)?notificationsResponse\b.*?<(?:[\w-]+:)?Ack>\s*true\s*</(?:[\w-]+:)?Ack>", re.S)
NEVER_IN_CDC = {"IsDeleted", "SystemModstamp", "Id"}


@dataclass
class Backoff:
    initial: float = 0.2  # seconds before the first retry (Salesforce: a few seconds)
    factor: float = 2.0
    maximum: float = 7200.0  # two hours, as Salesforce
    max_age: float = 86400.0  # give up after 24 hours
    timeout: float = 60.0  # per delivery attempt

    def delay(self, attempts: int) -> float:
        return min(self.initial * self.factor ** max(attempts - 1, 0), self.maximum)


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _session(ca_path: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not override the configured trust
    session.verify = ca_path or True
    return session


class _Deliverer:
    """A background thread that wakes when work is queued or a retry is due."""

    def __init__(self, name: str):
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._started:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
            wait = self.work()
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(timeout=wait)

    def work(self) -> float:  # returns seconds until the next due item
        raise NotImplementedError


# ----------------------------------------------------------------------------- Outbound Messages


@dataclass
class OutboundMessage:
    """A configured outbound message action (workflow/flow action)."""

    object: str
    fields: list[str]
    endpoint: str
    condition: str | None = None
    name: str = ""
    action_id: str = ""
    ca_path: str | None = None
    send_session_id: bool = False

    def as_dict(self) -> dict:
        return {"object": self.object, "fields": self.fields, "endpoint": self.endpoint,
                "condition": self.condition, "name": self.name, "action_id": self.action_id,
                "ca_path": self.ca_path}


@dataclass
class _Notification:
    id: str
    record_id: str
    queued_at: float


@dataclass
class _Envelope:
    action: OutboundMessage
    notifications: list[_Notification]
    first_at: float
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class Delivery:
    """One delivery attempt, for tests and the admin stats."""

    endpoint: str
    notification_ids: list[str]
    status: int | None
    acked: bool
    at: str  # ISO 8601, UTC
    error: str = ""


class OutboundMessenger(_Deliverer):
    def __init__(self, org: Org, backoff: Backoff | None = None, instance_url: str = "",
                 shuffle: Callable[[list], None] | None = None):
        super().__init__("sandbox-outbound-messages")
        self.org = org
        self.backoff = backoff or Backoff()
        self.instance_url = instance_url
        self.shuffle = shuffle
        self.duplicate = False
        self.reorder = False
        self.actions: list[OutboundMessage] = []
        self._formulas: dict[str, Formula | None] = {}
        self._pending: dict[str, list[_Notification]] = {}  # action id -> queued, not yet in an envelope
        self._envelopes: list[_Envelope] = []
        self.log: list[Delivery] = []
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._action_counter = itertools.count(1)

    def configure(self, action: OutboundMessage) -> OutboundMessage:
        obj = self.org.schema.get(action.object)
        if obj is None:
            raise ValueError(f"unknown object {action.object!r}")
        action.object = obj.name
        canonical = []
        for name in action.fields:
            spec = obj.field(name)
            if spec is None:
                raise ValueError(f"unknown field {action.object}.{name}")
            if spec.name != "Id":
                canonical.append(spec.name)
        action.fields = canonical
        if not re.match(r"^https?://", action.endpoint):
            raise ValueError("endpoint must be an http(s) URL")
        formula = Formula(action.condition) if action.condition else None
        with self._lock:
            if not action.action_id:
                action.action_id = ids.make_id("04k", next(self._action_counter))
            action.name = action.name or f"{obj.name}_Outbound_{len(self.actions) + 1}"
            self.actions.append(action)
            self._formulas[action.action_id] = formula
        return action

    def clear(self) -> None:
        with self._lock:
            self.actions.clear()
            self._pending.clear()
            self._envelopes.clear()
            self.log.clear()
            self.dropped.clear()

    def on_changes(self, changes: list[Change]) -> None:
        if not self.actions:
            return
        queued = False
        now = time.time()
        with self._lock:
            for change in changes:
                if change.change_type not in ("CREATE", "UPDATE") or not change.user_write:
                    continue
                for action in self.actions:
                    if action.object != change.object:
                        continue
                    formula = self._formulas.get(action.action_id)
                    if formula is not None and not formula.evaluate(change.record):
                        continue
                    note = _Notification(ids.make_id("04l", next(self._counter)), change.record_id, now)
                    self._pending.setdefault(action.action_id, []).append(note)
                    queued = True
        if queued:
            self.wake()

    def pending_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._pending.values()) + sum(len(e.notifications) for e in self._envelopes)

    # ------------------------------------------------------------------ delivery

    def work(self) -> float:
        now = time.time()
        with self._lock:
            for action in self.actions:
                queue = self._pending.pop(action.action_id, [])
                if self.reorder and self.shuffle:
                    self.shuffle(queue)
                for i in range(0, len(queue), MAX_NOTIFICATIONS):
                    self._envelopes.append(_Envelope(action, queue[i:i + MAX_NOTIFICATIONS], now, 0, now))
            due = [e for e in self._envelopes if e.next_at <= now]
            if self.reorder and self.shuffle:
                self.shuffle(due)
        for envelope in due:
            if now - envelope.first_at > self.backoff.max_age:
                with self._lock:
                    self._envelopes.remove(envelope)
                    self.dropped.extend(n.id for n in envelope.notifications)
                continue
            acked = self._send(envelope)
            with self._lock:
                if acked:
                    self._envelopes.remove(envelope)
                else:
                    envelope.attempts += 1
                    envelope.next_at = time.time() + self.backoff.delay(envelope.attempts)
            if acked and self.duplicate:
                self._send(envelope)  # at least once: the same notifications again
        with self._lock:
            if self._envelopes:
                return max(0.01, min(e.next_at for e in self._envelopes) - time.time())
            return 3600.0 if not self._pending else 0.01

    def _send(self, envelope: _Envelope) -> bool:
        body = self.envelope_xml(envelope.action, envelope.notifications)
        note_ids = [n.id for n in envelope.notifications]
        try:
            with _session(envelope.action.ca_path) as session:
                response = session.post(envelope.action.endpoint, data=body.encode("utf-8"), timeout=self.backoff.timeout,
                                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
            acked = response.status_code == 200 and bool(_ACK.search(response.text))
            entry = Delivery(envelope.action.endpoint, note_ids, response.status_code, acked, _stamp())
        except requests.RequestException as exc:
            acked = False
            entry = Delivery(envelope.action.endpoint, note_ids, None, False, _stamp(), str(exc)[:200])
        with self._lock:
            self.log.append(entry)
            del self.log[:-1000]
        return acked

    def envelope_xml(self, action: OutboundMessage, notifications: list[_Notification]) -> str:
        org15 = self.org.org_id[:15]
        version = "59.0"
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
            "<soapenv:Body>",
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">',
            f"<OrganizationId>{self.org.org_id}</OrganizationId>",
            f"<ActionId>{action.action_id}</ActionId>",
            '<SessionId xsi:nil="true"/>',
            f"<EnterpriseUrl>{escape(self.instance_url)}/services/Soap/c/{version}/{org15}</EnterpriseUrl>",
            f"<PartnerUrl>{escape(self.instance_url)}/services/Soap/u/{version}/{org15}</PartnerUrl>",
        ]
        obj = self.org.schema.objects[action.object]
        with self.org.store.lock:
            records = {n.record_id: self.org.store.get(action.object, n.record_id) for n in notifications}
        for note in notifications:
            record = records.get(note.record_id)
            parts.append(f"<Notification><Id>{note.id}</Id>")
            parts.append(f'<sObject xsi:type="sf:{action.object}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">')
            parts.append(f"<sf:Id>{note.record_id}</sf:Id>")
            if record is not None and not record["IsDeleted"]:  # a deleted record's notification has no data
                for name in action.fields:
                    value = record.get(name)
                    if value is None:
                        parts.append(f'<sf:{name} xsi:nil="true"/>')
                    else:
                        parts.append(f"<sf:{name}>{escape(soap_text(obj.fields[name].type, value))}</sf:{name}>")
            parts.append("</sObject></Notification>")
        parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
        return "".join(parts)


def soap_text(kind: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind in ("currency", "double", "percent") and isinstance(value, Decimal | int):
        text = format(Decimal(value), "f")
        return text if "." in text else text + ".0"
    if kind == "datetime" and isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    return str(value)


# ----------------------------------------------------------------------------- CDC


@dataclass
class CdcConfig:
    endpoint: str
    secret: str
    entities: list[str] | None = None  # None: every object
    ca_path: str | None = None
    batch_size: int = 100

    def as_dict(self) -> dict:
        return {"endpoint": self.endpoint, "entities": self.entities, "ca_path": self.ca_path,
                "batch_size": self.batch_size}


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def channel(entity: str) -> str:
    return f"/data/{entity[:-3]}__ChangeEvent" if entity.endswith("__c") else f"/data/{entity}ChangeEvent"


@dataclass
class _Batch:
    events: list[dict]
    first_at: float
    attempts: int = 0
    next_at: float = 0.0


class CdcPublisher(_Deliverer):
    def __init__(self, org: Org, backoff: Backoff | None = None, shuffle: Callable[[list], None] | None = None):
        super().__init__("sandbox-cdc")
        self.org = org
        self.backoff = backoff or Backoff()
        self.shuffle = shuffle
        self.config: CdcConfig | None = None
        self.duplicate = False
        self.reorder = False
        self._queue: list[dict] = []
        self._batches: list[_Batch] = []
        self._lock = threading.Lock()
        self._replay = itertools.count(1)
        self._commit = itertools.count(700_000_000_001)
        self.log: list[Delivery] = []
        self.dropped = 0

    def configure(self, config: CdcConfig | None) -> None:
        if config is not None:
            if not re.match(r"^https?://", config.endpoint):
                raise ValueError("endpoint must be an http(s) URL")
            if config.entities is not None:
                names = []
                for name in config.entities:
                    obj = self.org.schema.get(name)
                    if obj is None:
                        raise ValueError(f"unknown object {name!r}")
                    names.append(obj.name)
                config.entities = names
        with self._lock:
            self.config = config
            if config is None:
                self._queue.clear()
                self._batches.clear()

    def clear(self) -> None:
        self.configure(None)
        with self._lock:
            self.log.clear()

    def on_changes(self, changes: list[Change]) -> None:
        config = self.config
        if config is None:
            return
        key = str(uuid.uuid4())
        commit_ms = int(time.time() * 1000)
        commit_number = next(self._commit)
        events = []
        sequence = 0
        for change in changes:
            if config.entities is not None and change.object not in config.entities:
                continue
            sequence += 1
            header = {
                "entityName": change.object, "recordIds": [change.record_id], "changeType": change.change_type,
                "changeOrigin": change.origin, "transactionKey": key, "sequenceNumber": sequence,
                "commitTimestamp": commit_ms, "commitNumber": commit_number,
                "commitUser": change.user_id or self.org.user_id,
                "changedFields": [], "nulledFields": [], "diffFields": [],
            }
            payload = self._payload(change, header)
            events.append(self._event(change.object, payload))
        if events:
            with self._lock:
                self._queue.extend(events)
            self.wake()

    def _payload(self, change: Change, header: dict) -> dict:
        obj = self.org.schema.objects[change.object]
        payload: dict[str, Any] = {}
        if change.change_type in ("CREATE", "UNDELETE"):
            names = [n for n, v in change.record.items() if v is not None and n not in NEVER_IN_CDC]
        elif change.change_type == "UPDATE":
            names = [n for n in change.changed_fields if n not in NEVER_IN_CDC]
            header["changedFields"] = names
            header["nulledFields"] = [n for n in names if change.record.get(n) is None]
        else:
            names = []
        for name in names:
            value = change.record.get(name)
            if obj.fields[name].type == "datetime" and isinstance(value, str) and value.endswith("+0000"):
                value = value[:-5] + "Z"
            payload[name] = value
        payload["ChangeEventHeader"] = header
        return payload

    def _event(self, entity: str, payload: dict) -> dict:
        return {"data": {"schema": "sandbox-" + hashlib.sha1(entity.encode()).hexdigest()[:16],
                         "payload": payload, "event": {"replayId": next(self._replay)}},
                "channel": channel(entity)}

    def emit_gap(self, change_type: str, entity: str, record_ids: list[str] | None = None) -> dict:
        """A GAP_* event for records (the handler must re-read them), or GAP_OVERFLOW for
        a whole entity (recordIds = the empty id; the handler must resync the entity)."""
        allowed = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")
        if change_type not in allowed:
            raise ValueError(f"change_type must be one of {', '.join(allowed)}")
        obj = self.org.schema.get(entity)
        if obj is None:
            raise ValueError(f"unknown object {entity!r}")
        header = {
            "entityName": obj.name,
            "recordIds": [ids.EMPTY_ID] if change_type == "GAP_OVERFLOW" else list(record_ids or []),
            "changeType": change_type, "changeOrigin": "", "transactionKey": str(uuid.uuid4()),
            "sequenceNumber": 1, "commitTimestamp": int(time.time() * 1000), "commitNumber": next(self._commit),
            "commitUser": self.org.user_id, "changedFields": [], "nulledFields": [], "diffFields": [],
        }
        event = self._event(obj.name, {"ChangeEventHeader": header})
        with self._lock:
            self._queue.append(event)
        self.wake()
        return event

    def pending_count(self) -> int:
        with self._lock:
            return len(self._queue) + sum(len(b.events) for b in self._batches)

    def work(self) -> float:
        config = self.config
        if config is None:
            return 3600.0
        now = time.time()
        with self._lock:
            queue, self._queue = self._queue, []
            if self.reorder and self.shuffle:
                self.shuffle(queue)
            for i in range(0, len(queue), config.batch_size):
                self._batches.append(_Batch(queue[i:i + config.batch_size], now, 0, now))
            due = [b for b in self._batches if b.next_at <= now]
        for batch in due:
            if now - batch.first_at > self.backoff.max_age:
                with self._lock:
                    self._batches.remove(batch)
                    self.dropped += len(batch.events)
                continue
            ok = self._send(config, batch)
            with self._lock:
                if ok:
                    self._batches.remove(batch)
                else:
                    batch.attempts += 1
                    batch.next_at = time.time() + self.backoff.delay(batch.attempts)
            if ok and self.duplicate:
                self._send(config, batch)
        with self._lock:
            if self._batches:
                return max(0.01, min(b.next_at for b in self._batches) - time.time())
            return 3600.0 if not self._queue else 0.01

    def _send(self, config: CdcConfig, batch: _Batch) -> bool:
        body = wire.dumps(batch.events).encode()
        stamp = int(datetime.now(UTC).timestamp())
        headers = {"Content-Type": "application/json", "X-Billsync-Signature": sign(config.secret, body, stamp)}
        replay_ids = [str(e["data"]["event"]["replayId"]) for e in batch.events]
        try:
            with _session(config.ca_path) as session:
                response = session.post(config.endpoint, data=body, headers=headers, timeout=self.backoff.timeout)
            ok = 200 <= response.status_code < 300
            entry = Delivery(config.endpoint, replay_ids, response.status_code, ok, _stamp())
        except requests.RequestException as exc:
            ok = False
            entry = Delivery(config.endpoint, replay_ids, None, False, _stamp(), str(exc)[:200])
        with self._lock:
            self.log.append(entry)
            del self.log[:-1000]
        return ok
