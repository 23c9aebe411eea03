"""The one queue mechanism: claim, lease, settle, back off, re-queue.

Two tables are worked as queues: the outbox (engine → Salesforce, drained by the push)
and the webhook inbox (Salesforce → engine, drained by inbox processing). Each is
described by a ``QueueTable`` (which columns hold the status, the attempts, the lease,
the next attempt time, the last error, the grouping and coalescing keys), and both go
through the same functions:

``claim``
    Due rows — waiting (``pending``, or the table's failed status) with their next
    attempt time empty or past, or ``in_flight`` whose lease ran out because their
    worker died — oldest first, at most ``limit``, are marked ``in_flight`` under a
    lease and committed. PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` (rows another
    transaction holds are skipped, not waited for), and claimers of one table take a
    transaction-scoped advisory lock so each sees the others' claims. SQLite: the
    transaction is ``BEGIN IMMEDIATE`` (``connector.database``), which serialises
    claimers. A row whose group (``QueueTable.group_key``) is in flight in another
    worker under a live lease is left for later: one group is worked by one worker
    at a time.
``settle``
    What became of each claimed row (an ``Outcome``), written in one transaction, and
    only to rows this worker still holds. Record failures count an attempt, wait
    ``backoff(attempts)`` and are parked ``dead`` after ``MAX_ATTEMPTS``. Failures of a
    whole call never park a row: ``RELEASE`` puts it back untouched (a limit pause, an
    authentication failure, a stop), ``TRANSIENT`` keeps the error and retries after
    ``TRANSIENT_DELAY`` without counting an attempt. Nothing is ever deleted.
``requeue``
    Dead rows, and rows waiting after a failure, become due now with their attempts
    reset (``billsync sync retry``); ``count_by_status`` feeds ``billsync sync status``.

Coalescing: a table with a ``coalesce_key`` column keeps at most one *pending* row per
key (a snapshot: the newest pending row carries the current state). A row that would go
back to pending while a newer pending row has its key is marked done as superseded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from connector.database import is_postgresql

# ---------------------------------------------------------------- limits

#: Record failures before a row is parked as a dead letter.
MAX_ATTEMPTS = 8
#: Retry delays: 1 min × 2^(attempts − 1), at most 1 h.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
#: Passing failures (a locked row, Salesforce unavailable after the client's retries): retry soon.
TRANSIENT_DELAY = timedelta(seconds=15)
#: A row in flight longer than its lease belongs to a dead worker and may be claimed again.
DEFAULT_LEASE = timedelta(minutes=5)
#: The lease of work that may re-read whole Salesforce objects (the inbox's full resyncs).
LONG_LEASE = timedelta(minutes=10)
#: Ids or keys per ``IN (...)`` list: SQLite's bound-parameter limit, with room to spare.
IN_CHUNK = 900
ERROR_MAX_LENGTH = 2000
WORKER_ID_LENGTH = 100

# ---------------------------------------------------------------- statuses and outcomes

PENDING = "pending"
IN_FLIGHT = "in_flight"
DONE = "done"
DEAD = "dead"


class Outcome(StrEnum):
    """What became of one claimed row."""

    #: Handled: the row is finished (with an optional note and result).
    DONE = "done"
    #: This row's own failure: one attempt counted, due again after ``backoff``, dead at ``MAX_ATTEMPTS``.
    FAILED = "failed"
    #: A passing failure of the whole call: no attempt counted, the error kept, due again at
    #: ``retry_at`` (default ``now + TRANSIENT_DELAY``).
    TRANSIENT = "transient"
    #: Not attempted (a limit pause, an authentication failure, a stop): back to pending with
    #: its attempts and last error untouched, due at ``retry_at`` (default: now).
    RELEASE = "release"


@dataclass(frozen=True)
class Settlement:
    """One claimed row's outcome; ``error`` is the failure, or a note for ``DONE``;
    ``result`` is stored in the table's result column when ``DONE``."""

    row_id: int
    outcome: Outcome
    error: str | None = None
    retry_at: datetime | None = None
    result: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))


