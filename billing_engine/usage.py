"""Usage records and usage events: validation, metrics and aggregation per billing period (pure).

Rules (docs/billing-rules.md §12 Usage and late usage):
- a usage record is a quantity for a subscription item at a moment, with an
  idempotency key unique per source: a resent record has no effect;
- usage is billed in arrears, at the end of its period; the record's date is
  taken in the customer's timezone (``usage_date``);
- usage that arrives after its period was billed is billed on the next invoice
  as its own line dated to its period (the charge key of that line differs from
  the first one; ``billing_engine.charges`` draws it).

A **usage event** is what a metering system sends (docs/usage.md): a subscription (or
a customer), a **metric**, a quantity, a timestamp and a transaction id. The metric is
the product code of a usage-priced item of the subscription: an event for metric
``api_calls`` counts on the subscription's item whose price is a ``usage`` price of the
product coded ``api_calls`` on the event's date. ``parse_event`` checks an event's own
fields and its timestamp window; ``resolve_event`` finds its subscription item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing_engine.catalog import ChargeType
from billing_engine.errors import InvalidInputError
from billing_engine.money import to_decimal
from billing_engine.subscriptions import Subscription, Version

MAX_KEY_LENGTH = 200

#: The most events one batch may carry.
MAX_BATCH_EVENTS = 1000
#: How far after ``now`` an event's timestamp may be (the sender's clock may run ahead).
CLOCK_SKEW = timedelta(minutes=5)
#: How old an event may be by default (Stripe's meter events: 35 days).
DEFAULT_MAX_AGE_DAYS = 35
#: Quantities: at most this many decimals, and below ``MAX_QUANTITY``.
MAX_QUANTITY_DECIMALS = 9
MAX_QUANTITY = Decimal(10) ** 15
MAX_ID_LENGTH = 64
#: ``resolve_event`` keeps at most this many (day, metric) results per subscription.
MEMO_ENTRIES = 64


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


# ------------------------------------------------------------------ usage events


@dataclass(frozen=True, slots=True)
class EventError:
    """What is wrong with one field of an event."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """An event whose own fields are valid (``parse_event``); not resolved to an item yet."""

    transaction_id: str
    subscription_id: str | None
    customer_id: str | None
    metric: str
    quantity: Decimal
    occurred_at: datetime


def _text(raw: Mapping[str, object], name: str, errors: list[EventError], *, limit: int,
          required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(EventError(name, "is required"))
        return None
    if not isinstance(value, str):
        errors.append(EventError(name, f"must be a string, got {type(value).__name__}"))
        return None
    if len(value) > limit:
        errors.append(EventError(name, f"is longer than {limit} characters"))
        return None
    return value


def parse_quantity(value: object) -> Decimal:
    """A usage quantity: a decimal ≥ 0 (integer or decimal string, never a float), below
    ``MAX_QUANTITY`` with at most ``MAX_QUANTITY_DECIMALS`` decimals."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInputError("quantity", "is required")
    if isinstance(value, float):
        raise InvalidInputError("quantity", f"{value!r} is a float; send an integer or a decimal string")
    quantity = to_decimal(value, "quantity")
    if quantity < 0:
        raise InvalidInputError("quantity", f"must not be negative, got {quantity}")
    if quantity >= MAX_QUANTITY:
        raise InvalidInputError("quantity", f"must be below {MAX_QUANTITY:,}, got {quantity}")
    if quantity != quantity.quantize(Decimal(1).scaleb(-MAX_QUANTITY_DECIMALS)):
        raise InvalidInputError("quantity", f"has more than {MAX_QUANTITY_DECIMALS} decimals: {quantity}")
    return quantity


