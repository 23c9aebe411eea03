"""The MRR forecast (docs/intelligence.md, MRR forecast): the next 12 month ends' contracted MRR from
the subscriptions, and the expected MRR with a band from the installation's own churn and
expansion; per currency and in the reporting currency. Each month's forecast is stored once
(``store_forecast``) so that ``forecast_accuracy`` can compare it with what happened.

The contracted MRR is the MRR bridge's closing of the months ahead (``revenue.mrr_bridge_months``,
kept in ``mrr_month_ends`` 60 months ahead), which already holds the terms, automatic renewals and
their uplifts, terms that end without renewal, recorded cancellations and amendments dated ahead.
The history is the same bridge's complete months before the forecast's first month. The
arithmetic is ``billing_engine.forecast``'s (pure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.exchange_rates import RateSet, convert_total
from billing_engine.forecast import (
    HORIZON_MONTHS,
    ForecastMonth,
    Rates,
    absolute_percentage_error,
    forecast,
    historical_rates,
    horizon_of,
    mape,
    months_after,
)
from billing_engine.money import check_currency
from billing_engine.revenue import BridgeRow, parse_month
from billing_engine.storage import forecasts as forecast_store
from billing_engine.storage.database import Session
from billing_engine.use_cases import revenue
from billing_engine.use_cases.dashboard import MissingRate, RateUsed, rates_report
from billing_engine.use_cases.exchange_rates import month_rate_sets

#: How many complete months of history the rates come from, by default and at most.
DEFAULT_HISTORY_MONTHS, MAX_HISTORY_MONTHS = 12, 60


@dataclass(frozen=True)
class CurrencyForecast:
    currency: str
    rates: Rates  # the history's monthly expansion and churn rates
    months: tuple[ForecastMonth, ...]


@dataclass(frozen=True)
class Forecast:
    made_in: str  # YYYY-MM: the first month forecast (horizon 1)
    reporting_currency: str
    currencies: tuple[CurrencyForecast, ...]
    reporting: tuple[ForecastMonth, ...] | None  # None when a rate is missing
    rates_month: str  # the month whose exchange rates convert every month ahead
    rates: tuple[RateUsed, ...] = field(default=())
    missing_rates: tuple[MissingRate, ...] = field(default=())


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _check(made_in: str, history_months: int) -> None:
    parse_month(made_in)
    if isinstance(history_months, bool) or not isinstance(history_months, int) \
            or not 1 <= history_months <= MAX_HISTORY_MONTHS:
        raise InvalidInputError("history_months", f"must be between 1 and {MAX_HISTORY_MONTHS}")


def _by_currency(rows: list[BridgeRow]) -> dict[str, list[BridgeRow]]:
    out: dict[str, list[BridgeRow]] = defaultdict(list)
    for row in rows:
        out[row.currency].append(row)
    return out


def bridge_range(made_in: str, history_months: int = DEFAULT_HISTORY_MONTHS) -> tuple[str, str]:
    """The first and last months of the MRR bridge the forecast made in ``made_in`` reads."""
    return months_after(made_in, -history_months), months_after(made_in, HORIZON_MONTHS - 1)


def shared_bridge(session: Session, *ranges: tuple[str, str]) -> list[BridgeRow] | None:
    """The MRR bridge's rows of one range covering every ``(first, last)`` range, read once (a
    month's rows are the same whatever the range); ``None`` when it would be longer than a
    bridge may be (then each reads its own)."""
    first, last = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if horizon_of(first, last) > revenue.MAX_BRIDGE_MONTHS:
        return None
    return revenue.mrr_bridge_months(session, first, last)


def currency_forecasts(session: Session, made_in: str, *, history_months: int = DEFAULT_HISTORY_MONTHS,
                       currency: str | None = None,
                       bridge: Sequence[BridgeRow] | None = None) -> list[CurrencyForecast]:
    """Per currency with MRR in the history or ahead: the history's rates and the 12 months'
    forecast from ``made_in``. ``bridge``: rows covering ``bridge_range`` when already read."""
    _check(made_in, history_months)
    if currency is not None:
        check_currency(currency)
    first, last = bridge_range(made_in, history_months)
    if bridge is None:
        rows = revenue.mrr_bridge_months(session, first, last, currency=currency)
    else:
        rows = [r for r in bridge if first <= r.period <= last and currency in (None, r.currency)]
    out = []
    for cur, mine in sorted(_by_currency(rows).items()):
        if not any(r.opening or r.closing for r in mine):
            continue
        history = [r for r in mine if r.period < made_in]
        ahead = [r for r in mine if r.period >= made_in]
        rates = historical_rates(history)
        out.append(CurrencyForecast(cur, rates, tuple(forecast(cur, ahead, rates))))
    return out


def mrr_forecast(session: Session, made_in: str, *, reporting_currency: str,
                 history_months: int = DEFAULT_HISTORY_MONTHS, currency: str | None = None,
                 bridge: Sequence[BridgeRow] | None = None) -> Forecast:
    """The forecast made in ``made_in`` (``YYYY-MM``), per currency and added up in the reporting
    currency at the rates of the month before ``made_in`` (the last complete month, as its
    dashboard converts; a future month has no rate yet)."""
    check_currency(reporting_currency)
    per_currency = currency_forecasts(session, made_in, history_months=history_months, currency=currency,
                                      bridge=bridge)
    rates_month = months_after(made_in, -1)
    [rates] = month_rate_sets(session, [parse_month(rates_month)],
                              {c.currency for c in per_currency} | {reporting_currency})
    used, missing = rates_report({rates_month: rates}, {rates_month: {c.currency for c in per_currency}},
                                 reporting_currency)
    reporting = None if missing else tuple(_converted(per_currency, made_in, reporting_currency, rates))
    return Forecast(made_in, reporting_currency, tuple(per_currency), reporting, rates_month, tuple(used),
                    tuple(missing))


def _converted(per_currency: list[CurrencyForecast], made_in: str, reporting: str,
               rates: RateSet) -> list[ForecastMonth]:
    out = []
    for k in range(HORIZON_MONTHS):
        parts = [(c.currency, c.months[k]) for c in per_currency if len(c.months) > k]

        def total(name: str, parts: list[tuple[str, ForecastMonth]] = parts) -> Decimal:
            return convert_total({cur: getattr(m, name) for cur, m in parts}, reporting, rates)

        out.append(ForecastMonth(months_after(made_in, k), k + 1, total("contracted"), total("expected"),
                                 total("low"), total("high")))
    return out


# ---------------------------------------------------------------- snapshots and their accuracy


@dataclass(frozen=True)
class StoredForecast:
    made_in: str
    stored: bool  # False: the month's snapshot was already there, nothing written
    rows: int


def store_forecast(session: Session, made_in: str, *, history_months: int = DEFAULT_HISTORY_MONTHS,
                   now: datetime | None = None) -> StoredForecast:
    """Store the forecast made in ``made_in`` per currency, once: a month already stored keeps its
    snapshot (what was forecast then), and two clocks storing it at once write it once."""
    _check(made_in, history_months)
    if forecast_store.has_snapshot(session, made_in):
        return StoredForecast(made_in, False, 0)
    months = [(c.currency, m) for c in currency_forecasts(session, made_in, history_months=history_months)
              for m in c.months]
    written = forecast_store.insert_snapshot(session, made_in, months, now or datetime.now(UTC))
    return StoredForecast(made_in, written > 0, written)


@dataclass(frozen=True)
class HorizonAccuracy:
    """The error of the stored forecasts ``horizon`` months ahead (1: the month they were made in)."""

    currency: str
    horizon: int
    months: int  # forecast months compared (an actual MRR of 0 has no percentage error)
    contracted_mape: Decimal | None  # percent
    expected_mape: Decimal | None
    within_band: int  # months whose actual MRR fell between low and high


def forecast_accuracy(session: Session, today: date, *, currency: str | None = None) -> list[HorizonAccuracy]:
    """Per currency and horizon, the mean absolute percentage error of the stored forecasts of the
    months already closed (before ``today``'s month) against their actual month-end MRR."""
    if currency is not None:
        check_currency(currency)
    last_closed = months_after(month_of(today), -1)
    stored = forecast_store.snapshots_through(session, last_closed, currency=currency)
    if not stored:
        return []
    first = min(m.month for _, _, m in stored)
    actual = {(r.period, r.currency): r.closing
              for start in range(0, horizon_of(first, last_closed), revenue.MAX_BRIDGE_MONTHS)
              for r in revenue.mrr_bridge_months(session, months_after(first, start),
                                                 min(last_closed, months_after(first, start + revenue.MAX_BRIDGE_MONTHS - 1)),
                                                 currency=currency)}
    errors: dict[tuple[str, int], tuple[list[Decimal], list[Decimal], list[int]]] = defaultdict(
        lambda: ([], [], []))
    for _made_in, cur, m in stored:
        value = actual.get((m.month, cur), Decimal(0))
        contracted, expected, band = errors[(cur, m.horizon)]
        c = absolute_percentage_error(m.contracted, value)
        e = absolute_percentage_error(m.expected, value)
        if c is None or e is None:
            continue
        contracted.append(c)
        expected.append(e)
        band.append(1 if m.low <= value <= m.high else 0)
    return [HorizonAccuracy(cur, h, len(c), mape(c), mape(e), sum(b))
            for (cur, h), (c, e, b) in sorted(errors.items())]