@dataclass(frozen=True)
class SettleCounts:
    done: int = 0
    retrying: int = 0  # failed or transient: due again later
    dead: int = 0
    released: int = 0  # back to pending untouched
    superseded: int = 0  # done because a newer pending row of the same coalesce key pushes the current state


# ---------------------------------------------------------------- the table descriptor


def _itself(key: Hashable) -> tuple[Hashable, ...]:
    return (key,)


@dataclass(frozen=True)
class QueueTable:
    """Which columns of ``table`` the queue works with (names of columns; ``None``: not kept).

    The lease lives in one of two places: with ``claimed_at``, the claim stores its time
    there and the lease runs out ``lease`` later; without it, the claim sets the next
    attempt time to ``now + lease`` (claimed until) and the lease runs out when that time
    passes. With ``claimed_by``, a worker never takes back its own rows and settles only
    the rows it holds.
    """

    table: Table
    #: Columns ``claim`` returns (``id`` and ``attempts`` are always included).
    columns: tuple[str, ...]
    lease: timedelta = DEFAULT_LEASE
    #: Status of a row waiting for its retry after a failure (``pending``, or e.g. ``failed``).
    failed_status: str = PENDING
    #: Claim order, oldest first.
    order_by: tuple[str, ...] = ("id",)
    status: str = "status"
    attempts: str = "attempts"
    next_attempt_at: str = "next_attempt_at"
    last_error: str = "last_error"
    claimed_by: str | None = None
    claimed_at: str | None = None
    #: Set to the settle time when a row ends ``done`` or ``dead``; cleared by ``requeue``.
    settled_at: str | None = None
    #: Receives ``Settlement.result`` when a row is done.
    result: str | None = None
    coalesce_key: str | None = None
    #: Rows of one group are in flight in one worker at a time: the group of a row, from its
    #: ``group_columns`` values, and the groups whose being in flight holds it back.
    group_columns: tuple[str, ...] = ()
    group_key: Callable[[Mapping[str, Any]], Hashable] | None = None
    blocked_by: Callable[[Hashable], Iterable[Hashable]] = _itself
    #: Whether taking back a row from a worker whose lease ran out counts an attempt (so a row
    #: that kills its worker every time ends up dead instead of looping).
    count_lost_lease: bool = False
    statuses: tuple[str, ...] = field(init=False)
    lock_key: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", tuple(dict.fromkeys((PENDING, IN_FLIGHT, DONE, self.failed_status,
                                                                   DEAD))))
        digest = hashlib.blake2b(f"billsync queue {self.table.name}".encode(), digest_size=8).digest()
        object.__setattr__(self, "lock_key", int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF)

    def col(self, name: str) -> Any:
        return self.table.c[name]

    @property
    def waiting_statuses(self) -> tuple[str, ...]:
        """Statuses of rows that are due once their next attempt time has come."""
        return (PENDING,) if self.failed_status == PENDING else (PENDING, self.failed_status)

    def due_now(self, now: datetime) -> datetime | None:
        """What the next attempt time holds for "due now": empty when the column allows it."""
        return None if self.col(self.next_attempt_at).nullable else now

    def unclaimed(self) -> dict[str, Any]:
        """Values that end a claim."""
        return {name: None for name in (self.claimed_by, self.claimed_at) if name}

    def finished(self, now: datetime) -> dict[str, Any]:
        """Values of a row that ends ``done`` or ``dead``."""
        values = {self.next_attempt_at: self.due_now(now), **self.unclaimed()}
        if self.settled_at:
            values[self.settled_at] = now
        return values


# ---------------------------------------------------------------- time and backoff


def utc(value: datetime | None) -> datetime | None:
    """A stored datetime as aware UTC (SQLite gives naive values back)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` (which must be timezone-aware) in UTC, or the current time: what queue columns and
    the sync tables store (SQLite keeps the wall clock without its offset)."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts`` (1 min × 2^(n−1), at most 1 h)."""
    if attempts < 1:
        return timedelta(0)
    return min(BACKOFF_BASE * (2 ** min(attempts - 1, 20)), BACKOFF_CAP)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------- claim