def parse_timestamp(value: object, now: datetime, max_age_days: int) -> datetime:
    """An ISO 8601 moment with its UTC offset, in ``[now − max_age_days, now + CLOCK_SKEW]``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInputError("timestamp", "is required")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInputError("timestamp", f"{value!r} is not an ISO 8601 date and time "
                                                 "(e.g. 2026-12-05T10:00:00Z)") from None
    else:
        raise InvalidInputError("timestamp", f"must be an ISO 8601 string, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError("timestamp", f"{value!s} has no UTC offset; add one (Z, +02:00, …)")
    if moment > now + CLOCK_SKEW:
        raise InvalidInputError("timestamp", f"{value!s} is in the future (later than {_minutes(CLOCK_SKEW)} "
                                             "after now)")
    if moment < now - timedelta(days=max_age_days):
        raise InvalidInputError("timestamp", f"{value!s} is more than {max_age_days} days old; "
                                             "older usage is not accepted")
    return moment


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


def _plain(value: object, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and bool(value.strip())


def _parse_well_formed(raw: Mapping[str, object], now: datetime, max_age_days: int) -> UsageEvent | None:
    """The usual event, checked in one pass: every field present and valid, and exactly one of
    ``subscription_id`` and ``customer_id``. None as soon as anything is off (``parse_event`` then
    checks the event field by field to name every problem)."""
    get = raw.get
    transaction_id, metric = get("transaction_id"), get("metric")
    subscription_id, customer_id = get("subscription_id"), get("customer_id")
    if not (_plain(transaction_id, MAX_KEY_LENGTH) and _plain(metric, MAX_ID_LENGTH)):
        return None
    if not ((customer_id is None and _plain(subscription_id, MAX_ID_LENGTH))
            or (subscription_id is None and _plain(customer_id, MAX_ID_LENGTH))):
        return None
    try:
        quantity = parse_quantity(get("quantity"))
        occurred_at = parse_timestamp(get("timestamp"), now, max_age_days)
    except InvalidInputError:
        return None
    return UsageEvent(transaction_id, subscription_id, customer_id, metric,  # type: ignore[arg-type]  # checked
                      quantity, occurred_at)


def parse_event(raw: object, now: datetime, max_age_days: int = DEFAULT_MAX_AGE_DAYS) -> UsageEvent | list[EventError]:
    """Check one event's own fields (every problem, one per field); ``now`` is tz-aware."""
    if not isinstance(raw, Mapping):
        return [EventError("", "an event must be an object")]
    event = _parse_well_formed(raw, now, max_age_days)
    if event is not None:
        return event
    errors: list[EventError] = []
    transaction_id = _text(raw, "transaction_id", errors, limit=MAX_KEY_LENGTH)
    subscription_id = _text(raw, "subscription_id", errors, limit=MAX_ID_LENGTH, required=False)
    customer_id = _text(raw, "customer_id", errors, limit=MAX_ID_LENGTH, required=False)
    if subscription_id is None and customer_id is None and not any(
            e.field in ("subscription_id", "customer_id") for e in errors):
        errors.append(EventError("subscription_id", "give subscription_id or customer_id"))
    elif subscription_id is not None and customer_id is not None:
        errors.append(EventError("customer_id", "give subscription_id or customer_id, not both"))
    metric = _text(raw, "metric", errors, limit=MAX_ID_LENGTH)
    quantity = occurred_at = None
    try:
        quantity = parse_quantity(raw.get("quantity"))
    except InvalidInputError as exc:
        errors.append(EventError("quantity", exc.reason))
    try:
        occurred_at = parse_timestamp(raw.get("timestamp"), now, max_age_days)
    except InvalidInputError as exc:
        errors.append(EventError("timestamp", exc.reason))
    if errors:
        return errors
    return UsageEvent(transaction_id, subscription_id, customer_id, metric,  # type: ignore[arg-type]  # checked
                      quantity, occurred_at)  # type: ignore[arg-type]


def metric_items(subscription: Subscription, metric: str, day: date) -> list[str]:
    """The ids of the subscription's usage items billing ``metric`` (their product's code) on ``day``;
    empty when the subscription is not running that day."""
    version = subscription.version_on(day)
    return [] if version is None else _usage_items(version, metric)


