"""Claiming and settling outbox rows: the delivery side of ``billing_engine.outbox``.

A push works in two short transactions around the Salesforce calls:

1. ``claim_rows``: due rows (``pending`` with ``next_attempt_at`` empty or past, or
   ``in_flight`` whose lease ran out because its worker died), oldest id first, are
   marked ``in_flight`` with ``locked_by``/``locked_at`` and committed. PostgreSQL:
   ``SELECT ... FOR UPDATE SKIP LOCKED`` (rows an engine transaction is rewriting are
   skipped, not waited for), and claimers take a transaction-scoped advisory lock so
   each sees the others' claims. SQLite: the transaction is ``BEGIN IMMEDIATE``
   (``connector.database``), which serialises claimers.
2. ``settle_rows``: each row becomes ``done`` (with the Salesforce id), goes back to
   ``pending`` with a backoff (``attempts`` counted for record errors), or ``dead``
   after ``MAX_ATTEMPTS``. Nothing is deleted.

Rows of one customer are never in flight in two workers at once (``ordering_key``):
a push reads the engine's current state, so two workers pushing the same customer
could land an older read after a newer one.

A row in flight in a worker that was killed is simply claimed again after the
lease: every push is an upsert by external id or an update by Id with absolute
values, so sending it twice is harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from billing_engine import outbox as ob
from billing_engine.storage.outbox import OutboxRow
from billing_engine.use_cases.exports import record_salesforce_ids
from connector.database import is_postgresql

log = logging.getLogger("billsync.push")

#: A row in flight longer than this belongs to a dead worker and may be claimed again.
DEFAULT_LEASE = timedelta(minutes=5)
#: Record-level failures before a row is parked as a dead letter.
MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
#: Transient failures (UNABLE_TO_LOCK_ROW, 5xx after the client's retries): retry soon, no attempt counted.
TRANSIENT_DELAY = timedelta(seconds=15)
ERROR_MAX_LENGTH = 2000

_CLAIM_LOCK_KEY = 0x6269_6C6C_7379_6E63 & 0x7FFF_FFFF_FFFF_FFFF  # "billsync"
_CHUNK = 900  # SQLite's bound-parameter limit, with room to spare
_T = OutboxRow.__table__


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    topic: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    attempts: int
    coalesce_key: str | None


@dataclass(frozen=True)
class Settlement:
    """What became of one claimed row.

    ``outcome``: ``done``; ``failed`` (a record error: attempts + 1, backoff, dead after
    ``MAX_ATTEMPTS``); ``transient`` (back to pending soon, no attempt counted);
    ``release`` (back to pending untouched: the push stopped before sending it).
    """

    row_id: int
    outcome: str
    error: str | None = None
    salesforce_id: str | None = None
    retry_at: datetime | None = None  # release/transient: when it is due again (default: now)


@dataclass(frozen=True)
class SettleCounts:
    done: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0
    superseded: int = 0


@dataclass(frozen=True)
class OutboxLetter:
    """A row shown by ``billsync sync status``: dead, or failed and waiting for its retry."""

    id: int
    topic: str
    aggregate_type: str
    aggregate_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None


def utc(value: datetime | None) -> datetime | None:
    """A stored datetime as aware UTC (SQLite gives naive values back)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _store(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("outbox datetimes must be timezone-aware")
    # SQLite keeps the wall clock without the offset: always store UTC.
    return value.astimezone(UTC)


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts`` (1 min × 2^(n−1), at most 1 h)."""
    if attempts < 1:
        return timedelta(0)
    return min(BACKOFF_BASE * (2 ** min(attempts - 1, 20)), BACKOFF_CAP)


def ordering_key(aggregate_type: str, aggregate_id: str, payload: dict[str, Any]) -> str:
    """Rows sharing this key are pushed by one worker at a time: the customer, else the aggregate."""
    customer = payload.get("customer_id") if isinstance(payload, dict) else None
    if customer:
        return f"customer:{customer}"
    if aggregate_type == "customer":
        return f"customer:{aggregate_id}"
    return f"{aggregate_type}:{aggregate_id}"


def _payload(text_value: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text_value or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _due(now: datetime, lease: timedelta, worker_id: str):
    return or_(
        and_(_T.c.status == ob.STATUS_PENDING, or_(_T.c.next_attempt_at.is_(None), _T.c.next_attempt_at <= now)),
        # another worker's rows whose lease ran out (never our own: they are being sent right now)
        and_(_T.c.status == ob.STATUS_IN_FLIGHT, _T.c.locked_at < now - lease,
             or_(_T.c.locked_by.is_(None), _T.c.locked_by != worker_id[:100])),
    )


def claim_rows(engine: Any, *, worker_id: str, limit: int, now: datetime,
               lease: timedelta = DEFAULT_LEASE) -> list[ClaimedRow]:
    """Claim up to ``limit`` due rows for ``worker_id`` (committed before returning)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    now = _store(now)
    with Session(engine) as session, session.begin():
        postgres = is_postgresql(session)
        if postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY})
        busy = _busy_keys(session, worker_id, now, lease)
        stmt = (select(_T.c.id, _T.c.topic, _T.c.aggregate_type, _T.c.aggregate_id, _T.c.payload, _T.c.attempts,
                       _T.c.coalesce_key)
                .where(_due(now, lease, worker_id)).order_by(_T.c.id).limit(limit))
        if postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        claimed: list[ClaimedRow] = []
        for row in session.execute(stmt).all():
            payload = _payload(row.payload)
            if ordering_key(row.aggregate_type, row.aggregate_id, payload) in busy:
                continue
            claimed.append(ClaimedRow(row.id, row.topic, row.aggregate_type, row.aggregate_id, payload,
                                      row.attempts, row.coalesce_key))
        ids = [r.id for r in claimed]
        for start in range(0, len(ids), _CHUNK):
            session.execute(update(_T).where(_T.c.id.in_(ids[start:start + _CHUNK]))
                            .values(status=ob.STATUS_IN_FLIGHT, locked_by=worker_id[:100], locked_at=now))
    return claimed