def _not_mine(q: QueueTable, worker_id: str) -> ColumnElement[bool] | None:
    if not q.claimed_by:
        return None
    by = q.col(q.claimed_by)
    return or_(by.is_(None), by != worker_id[:WORKER_ID_LENGTH])


def _in_flight(q: QueueTable, now: datetime, lease: timedelta, *, live: bool) -> ColumnElement[bool]:
    """In flight under a lease that is still running (``live``) or that ran out."""
    if q.claimed_at:
        at = q.col(q.claimed_at)
        held = at >= now - lease if live else at < now - lease
    else:
        until = q.col(q.next_attempt_at)
        held = until > now if live else until <= now
    return and_(q.col(q.status) == IN_FLIGHT, held)


def _due(q: QueueTable, now: datetime, lease: timedelta, worker_id: str) -> ColumnElement[bool]:
    status, next_at = q.col(q.status), q.col(q.next_attempt_at)
    on_time = or_(next_at.is_(None), next_at <= now) if next_at.nullable else next_at <= now
    not_mine = _not_mine(q, worker_id)
    if not q.claimed_at and not_mine is None:
        # The lease is the next attempt time: a row whose lease ran out is simply due again.
        return and_(status.in_((*q.waiting_statuses, IN_FLIGHT)), on_time)
    waiting = status == PENDING if len(q.waiting_statuses) == 1 else status.in_(q.waiting_statuses)
    lost = _in_flight(q, now, lease, live=False)
    # another worker's rows whose lease ran out (never our own: they are being worked on right now)
    return or_(and_(waiting, on_time), lost if not_mine is None else and_(lost, not_mine))


def _busy(session: Session, q: QueueTable, worker_id: str, now: datetime, lease: timedelta) -> set[Hashable]:
    """Groups in flight in other workers under a live lease."""
    assert q.group_key is not None
    where = _in_flight(q, now, lease, live=True)
    not_mine = _not_mine(q, worker_id)
    if not_mine is not None:
        where = and_(where, not_mine)
    rows = session.execute(select(*[q.col(n) for n in q.group_columns]).where(where))
    return {q.group_key(dict(row._mapping)) for row in rows}


def claim(engine: Any, q: QueueTable, *, worker_id: str, limit: int, now: datetime,
          lease: timedelta | None = None) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due rows for ``worker_id`` (committed before returning).

    Returns each row's ``QueueTable.columns`` (plus ``id`` and ``attempts``, counted after a
    lost lease when the table says so), in claim order.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    now = utc_now(now)
    lease = q.lease if lease is None else lease
    t = q.table
    names = list(dict.fromkeys(("id", q.attempts, q.status, *q.columns, *q.group_columns)))
    with Session(engine) as session, session.begin():
        postgres = is_postgresql(session)
        if postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": q.lock_key})
        busy = _busy(session, q, worker_id, now, lease) if q.group_key is not None else set()
        stmt = (select(*[t.c[n] for n in names]).where(_due(q, now, lease, worker_id))
                .order_by(*[t.c[n] for n in q.order_by]).limit(limit))
        if postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        claimed: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
        for row in session.execute(stmt):
            values = dict(row._mapping)
            if busy and q.group_key is not None and any(k in busy for k in q.blocked_by(q.group_key(values))):
                continue
            if q.count_lost_lease and values[q.status] == IN_FLIGHT:  # its worker died: count the attempt
                values[q.attempts] += 1
                gone = values[q.attempts] >= MAX_ATTEMPTS
                lost.append({"b_id": values["id"], "b_attempts": values[q.attempts],
                             "b_status": DEAD if gone else IN_FLIGHT, "b_settled": now if gone else None})
                if gone:
                    continue
            claimed.append(values)
        conn = session.connection()
        if lost:
            note = f"its worker stopped while processing it (lease of {lease} ran out)"
            lost_values: dict[str, Any] = {q.attempts: bindparam("b_attempts"), q.status: bindparam("b_status"),
                                           q.last_error: note}
            if q.settled_at:
                lost_values[q.settled_at] = bindparam("b_settled", type_=q.col(q.settled_at).type)
            conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(lost_values), lost)
        claim_values: dict[str, Any] = {q.status: IN_FLIGHT}
        if q.claimed_by:
            claim_values[q.claimed_by] = worker_id[:WORKER_ID_LENGTH]
        if q.claimed_at:
            claim_values[q.claimed_at] = now
        else:
            claim_values[q.next_attempt_at] = now + lease
        for ids in chunks([values["id"] for values in claimed]):
            conn.execute(update(t).where(t.c.id.in_(ids)).values(claim_values))
    return claimed


