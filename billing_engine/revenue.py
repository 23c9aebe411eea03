"""Revenue metrics: MRR / ARR, monthly movements and the MRR bridge (pure).

Rules (docs/billing-rules.md §17 Revenue metrics: MRR and ARR):
- item MRR = recurring amount normalised to a month (monthly ×1, quarterly ÷3,
  yearly ÷12, weekly ×52/12), after discounts, excluding tax, one-time charges
  and usage (usage revenue is reported apart). It keeps full precision.
- customer MRR = Σ item MRR, rounded half up to the currency's minor unit;
  totals = Σ rounded customer MRR (three 100/year items on one customer → 25.00;
  on three customers → 3 × 8.33 = 24.99).
- customer ARR = Σ item MRR × 12, rounded half up once: the yearly amount, not a
  rounded MRR × 12 (29,000/year → ARR 29,000.00, MRR 2,416.67); totals = Σ customer ARR.
- movements per customer between consecutive measurement dates: new (0 → >0,
  first time), reactivation (0 → >0 after an earlier churn), expansion (up),
  contraction (down, still >0), churn (>0 → 0). A customer is churned, and later
  reactivated, only if it had MRR > 0 at an earlier measurement date.
- the bridge holds exactly: opening + new + expansion + reactivation
  − contraction − churn = closing, every month and every currency.

MRR has no exchange rate: every figure is per currency.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money

ZERO = Decimal(0)
_PER_MONTH = {"month": Decimal(1), "quarter": Decimal(1) / 3, "year": Decimal(1) / 12,
              "week": Decimal(52) / 12}
MOVEMENT_KINDS = ("new", "expansion", "reactivation", "contraction", "churn")

CustomerKey = tuple[str, str]  # (customer id, currency)


def monthly_amount(amount: Decimal, interval: str, interval_count: int = 1) -> Decimal:
    """A recurring amount per ``interval_count × interval`` as a full-precision monthly amount."""
    if interval not in _PER_MONTH:
        raise InvalidInputError("interval", f"unknown interval {interval!r}")
    if interval_count < 1:
        raise InvalidInputError("interval_count", "must be at least 1")
    if interval == "month":
        return amount / interval_count
    if interval == "year":
        return amount / (12 * interval_count)
    if interval == "quarter":
        return amount / (3 * interval_count)
    return amount * 52 / (12 * interval_count)


@dataclass(frozen=True, slots=True)
class ItemMrr:
    """One subscription item's contribution on a date (full precision)."""

    customer_id: str
    subscription_id: str
    item_id: str
    currency: str
    mrr: Decimal


def _monthly_sums(items: Iterable[ItemMrr]) -> dict[CustomerKey, Decimal]:
    sums: dict[CustomerKey, Decimal] = {}
    for item in items:
        key = (item.customer_id, item.currency)
        sums[key] = sums.get(key, ZERO) + item.mrr
    return sums


def customer_mrr(items: Iterable[ItemMrr]) -> dict[CustomerKey, Decimal]:
    """Σ item MRR per (customer, currency), rounded half up once per customer."""
    return {key: round_money(value, key[1]) for key, value in _monthly_sums(items).items()}


def annual_amount(monthly: Decimal, currency: str) -> Decimal:
    """ARR from an **unrounded** monthly amount: × 12, rounded half up once (29,000/year is a
    monthly 2,416.666…, so 29,000.00, where the rounded MRR 2,416.67 × 12 would be 29,000.04)."""
    return round_money(monthly * 12, currency)


def customer_arr(items: Iterable[ItemMrr]) -> dict[CustomerKey, Decimal]:
    """Σ item MRR × 12 per (customer, currency), rounded half up once per customer."""
    return {key: annual_amount(value, key[1]) for key, value in _monthly_sums(items).items()}


def total_mrr(customers: Mapping[CustomerKey, Decimal]) -> dict[str, Decimal]:
    """Σ rounded customer MRR per currency."""
    totals: dict[str, Decimal] = {}
    for (_, currency), value in customers.items():
        totals[currency] = totals.get(currency, ZERO) + value
    return totals


def classify(before: Decimal, after: Decimal, *, had_mrr_before: bool) -> str | None:
    """The movement of one customer between two measurement dates, or ``None``.

    ``had_mrr_before``: MRR > 0 at some measurement date before ``before``'s
    (or at it) — which makes 0 → >0 a reactivation rather than new.
    """
    if before == after:
        return None
    if before == 0:
        return "reactivation" if had_mrr_before else "new"
    if after == 0:
        return "churn"
    return "expansion" if after > before else "contraction"


