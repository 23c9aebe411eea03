"""The audit log: every change made through the API (and any other front door that records
it) as one entry: who (``api-key:finance-bot``, ``cli:alice``), when, what
(``payment.record``), on which record, the values before and after, and the request id.

An entry is written with ``record_action`` in the same transaction as the change it
describes, so there is never a change without its entry nor an entry without its change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from billing_engine.errors import InvalidInputError
from billing_engine.storage import audit as audit_store
from billing_engine.storage.database import Session

#: Longest page ``list_actions`` returns.
MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any
    request_id: str | None


def _plain(value: Any) -> Any:
    """JSON-ready: decimals as decimal strings (never floats), dates as ISO text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot record {type(value).__name__} in the audit log")


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise TypeError("refusing to record a float in the audit log; use Decimal")
    return json.dumps(value, default=_plain, sort_keys=True, separators=(",", ":"))


def _check(field: str, value: str, length: int) -> str:
    if not value or len(value) > length:
        raise InvalidInputError(field, f"must be 1 to {length} characters")
    return value


def record_action(session: Session, *, at: datetime, actor: str, action: str, target_type: str,
                  target_id: str | int, before: Mapping[str, Any] | Any = None,
                  after: Mapping[str, Any] | Any = None, request_id: str | None = None) -> int:
    """Record one action in the caller's transaction; returns the entry's id.

    ``before``/``after`` are plain values (dicts, lists, decimals, dates, dataclasses);
    decimals are kept as decimal strings."""
    if at.tzinfo is None:
        raise InvalidInputError("at", "must be timezone-aware")
    values = {
        "at": at,
        "actor": _check("actor", actor, audit_store.ACTOR_LENGTH),
        "action": _check("action", action, audit_store.ACTION_LENGTH),
        "target_type": _check("target_type", target_type, audit_store.TARGET_TYPE_LENGTH),
        "target_id": _check("target_id", str(target_id), audit_store.TARGET_ID_LENGTH),
        "before": _json(before),
        "after": _json(after),
        "request_id": (request_id or None) and request_id[:audit_store.REQUEST_ID_LENGTH],
    }
    return audit_store.insert_audit_row(session, values)


def list_actions(session: Session, *, limit: int, before_id: int | None = None, target_type: str | None = None,
                 target_id: str | None = None, actor: str | None = None,
                 action: str | None = None) -> list[AuditEntry]:
    """Entries newest first, at most ``limit``, filtered by target, actor and action; the next
    page starts below the last entry's id (``before_id``)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError("limit", f"must be between 1 and {MAX_PAGE}")
    rows = audit_store.select_audit_rows(session, limit=limit, before_id=before_id, target_type=target_type,
                                         target_id=target_id, actor=actor, action=action)
    return [AuditEntry(id=row.id, at=row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC), actor=row.actor, action=row.action, target_type=row.target_type,
                       target_id=row.target_id, before=json.loads(row.before) if row.before is not None else None,
                       after=json.loads(row.after) if row.after is not None else None,
                       request_id=row.request_id) for row in rows]