# ---------------------------------------------------------------- settle


def settle(engine: Any, q: QueueTable, settlements: Iterable[Settlement], *, attempts: Mapping[int, int],
           now: datetime, worker_id: str | None = None, coalesce_keys: Mapping[int, str | None] | None = None,
           alongside: Callable[[Session], None] | None = None) -> SettleCounts:
    """Record what became of claimed rows, in one transaction; only rows still in flight (in
    ``worker_id``'s hands, when the table records who claimed) are written.

    ``attempts``: each claimed row's attempts when claimed. ``coalesce_keys``: their coalesce
    keys, for tables that coalesce. ``alongside(session)`` runs in the same transaction.
    The transaction is redone once when a coalescing race breaks the one-pending-row rule.
    """
    settlements = list(settlements)
    now = utc_now(now)
    if q.claimed_by and worker_id is None:
        raise ValueError(f"settling {q.table.name} rows needs the worker that claimed them")
    for attempt in (1, 2):
        try:
            with Session(engine) as session, session.begin():
                counts = _settle(session, q, settlements, attempts, now, worker_id or "", coalesce_keys or {})
                if alongside is not None:
                    alongside(session)
                return counts
        except IntegrityError:
            # Another transaction added a pending row with the same coalesce key between our
            # check and our update: check again.
            if attempt == 2 or not q.coalesce_key:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _settle(session: Session, q: QueueTable, settlements: list[Settlement], attempts: Mapping[int, int],
            now: datetime, worker_id: str, coalesce_keys: Mapping[int, str | None]) -> SettleCounts:
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    transient: list[dict[str, Any]] = []
    released: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    newer_rows = pending_with_keys(session, q, [coalesce_keys.get(s.row_id) for s in settlements
                                                if s.outcome is not Outcome.DONE]) if q.coalesce_key else {}
    superseded = 0
    for s in settlements:
        error = s.error[:ERROR_MAX_LENGTH] if s.error else None
        if s.outcome is Outcome.DONE:
            done.append({"b_id": s.row_id, "b_error": error, "b_result": s.result})
            continue
        key = coalesce_keys.get(s.row_id)
        newer = newer_rows.get(key) if key else None
        if newer is not None and newer != s.row_id:
            # A newer snapshot row with the same key is pending: it carries the current state.
            done.append({"b_id": s.row_id, "b_error": f"superseded by {q.table.name} row {newer}"
                         + (f" (last error: {error})" if error else ""), "b_result": None})
            superseded += 1
        elif s.outcome is Outcome.RELEASE:
            released.append({"b_id": s.row_id, "b_next": utc_now(s.retry_at) if s.retry_at else q.due_now(now)})
        elif s.outcome is Outcome.TRANSIENT:
            transient.append({"b_id": s.row_id, "b_error": error,
                              "b_next": utc_now(s.retry_at) if s.retry_at else now + TRANSIENT_DELAY})
        else:  # Outcome.FAILED
            count = attempts[s.row_id] + 1
            if count >= MAX_ATTEMPTS:
                dead.append({"b_id": s.row_id, "b_attempts": count, "b_error": error})
            else:
                failed.append({"b_id": s.row_id, "b_attempts": count, "b_error": error,
                               "b_next": now + backoff(count)})
    t = q.table
    mine = and_(t.c.id == bindparam("b_id"), q.col(q.status) == IN_FLIGHT)
    if q.claimed_by:
        mine = and_(mine, q.col(q.claimed_by) == worker_id[:WORKER_ID_LENGTH])
    next_at = bindparam("b_next", type_=q.col(q.next_attempt_at).type)
    error_at: Any = bindparam("b_error")
    conn = session.connection()
    if done:
        values = {q.status: DONE, q.last_error: error_at, **q.finished(now)}
        if q.result:
            values[q.result] = bindparam("b_result")
        conn.execute(update(t).where(mine).values(values), done)
    if failed:
        conn.execute(update(t).where(mine).values({
            q.status: q.failed_status, q.attempts: bindparam("b_attempts"), q.last_error: error_at,
            q.next_attempt_at: next_at, **q.unclaimed()}), failed)
    if transient:  # no attempt counted
        conn.execute(update(t).where(mine).values({
            q.status: PENDING, q.last_error: error_at, q.next_attempt_at: next_at, **q.unclaimed()}), transient)
    if released:  # without a verdict: attempts and last error stay as they were
        conn.execute(update(t).where(mine).values({q.status: PENDING, q.next_attempt_at: next_at,
                                                   **q.unclaimed()}), released)
    if dead:
        conn.execute(update(t).where(mine).values({
            q.status: DEAD, q.attempts: bindparam("b_attempts"), q.last_error: error_at, **q.finished(now)}), dead)
    return SettleCounts(done=len(done) - superseded, retrying=len(failed) + len(transient), dead=len(dead),
                        released=len(released), superseded=superseded)


