"""Usage use cases: ingest batches of usage events, record one usage record, sum what was recorded.

An event is stored once per ``(source, transaction id)``: a resent event is a no-op (it is
reported as a duplicate and counts once). Its day is taken in the customer's timezone; the
bill run sums events per item and day and rates them in their usage window, and an event that
arrives for a window already billed is billed on the next run as a late-usage line
(docs/billing-rules.md §12 Usage and late usage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.storage import usage as usage_store
from billing_engine.storage.database import Session
from billing_engine.usage import (
    DEFAULT_MAX_AGE_DAYS,
    MAX_BATCH_EVENTS,
    EventError,
    ResolvedEvent,
    UsageEvent,
    check_usage,
    parse_event,
    resolve_event,
    usage_date,
)

ZERO = Decimal(0)

#: The source of events sent through the API and ``billsync usage import``: one namespace of
#: transaction ids, so an event sent both ways counts once.
EVENT_SOURCE = "events"

ACCEPTED, DUPLICATE, ERROR = "accepted", "duplicate", "error"


@dataclass(frozen=True, slots=True)
class EventResult:
    """What became of the event at ``index`` of the batch: ``accepted`` (stored now),
    ``duplicate`` (its transaction id was stored before, or earlier in the batch: it counts
    once), or ``error`` (nothing stored; ``errors`` names each field and the problem)."""

    index: int
    status: str
    transaction_id: str | None
    errors: tuple[EventError, ...] = ()


@dataclass(frozen=True)
class IngestResult:
    results: tuple[EventResult, ...]

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def accepted(self) -> int:
        return self._count(ACCEPTED)

    @property
    def duplicates(self) -> int:
        return self._count(DUPLICATE)

    @property
    def failed(self) -> int:
        return self._count(ERROR)


def ingest_usage_events(session: Session, events: Sequence[object], *, now: datetime,
                        max_age_days: int = DEFAULT_MAX_AGE_DAYS, source: str = EVENT_SOURCE) -> IngestResult:
    """Validate and store a batch of up to ``MAX_BATCH_EVENTS`` usage events; one result per event.

    Each event is a mapping with ``transaction_id``, ``subscription_id`` or ``customer_id``,
    ``metric`` (the product code of a usage item of the subscription), ``quantity`` (≥ 0) and
    ``timestamp`` (ISO 8601 with an offset, between ``now − max_age_days`` and a few minutes
    after ``now``). The valid events are stored even when others fail. A fixed number of
    statements per batch: the subscriptions and customers the batch names are read once, the
    events written in one statement on PostgreSQL. Raises ``InvalidInputError`` only for the
    batch itself (not a list, empty, too long)."""
    if now.tzinfo is None:
        raise InvalidInputError("now", "a timezone-aware datetime is required")
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise InvalidInputError("events", "must be a list of events")
    if not events:
        raise InvalidInputError("events", "no events")
    if len(events) > MAX_BATCH_EVENTS:
        raise InvalidInputError("events", f"at most {MAX_BATCH_EVENTS} events per batch, got {len(events)}")
    parsed = [parse_event(raw, now, max_age_days) for raw in events]
    valid = [p for p in parsed if isinstance(p, UsageEvent)]
    subjects = _subjects(session, valid)
    results: list[EventResult | None] = [None] * len(events)
    to_store: dict[str, tuple[int, ResolvedEvent]] = {}
    for index, event in enumerate(parsed):
        if not isinstance(event, UsageEvent):
            results[index] = EventResult(index, ERROR, _transaction_id(events[index]), tuple(event))
            continue
        resolved = resolve_event(event, subjects.subscriptions, subjects.by_customer, subjects.timezones,
                                 subjects.memos)
        if isinstance(resolved, EventError):
            results[index] = EventResult(index, ERROR, event.transaction_id, (resolved,))
        elif resolved.transaction_id in to_store:
            results[index] = EventResult(index, DUPLICATE, event.transaction_id)
        else:
            to_store[resolved.transaction_id] = (index, resolved)
    if to_store:
        usage_store.ensure_partitions(session, {r.occurred_on for _, r in to_store.values()})
        stored = usage_store.insert_events(session, source, [
            usage_store.NewEvent(r.transaction_id, r.subscription_id, r.item_id, r.quantity, r.occurred_at,
                                 r.occurred_on) for _, r in to_store.values()], now)
        for key, (index, _) in to_store.items():
            results[index] = EventResult(index, ACCEPTED if key in stored else DUPLICATE, key)
    return IngestResult(tuple(r for r in results if r is not None))


def _transaction_id(raw: object) -> str | None:
    value = raw.get("transaction_id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) else None


def _subjects(session: Session, events: Sequence[UsageEvent]) -> usage_store.UsageSubjects:
    """The subscriptions the events name (by id), every subscription of the customers they name,
    and the timezone of every customer involved: read once per batch."""
    return usage_store.usage_subjects(
        session, sorted({e.subscription_id for e in events if e.subscription_id is not None}),
        sorted({e.customer_id for e in events if e.customer_id is not None}))


@dataclass(frozen=True)
class UsageResult:
    usage_id: int
    created: bool


def record_usage(session: Session, *, subscription_id: str, item_id: str, quantity: object, occurred_at: datetime,
                 source: str, idempotency_key: str, timezone: str = "UTC", now: datetime | None = None) -> UsageResult:
    """Store one usage record for a known subscription item once per (source, idempotency key); a
    resent record is a no-op. Its day is ``occurred_at`` in ``timezone`` (the customer's)."""
    usage = check_usage(item_id, quantity, occurred_at, source, idempotency_key)
    now = now or occurred_at.astimezone(UTC)
    on = usage_date(occurred_at, timezone)
    usage_store.ensure_partitions(session, [on])
    stored = usage_store.insert_events(session, source, [usage_store.NewEvent(
        idempotency_key, subscription_id, usage.item_id, usage.quantity, occurred_at, on)], now)
    if idempotency_key in stored:
        return UsageResult(stored[idempotency_key], True)
    existing = usage_store.find_event_id(session, source, idempotency_key)
    if existing is None:  # pragma: no cover - the key conflicted, so it exists
        raise RuntimeError(f"usage key {source}/{idempotency_key} conflicted but is not stored")
    return UsageResult(existing, False)


@dataclass(frozen=True)
class PartitionsPrepared:
    created: list[date]
    moved: int


def prepare_usage_partitions(session: Session, through: date) -> PartitionsPrepared:
    """Create the usage events' monthly partitions through ``through``'s month, and move events
    that landed in the default partition into their month's partition (PostgreSQL; nothing to do
    on SQLite)."""
    report = usage_store.prepare_partitions(session, through)
    return PartitionsPrepared(report.created, report.moved)


def usage_quantities(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                     before: date, period_start_for: Callable[[str, date], date]) -> dict[tuple[str, date], Decimal]:
    """Σ recorded usage of a subscription per (item, period start) for charges_due."""
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, on, quantity in usage_store.usage_totals(session, subscription_id, item_ids, on_or_after, before):
        key = (item_id, period_start_for(item_id, on))
        totals[key] = totals.get(key, ZERO) + quantity
    return totals