def _busy_keys(session: Session, worker_id: str, now: datetime, lease: timedelta) -> set[str]:
    rows = session.execute(select(_T.c.aggregate_type, _T.c.aggregate_id, _T.c.payload).where(
        _T.c.status == ob.STATUS_IN_FLIGHT, _T.c.locked_at >= now - lease,
        or_(_T.c.locked_by.is_(None), _T.c.locked_by != worker_id[:100])))
    return {ordering_key(a, i, _payload(p)) for a, i, p in rows}


def settle_rows(engine: Any, settlements: Sequence[Settlement], *, worker_id: str, now: datetime,
                claimed: dict[int, ClaimedRow]) -> SettleCounts:
    """Record what became of claimed rows, in one transaction (redone once on a coalescing race)."""
    for attempt in (1, 2):
        try:
            with Session(engine) as session, session.begin():
                return _settle(session, settlements, worker_id=worker_id, now=_store(now), claimed=claimed)
        except IntegrityError:
            # An engine transaction added a pending snapshot row with the same coalesce key
            # between our check and our update: check again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _settle(session: Session, settlements: Sequence[Settlement], *, worker_id: str, now: datetime,
            claimed: dict[int, ClaimedRow]) -> SettleCounts:
    done: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    untouched: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    released = retrying = 0
    back_to_pending = [s for s in settlements if s.outcome != "done"]
    superseding = _pending_with_keys(session, [claimed[s.row_id].coalesce_key for s in back_to_pending
                                               if claimed[s.row_id].coalesce_key])
    superseded = 0
    for s in settlements:
        row = claimed[s.row_id]
        error = s.error[:ERROR_MAX_LENGTH] if s.error else None
        if s.outcome == "done":
            done.append({"b_id": row.id, "b_error": error, "b_sfid": s.salesforce_id})
            continue
        newer = superseding.get(row.coalesce_key) if row.coalesce_key else None
        if newer is not None and newer != row.id:
            # A newer snapshot row of the same customer is pending: it pushes the current state.
            done.append({"b_id": row.id, "b_error": f"superseded by outbox row {newer}"
                         + (f" (last error: {error})" if error else ""), "b_sfid": None})
            superseded += 1
            continue
        if s.outcome == "release":
            released += 1
            untouched.append({"b_id": row.id, "b_next": _store(s.retry_at) if s.retry_at else None})
        elif s.outcome == "transient":
            retrying += 1
            pending.append({"b_id": row.id, "b_attempts": row.attempts, "b_error": error,
                            "b_next": _store(s.retry_at or now + TRANSIENT_DELAY)})
        elif s.outcome == "failed":
            attempts = row.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                dead.append({"b_id": row.id, "b_attempts": attempts, "b_error": error})
            else:
                retrying += 1
                pending.append({"b_id": row.id, "b_attempts": attempts, "b_error": error,
                                "b_next": now + backoff(attempts)})
        else:
            raise ValueError(f"unknown outcome {s.outcome!r}")
    _write_back_salesforce_ids(session, settlements, claimed)
    mine = and_(_T.c.id == bindparam("b_id"), _T.c.status == ob.STATUS_IN_FLIGHT,
                _T.c.locked_by == worker_id[:100])
    conn = session.connection()
    if done:
        conn.execute(update(_T).where(mine).values(
            status=ob.STATUS_DONE, last_error=bindparam("b_error"), salesforce_id=bindparam("b_sfid"),
            locked_by=None, locked_at=None, next_attempt_at=None), done)
    if pending:
        conn.execute(update(_T).where(mine).values(
            status=ob.STATUS_PENDING, attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next", type_=_T.c.next_attempt_at.type), locked_by=None,
            locked_at=None), pending)
    if untouched:  # released without a verdict: attempts and last error stay as they were
        conn.execute(update(_T).where(mine).values(
            status=ob.STATUS_PENDING, next_attempt_at=bindparam("b_next", type_=_T.c.next_attempt_at.type),
            locked_by=None, locked_at=None), untouched)
    if dead:
        conn.execute(update(_T).where(mine).values(
            status=ob.STATUS_DEAD, attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
            locked_by=None, locked_at=None, next_attempt_at=None), dead)
    return SettleCounts(done=len(done) - superseded, retrying=retrying, dead=len(dead), released=released,
                        superseded=superseded)


