"""Usage records: validation and aggregation per billing period (pure).

Rules (docs/billing-rules.md §12 Usage and late usage):
- a usage record is a quantity for a subscription item at a moment, with an
  idempotency key unique per source: a resent record has no effect;
- usage is billed in arrears, at the end of its period; the record's date is
  taken in the customer's timezone (``usage_date``);
- usage that arrives after its period was billed is billed on the next invoice
  as its own line dated to its period (the charge key of that line differs from
  the first one; ``billing_engine.charges`` draws it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing_engine.errors import InvalidInputError
from billing_engine.money import to_decimal

MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class UsageInput:
    item_id: str
    quantity: Decimal
    occurred_at: datetime
    source: str
    idempotency_key: str


def check_usage(item_id: object, quantity: object, occurred_at: object, source: object,
                idempotency_key: object) -> UsageInput:
    """Validate a usage record, naming the wrong field."""
    if not isinstance(item_id, str) or not item_id:
        raise InvalidInputError("item_id", "a subscription item id is required")
    qty = to_decimal(quantity, "quantity")
    if qty < 0:
        raise InvalidInputError("quantity", f"usage cannot be negative, got {qty}")
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        raise InvalidInputError("occurred_at", "a timezone-aware datetime is required")
    for name, value in (("source", source), ("idempotency_key", idempotency_key)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(name, "is required")
        if len(value) > MAX_KEY_LENGTH:
            raise InvalidInputError(name, f"longer than {MAX_KEY_LENGTH} characters")
    return UsageInput(item_id, qty, occurred_at, source, idempotency_key)  # type: ignore[arg-type]  # checked above


def usage_date(occurred_at: datetime, timezone: str = "UTC") -> date:
    """The calendar date of a usage moment in the customer's timezone."""
    if occurred_at.tzinfo is None:
        raise InvalidInputError("occurred_at", "a timezone-aware datetime is required")
    return occurred_at.astimezone(ZoneInfo(timezone)).date()


def aggregate_usage(
    records: Iterable[tuple[str, Decimal, date]], period_start_for: Callable[[str, date], date]
) -> dict[tuple[str, date], Decimal]:
    """Σ quantity per (item id, start of the period containing the record's date)."""
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, quantity, on in records:
        key = (item_id, period_start_for(item_id, on))
        totals[key] = totals.get(key, Decimal(0)) + quantity
    return totals