@dataclass(frozen=True, slots=True)
class Movement:
    period: str  # e.g. "2026-03"
    customer_id: str
    currency: str
    kind: str
    before: Decimal
    after: Decimal

    @property
    def amount(self) -> Decimal:
        """Signed change (churn and contraction negative)."""
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class BridgeRow:
    period: str
    currency: str
    opening: Decimal
    new: Decimal
    expansion: Decimal
    reactivation: Decimal
    contraction: Decimal  # positive magnitude
    churn: Decimal  # positive magnitude
    closing: Decimal
    customers: int  # customers with MRR > 0 at closing
    arr: Decimal  # Σ customer ARR at closing (each from its unrounded MRR, see ``annual_amount``)
    movers: dict[str, int] = field(default_factory=dict)  # customers per movement kind (every kind present)

    def holds(self) -> bool:
        return (self.opening + self.new + self.expansion + self.reactivation
                - self.contraction - self.churn) == self.closing

    def as_row(self) -> dict[str, str]:
        """Strings for CSV/JSON (exact decimals, never floats)."""
        return {"month": self.period, "currency": self.currency, "opening": str(self.opening),
                "new": str(self.new), "expansion": str(self.expansion),
                "reactivation": str(self.reactivation), "contraction": str(self.contraction),
                "churn": str(self.churn), "closing": str(self.closing), "arr": str(self.arr),
                "customers": str(self.customers)}


def movements_and_bridge(
    opening: Mapping[CustomerKey, Decimal],
    periods: Sequence[tuple[str, Mapping[CustomerKey, Decimal]]],
    *,
    had_mrr_before: Iterable[CustomerKey] = (),
    closing_arr: Sequence[Mapping[CustomerKey, Decimal]] | None = None,
) -> tuple[list[Movement], list[BridgeRow]]:
    """Movements and bridge rows for consecutive measurements.

    ``opening`` is rounded customer MRR at the opening date; ``periods`` are
    ``(label, rounded customer MRR at the period's closing date)`` in order;
    ``had_mrr_before`` are the customers with MRR > 0 at a measurement date before
    the opening one (so a return in range counts as reactivation); ``closing_arr``,
    per period, customer ARR at its closing date (``customer_arr``; without it, ARR is
    the closing MRR × 12, all that rounded MRR can tell).
    """
    ever = {key for key, value in opening.items() if value > 0} | set(had_mrr_before)
    currencies = sorted({key[1] for key in opening} | {key[1] for _, snap in periods for key in snap})
    moves: list[Movement] = []
    rows: list[BridgeRow] = []
    before = dict(opening)
    for index, (label, after) in enumerate(periods):
        annual = closing_arr[index] if closing_arr is not None else {key: value * 12 for key, value in after.items()}
        sums = {c: dict.fromkeys(MOVEMENT_KINDS, ZERO) for c in currencies}
        counts = {c: dict.fromkeys(MOVEMENT_KINDS, 0) for c in currencies}
        for key in sorted(set(before) | set(after)):
            b, a = before.get(key, ZERO), after.get(key, ZERO)
            kind = classify(b, a, had_mrr_before=key in ever)
            if kind is None:
                continue
            moves.append(Movement(label, key[0], key[1], kind, b, a))
            sums[key[1]][kind] += abs(a - b)
            counts[key[1]][kind] += 1
        for key, value in after.items():
            if value > 0:
                ever.add(key)
        opening_totals, closing_totals = total_mrr(before), total_mrr(after)
        for currency in currencies:
            s = sums[currency]
            row = BridgeRow(
                period=label, currency=currency, opening=opening_totals.get(currency, ZERO),
                new=s["new"], expansion=s["expansion"], reactivation=s["reactivation"],
                contraction=s["contraction"], churn=s["churn"], closing=closing_totals.get(currency, ZERO),
                customers=sum(1 for k, v in after.items() if k[1] == currency and v > 0),
                arr=total_mrr(annual).get(currency, ZERO), movers=counts[currency],
            )
            if not row.holds():  # pragma: no cover - guarded by construction
                raise AssertionError(f"MRR bridge does not hold for {label} {currency}")
            rows.append(row)
        before = dict(after)
    return moves, rows