def _write_back_salesforce_ids(session: Session, settlements: Sequence[Settlement],
                               claimed: dict[int, ClaimedRow]) -> None:
    """Store on the engine's invoices and payments the Salesforce ids their push returned."""
    by_kind: dict[str, dict[int, str]] = {"invoice": {}, "payment": {}}
    for s in settlements:
        row = claimed[s.row_id]
        if s.outcome == "done" and s.salesforce_id and row.aggregate_type in by_kind \
                and str(row.aggregate_id).isdigit():
            by_kind[row.aggregate_type][int(row.aggregate_id)] = s.salesforce_id
    for kind, ids in by_kind.items():
        record_salesforce_ids(session, kind, ids)


def _pending_with_keys(session: Session, keys: Iterable[str | None]) -> dict[str, int]:
    wanted = sorted({k for k in keys if k})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(select(_T.c.coalesce_key, _T.c.id).where(
            _T.c.coalesce_key.in_(wanted[start:start + _CHUNK]), _T.c.status == ob.STATUS_PENDING))
        found.update({k: i for k, i in rows})
    return found


# ---------------------------------------------------------------- dead letters and status


def retry_dead_letters(session: Session, ids: Sequence[int] | None = None) -> int:
    """Re-queue dead rows, and pending rows backing off after record errors, now (attempts reset;
    the last error stays visible until the row is delivered).

    ``ids`` limits it to those rows. A snapshot row whose customer already has a newer
    pending row is marked done as superseded instead (that row pushes the current state).
    The caller commits. Returns how many rows were re-queued.
    """
    failed = and_(_T.c.status == ob.STATUS_PENDING, _T.c.attempts > 0)
    query = select(_T.c.id, _T.c.coalesce_key).where(or_(_T.c.status == ob.STATUS_DEAD, failed))
    if ids is not None:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        query = query.where(_T.c.id.in_(wanted))
    rows = session.execute(query.order_by(_T.c.id)).all()
    pending = _pending_with_keys(session, [k for _, k in rows])
    requeue, superseded = [], []
    for row_id, key in rows:
        newer = pending.get(key) if key else None
        if newer is not None and newer != row_id:
            superseded.append({"b_id": row_id, "b_error": f"superseded by outbox row {newer}"})
        else:
            requeue.append({"b_id": row_id})
            if key:
                pending[key] = row_id
    conn = session.connection()
    if requeue:
        conn.execute(update(_T).where(_T.c.id == bindparam("b_id")).values(
            status=ob.STATUS_PENDING, attempts=0, next_attempt_at=None, locked_by=None, locked_at=None), requeue)
    if superseded:
        conn.execute(update(_T).where(_T.c.id == bindparam("b_id")).values(
            status=ob.STATUS_DONE, last_error=bindparam("b_error"), locked_by=None, locked_at=None), superseded)
    return len(requeue)


def outbox_counts(session: Session) -> dict[str, int]:
    """Rows per status (every status present, zeros included), plus ``failing``: pending after an error."""
    counts = {s: 0 for s in (ob.STATUS_PENDING, ob.STATUS_IN_FLIGHT, ob.STATUS_DONE, ob.STATUS_DEAD)}
    for status, count in session.execute(select(_T.c.status, func.count()).group_by(_T.c.status)):
        counts[status] = count
    counts["failing"] = session.execute(select(func.count()).select_from(_T).where(
        _T.c.status == ob.STATUS_PENDING, _T.c.last_error.is_not(None))).scalar_one()
    return counts


def outbox_letters(session: Session, *, status: str, limit: int | None = 50) -> list[OutboxLetter]:
    """Dead rows (``status="dead"``) or failing ones (``status="failing"``), oldest first."""
    if status == "failing":
        where = and_(_T.c.status == ob.STATUS_PENDING, _T.c.last_error.is_not(None))
    else:
        where = _T.c.status == status
    query = select(_T).where(where).order_by(_T.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [OutboxLetter(r.id, r.topic, r.aggregate_type, r.aggregate_id, r.status, r.attempts, r.last_error,
                         utc(r.next_attempt_at), utc(r.created_at)) for r in session.execute(query).all()]