def pending_with_keys(session: Session, q: QueueTable, keys: Iterable[str | None]) -> dict[str, int]:
    """The pending row holding each of these coalesce keys."""
    assert q.coalesce_key is not None
    column = q.col(q.coalesce_key)
    found: dict[str, int] = {}
    for wanted in chunks(sorted({k for k in keys if k})):
        rows = session.execute(select(column, q.table.c.id).where(column.in_(wanted), q.col(q.status) == PENDING))
        found.update({k: i for k, i in rows})
    return found


# ---------------------------------------------------------------- status and re-queueing


def count_by_status(session: Session, q: QueueTable) -> dict[str, int]:
    """Rows per status, every status of the table present (zeros included)."""
    status = q.col(q.status)
    counts = dict.fromkeys(q.statuses, 0)
    for value, count in session.execute(select(status, func.count()).group_by(status)):
        counts[value] = count
    return counts


def requeue(session: Session, q: QueueTable, *, ids: Iterable[int] | None = None,
            now: datetime | None = None) -> int:
    """Make dead rows, and rows waiting for their retry after a failure, due now with their
    attempts reset (the last error stays visible until the row is handled). The caller commits.

    ``ids`` limits it to those rows. On a coalescing table, a row whose key already has a
    newer pending row is marked done as superseded instead. Returns how many were re-queued.
    """
    now = utc_now(now)
    t, status = q.table, q.col(q.status)
    where = or_(status == DEAD, and_(status == q.failed_status, q.col(q.attempts) > 0))
    if ids is not None:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        where = and_(where, t.c.id.in_(wanted))
    values = {q.status: PENDING, q.attempts: 0, q.next_attempt_at: q.due_now(now), **q.unclaimed()}
    if q.settled_at:
        values[q.settled_at] = None
    if not q.coalesce_key:
        return session.execute(update(t).where(where).values(values)).rowcount or 0  # type: ignore[attr-defined]
    rows = session.execute(select(t.c.id, q.col(q.coalesce_key)).where(where).order_by(t.c.id)).all()
    pending = pending_with_keys(session, q, [key for _, key in rows])
    again: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    for row_id, key in rows:
        newer = pending.get(key) if key else None
        if newer is not None and newer != row_id:
            superseded.append({"b_id": row_id, "b_error": f"superseded by {t.name} row {newer}"})
        else:
            again.append({"b_id": row_id})
            if key:
                pending[key] = row_id
    conn = session.connection()
    by_id = t.c.id == bindparam("b_id")
    if again:
        conn.execute(update(t).where(by_id).values(values), again)
    if superseded:
        conn.execute(update(t).where(by_id).values({q.status: DONE, q.last_error: bindparam("b_error"),
                                                    **q.unclaimed()}), superseded)
    return len(again)