def _usage_items(version: Version, metric: str) -> list[str]:
    return [item.item_id for item in version.items.values()
            if item.price.charge_type is ChargeType.USAGE and item.price.product.code == metric]


def _subscription_item(sub: Subscription, metric: str, day: date) -> str | EventError:
    """The id of the one usage item of ``sub`` metering ``metric`` on ``day``, else the problem."""
    version = sub.version_on(day)
    if version is None:
        end = sub.ends_before
        span = f"from {sub.starts_on.isoformat()}" + (f" until {end.isoformat()} (excluded)" if end else "")
        return EventError("timestamp", f"subscription {sub.subscription_id} does not run on {day.isoformat()} "
                                       f"(it runs {span})")
    items = _usage_items(version, metric)
    if not items:
        return EventError("metric", f"subscription {sub.subscription_id} has no usage item with metric "
                                    f"{metric!r} on {day.isoformat()}")
    if len(items) > 1:
        return EventError("metric", f"subscription {sub.subscription_id} has {len(items)} usage items with "
                                    f"metric {metric!r} on {day.isoformat()} ({', '.join(sorted(items))})")
    return items[0]


@dataclass(frozen=True, slots=True)
class ResolvedEvent:
    """An event with its subscription item and its date in the customer's timezone."""

    transaction_id: str
    subscription_id: str
    item_id: str
    quantity: Decimal
    occurred_at: datetime
    occurred_on: date


def resolve_event(event: UsageEvent, subscriptions: Mapping[str, Subscription],
                  customer_subscriptions: Mapping[str, Sequence[Subscription]],
                  timezones: Mapping[str, str],
                  memos: Mapping[str, dict[tuple[date, str], str | EventError]] | None = None,
                  ) -> ResolvedEvent | EventError:
    """The subscription item an event counts on.

    ``subscriptions``: by id; ``customer_subscriptions``: every subscription of each customer;
    ``timezones``: each customer's IANA timezone (the event's date is taken there). A
    subscription event needs a usage item for its metric on that date; a customer event
    needs exactly one subscription of the customer with one. ``memos``: per subscription id, a
    dict for that very subscription (unchanged), where the item (or the problem) found per day
    and metric is kept, at most ``MEMO_ENTRIES`` of them.
    """
    if event.subscription_id is not None:
        sub = subscriptions.get(event.subscription_id)
        if sub is None:
            return EventError("subscription_id", f"unknown subscription {event.subscription_id!r}")
        day = usage_date(event.occurred_at, timezones.get(sub.customer_id, "UTC"))
        key = (day, event.metric)
        memo = memos.get(sub.subscription_id) if memos is not None else None
        item = memo.get(key) if memo is not None else None
        if item is None:
            item = _subscription_item(sub, event.metric, day)
            if memo is not None and len(memo) < MEMO_ENTRIES:
                memo[key] = item
        if isinstance(item, EventError):
            return item
        return ResolvedEvent(event.transaction_id, sub.subscription_id, item, event.quantity, event.occurred_at, day)
    customer_id = event.customer_id or ""
    if customer_id not in timezones:
        return EventError("customer_id", f"unknown customer {customer_id!r}")
    day = usage_date(event.occurred_at, timezones[customer_id])
    found = [(sub, items) for sub in customer_subscriptions.get(customer_id, ())
             if (items := metric_items(sub, event.metric, day))]
    if not found:
        return EventError("metric", f"customer {customer_id} has no subscription with a usage item with metric "
                                    f"{event.metric!r} on {day.isoformat()}")
    if len(found) > 1 or len(found[0][1]) > 1:
        names = ", ".join(sorted(sub.subscription_id for sub, _ in found))
        return EventError("customer_id", f"customer {customer_id} has more than one usage item with metric "
                                         f"{event.metric!r} on {day.isoformat()} ({names}); send subscription_id")
    sub, items = found[0]
    return ResolvedEvent(event.transaction_id, sub.subscription_id, items[0], event.quantity, event.occurred_at, day)
