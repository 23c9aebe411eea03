"""Usage use cases: record a usage record once, and sum what was recorded.

A record is stored once per ``(source, idempotency key)``: a resent record is a no-op.
Its day is taken in the customer's timezone; the bill run rates it in its usage window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from billing_engine.storage import database
from billing_engine.storage import usage as usage_store
from billing_engine.storage.database import Session
from billing_engine.usage import check_usage, usage_date

ZERO = Decimal(0)


@dataclass(frozen=True)
class UsageResult:
    usage_id: int
    created: bool


def record_usage(session: Session, *, subscription_id: str, item_id: str, quantity: object, occurred_at: datetime, source: str,
                 idempotency_key: str, timezone: str = "UTC", now: datetime | None = None) -> UsageResult:
    """Store a usage record once per (source, idempotency key); a resent record is a no-op."""
    usage = check_usage(item_id, quantity, occurred_at, source, idempotency_key)
    now = now or occurred_at.astimezone(UTC)
    existing = usage_store.find_usage(session, source, idempotency_key)
    if existing is not None:
        return UsageResult(existing.id, False)
    try:
        with session.begin_nested():
            usage_id = database.insert_returning_id(session, usage_store.UsageRecord, {
                "subscription_id": subscription_id, "subscription_item_id": usage.item_id, "quantity": usage.quantity, "occurred_at": occurred_at,
                "occurred_on": usage_date(occurred_at, timezone), "source": source,
                "idempotency_key": idempotency_key, "recorded_at": now})
    except database.IntegrityError:
        existing = usage_store.find_usage(session, source, idempotency_key)
        if existing is None:  # pragma: no cover
            raise
        return UsageResult(existing.id, False)
    return UsageResult(usage_id, True)


def usage_quantities(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                     before: date, period_start_for: Callable[[str, date], date]) -> dict[tuple[str, date], Decimal]:
    """Σ recorded usage of a subscription per (item, period start) for charges_due."""
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, on, quantity in usage_store.usage_totals(session, subscription_id, item_ids, on_or_after, before):
        key = (item_id, period_start_for(item_id, on))
        totals[key] = totals.get(key, ZERO) + quantity
    return totals