def bridge_from_series(
    labels: Sequence[str],
    series: Iterable[tuple[Any, ...]],
    *,
    collect_movements: bool = True,
) -> tuple[list[Movement], list[BridgeRow]]:
    """The bridge from one customer at a time (flat memory in the number of customers).

    Each item is ``(customer key, had MRR > 0 before the opening date, values)`` where
    ``values[0]`` is rounded customer MRR at the opening date and ``values[i]`` at the
    close of ``labels[i - 1]``. Same result as ``movements_and_bridge``. An item may carry a
    fourth element, a weight ``n``: it then stands for ``n`` customers with the same values
    (only without ``collect_movements``, which needs every customer); and a fifth, the
    customer's ARR at the same dates (``annual_amount`` of its unrounded MRR; without it,
    ARR is the rounded MRR × 12).
    """
    n = len(labels)
    sums: dict[str, list[dict[str, Decimal]]] = {}
    movers: dict[str, list[dict[str, int]]] = {}
    # Opening/closing totals and counts as a level at the opening date plus the changes at each
    # later date: a customer costs O(its changes), not O(months).
    level: dict[str, list[Any]] = {}  # currency → [Σ MRR at the opening date, count > 0]
    delta: dict[str, list[Decimal]] = {}
    count_delta: dict[str, list[int]] = {}
    arr_level: dict[str, Decimal] = {}  # currency → Σ ARR at the opening date
    arr_delta: dict[str, list[Decimal]] = {}
    moves: list[Movement] = []
    for entry in series:
        key, had_before, values = entry[0], entry[1], entry[2]
        weight = entry[3] if len(entry) > 3 else 1
        annual = entry[4] if len(entry) > 4 else [value * 12 for value in values]
        if weight != 1 and collect_movements:
            raise ValueError("weighted series give no per-customer movements")
        currency = key[1]
        if currency not in sums:
            sums[currency] = [dict.fromkeys(MOVEMENT_KINDS, ZERO) for _ in range(n)]
            movers[currency] = [dict.fromkeys(MOVEMENT_KINDS, 0) for _ in range(n)]
            level[currency] = [ZERO, 0]
            delta[currency], count_delta[currency] = [ZERO] * (n + 1), [0] * (n + 1)
            arr_level[currency], arr_delta[currency] = ZERO, [ZERO] * (n + 1)
        first = values[0]
        acc = level[currency]
        acc[0] += first * weight
        acc[1] += (first > 0) * weight
        first_arr = annual[0]
        arr_level[currency] += first_arr * weight
        if annual.count(first_arr) != len(annual):
            changes = arr_delta[currency]
            for i in range(1, n + 1):
                if annual[i] != annual[i - 1]:
                    changes[i] += (annual[i] - annual[i - 1]) * weight
        if values.count(first) == len(values):  # no movement in the whole range
            continue
        ever = had_before or first > 0
        b = first
        for i in range(n):
            a = values[i + 1]
            if a != b:
                delta[currency][i + 1] += (a - b) * weight
                count_delta[currency][i + 1] += ((a > 0) - (b > 0)) * weight
                kind = classify(b, a, had_mrr_before=ever)
                sums[currency][i][kind] += abs(a - b) * weight
                movers[currency][i][kind] += weight
                if collect_movements:
                    moves.append(Movement(labels[i], key[0], currency, kind, b, a))
            if a > 0:
                ever = True
            b = a
    rows = []
    running = {currency: (acc[0], acc[1]) for currency, acc in level.items()}
    annual_running = dict(arr_level)
    for i, label in enumerate(labels):
        for currency in sorted(sums):
            opening, opening_count = running[currency]
            closing, closing_count = opening + delta[currency][i + 1], opening_count + count_delta[currency][i + 1]
            running[currency] = (closing, closing_count)
            annual_running[currency] += arr_delta[currency][i + 1]
            s = sums[currency][i]
            row = BridgeRow(period=label, currency=currency, opening=opening, new=s["new"],
                            expansion=s["expansion"], reactivation=s["reactivation"],
                            contraction=s["contraction"], churn=s["churn"], closing=closing,
                            customers=closing_count, arr=annual_running[currency], movers=movers[currency][i])
            if not row.holds():  # pragma: no cover - guarded by construction
                raise AssertionError(f"MRR bridge does not hold for {label} {currency}")
            rows.append(row)
    return moves, rows


# ---------------------------------------------------------------- months


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-03"`` → ``(2026, 3)``."""
    try:
        year_text, month_text = text.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        raise InvalidInputError("month", f"{text!r} is not YYYY-MM") from None
    if not 1 <= month <= 12 or year < 1900:
        raise InvalidInputError("month", f"{text!r} is not YYYY-MM")
    return year, month


def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def month_range(from_month: str, to_month: str) -> list[tuple[str, date]]:
    """``(label, last day)`` for each month from ``from_month`` to ``to_month`` inclusive."""
    y, m = parse_month(from_month)
    end = parse_month(to_month)
    if (y, m) > end:
        raise InvalidInputError("to", f"{to_month} is before {from_month}")
    out = []
    while (y, m) <= end:
        out.append((f"{y:04d}-{m:02d}", month_end(y, m)))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def previous_month_end(from_month: str) -> date:
    y, m = parse_month(from_month)
    y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return month_end(y, m)
