"""The dashboard's figures for a month (docs/reporting.md): MRR and ARR month by month, the month's
MRR waterfall, net and gross revenue retention, logo and revenue churn rates, ARPA, customers by
billing status and receivables by aging bucket; per currency and in the reporting currency, with
the exchange rates used and the ones missing. And the customers behind each figure.

The MRR figures are the MRR bridge's rows (``revenue.mrr_bridge_months``, the same as
``GET /api/v1/metrics/mrr`` and ``billsync metrics mrr``), so they agree by construction.
Receivables and statuses are as of a business date (today, for a current month): balances are
not kept by date, so they are not figures of the past.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.exchange_rates import BASE_CURRENCY, RateSet, convert_total
from billing_engine.money import check_currency, round_money
from billing_engine.payments import AGING_BUCKETS
from billing_engine.reporting import (
    STATUSES,
    WATERFALL,
    Waterfall,
    arpa,
    billing_status,
    converted_sum,
    converted_waterfall,
    gross_revenue_retention,
    logo_churn_rate,
    net_revenue_retention,
    revenue_churn_rate,
)
from billing_engine.revenue import MOVEMENT_KINDS, BridgeRow, parse_month
from billing_engine.storage import reporting as reporting_store
from billing_engine.storage.database import Session
from billing_engine.use_cases import revenue
from billing_engine.use_cases.exchange_rates import month_rate_sets

ZERO = Decimal(0)
#: How many months the MRR and ARR series may cover.
MIN_MONTHS, MAX_MONTHS, DEFAULT_MONTHS = 12, 24, 12
#: Longest drill-down page.
MAX_PAGE = 1000


@dataclass(frozen=True)
class SeriesPoint:
    month: str
    mrr: Decimal | None  # None in the reporting currency when a rate of that month is missing
    arr: Decimal | None
    customers: int


@dataclass(frozen=True)
class Figures:
    """The month's figures in one currency (or in the reporting currency)."""

    currency: str
    series: tuple[SeriesPoint, ...]
    waterfall: Waterfall | None  # None in the reporting currency when a rate of the month is missing
    opening_customers: int
    closing_customers: int
    movers: dict[str, int]  # customers per movement kind in the month
    net_revenue_retention: Decimal | None  # percent
    gross_revenue_retention: Decimal | None
    logo_churn_rate: Decimal | None
    revenue_churn_rate: Decimal | None
    arpa: Decimal | None
    receivables: dict[str, Decimal] | None  # aging bucket → Σ open balances (every bucket present)
    receivables_total: Decimal | None
    overdue_invoices: int


@dataclass(frozen=True)
class RateUsed:
    month: str
    currency: str
    rate: Decimal  # 1 EUR = rate currency
    rate_on: date
    source: str


@dataclass(frozen=True)
class MissingRate:
    month: str
    currency: str


@dataclass(frozen=True)
class Dashboard:
    month: str
    as_of: date  # receivables and statuses
    reporting_currency: str
    currencies: tuple[Figures, ...]
    reporting: Figures
    customers_by_status: dict[str, int]
    rates: tuple[RateUsed, ...]
    missing_rates: tuple[MissingRate, ...] = field(default=())


def _months_back(month: str, count: int) -> str:
    year, mon = parse_month(month)
    index = year * 12 + mon - 1 - (count - 1)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _check(month: str, months: int, reporting_currency: str) -> None:
    parse_month(month)
    if not isinstance(months, int) or not MIN_MONTHS <= months <= MAX_MONTHS:
        raise InvalidInputError("months", f"must be between {MIN_MONTHS} and {MAX_MONTHS}")
    check_currency(reporting_currency)


def bridge_range(month: str, months: int = DEFAULT_MONTHS) -> tuple[str, str]:
    """The first and last months of the MRR bridge the dashboard of ``month`` reads."""
    return _months_back(month, months + 1), month  # one more month: the focus month's opening customers


def dashboard(session: Session, month: str, *, as_of: date, reporting_currency: str,
              months: int = DEFAULT_MONTHS, bridge: Sequence[BridgeRow] | None = None) -> Dashboard:
    """The dashboard for ``month`` (``YYYY-MM``): MRR series over the ``months`` months ending with
    it, its waterfall and ratios, and receivables and statuses on ``as_of``. ``bridge``: the MRR
    bridge's rows of a range covering ``bridge_range`` when the caller read them already (the
    console reads one range for the dashboard and the forecast)."""
    _check(month, months, reporting_currency)
    first, _ = bridge_range(month, months)
    if bridge is None:
        rows = revenue.mrr_bridge_months(session, first, month)
    else:
        rows = [r for r in bridge if first <= r.period <= month]
    labels = _labels(first, month)
    by_key = {(r.period, r.currency): r for r in rows}
    aging = reporting_store.receivables_aging(session, as_of)
    currencies = sorted({r.currency for r in rows} | {a.currency for a in aging})
    months_needed = labels[1:]
    as_of_label = f"{as_of.year:04d}-{as_of.month:02d}"
    rate_months = sorted(set(months_needed) | {as_of_label})
    rate_sets = dict(zip(rate_months, month_rate_sets(session, [parse_month(m) for m in rate_months],
                                                     set(currencies) | {reporting_currency}), strict=True))
    per_currency = tuple(_currency_figures(currency, labels, by_key, aging) for currency in currencies)
    rates_used, missing = rates_report(rate_sets, {m: _currencies_of(m, rows, aging, as_of_label)
                                                    for m in rate_months}, reporting_currency)
    reporting = _reporting_figures(reporting_currency, labels, by_key, aging, rate_sets, as_of_label)
    statuses = reporting_store.status_counts(session, as_of)
    if statuses is None:
        statuses = Counter(billing_status(subscriptions=s.subscriptions, past_due=s.past_due, running=s.running,
                                          cancelling=s.cancelling)
                           for s in reporting_store.customer_standings(session, as_of))
    return Dashboard(month=month, as_of=as_of, reporting_currency=reporting_currency, currencies=per_currency,
                     reporting=reporting, customers_by_status={s: statuses.get(s, 0) for s in STATUSES},
                     rates=tuple(rates_used), missing_rates=tuple(missing))


def _labels(first: str, last: str) -> list[str]:
    from billing_engine.revenue import month_range

    return [label for label, _ in month_range(first, last)]


def _currencies_of(month: str, rows: list[BridgeRow], aging: list[reporting_store.AgingTotal],
                   as_of_label: str) -> set[str]:
    out = {r.currency for r in rows if r.period == month and (r.opening or r.closing or r.arr)}
    if month == as_of_label:
        out |= {a.currency for a in aging}
    return out


def rates_report(rate_sets: dict[str, RateSet], needed: dict[str, set[str]],
                 reporting_currency: str) -> tuple[list[RateUsed], list[MissingRate]]:
    """Per month, the rates a conversion of the ``needed`` currencies used and the ones missing
    (nothing when a month needs no other currency than the reporting one)."""
    used, missing = [], []
    for month in sorted(rate_sets):
        wanted = needed[month]
        if not wanted or wanted == {reporting_currency}:
            continue
        rates = rate_sets[month]
        for currency in sorted((wanted | {reporting_currency}) - {BASE_CURRENCY}):
            rate = rates.rates.get(currency)
            if rate is None:
                missing.append(MissingRate(month, currency))
            else:
                used.append(RateUsed(month, currency, rate.rate, rate.on, rate.source))
    return used, missing


def _zero(currency: str) -> Decimal:
    return round_money(ZERO, currency)


def _ratios(opening: Decimal, row: dict[str, Decimal], churned: int, opening_customers: int) -> dict:
    return {"net_revenue_retention": net_revenue_retention(opening, row["expansion"], row["contraction"],
                                                           row["churn"]),
            "gross_revenue_retention": gross_revenue_retention(opening, row["contraction"], row["churn"]),
            "logo_churn_rate": logo_churn_rate(churned, opening_customers),
            "revenue_churn_rate": revenue_churn_rate(opening, row["contraction"], row["churn"])}


def _parts(row: BridgeRow | None, currency: str) -> dict[str, Decimal]:
    if row is None:
        return dict.fromkeys(WATERFALL, _zero(currency))
    return {name: getattr(row, name) for name in WATERFALL}


def _currency_figures(currency: str, labels: list[str], by_key: dict[tuple[str, str], BridgeRow],
                      aging: list[reporting_store.AgingTotal]) -> Figures:
    zero = _zero(currency)
    month, previous = labels[-1], labels[-2]
    series = []
    for label in labels[1:]:
        row = by_key.get((label, currency))
        series.append(SeriesPoint(label, row.closing if row else zero, row.arr if row else zero,
                                  row.customers if row else 0))
    row = by_key.get((month, currency))
    parts = _parts(row, currency)
    before = by_key.get((previous, currency))
    opening_customers = before.customers if before else 0
    movers = dict(row.movers) if row else dict.fromkeys(MOVEMENT_KINDS, 0)
    closing_customers = row.customers if row else 0
    buckets = {name: zero for name in AGING_BUCKETS}
    overdue = 0
    for total in aging:
        if total.currency == currency:
            buckets[total.bucket] += total.amount
            if total.bucket != "current":
                overdue += total.invoices
    return Figures(currency=currency, series=tuple(series),
                   waterfall=Waterfall(currency, rounding=zero, **parts),
                   opening_customers=opening_customers, closing_customers=closing_customers, movers=movers,
                   arpa=arpa(parts["closing"], closing_customers, currency),
                   receivables=buckets, receivables_total=sum(buckets.values(), zero), overdue_invoices=overdue,
                   **_ratios(parts["opening"], parts, movers.get("churn", 0), opening_customers))


def _reporting_figures(reporting: str, labels: list[str], by_key: dict[tuple[str, str], BridgeRow],
                       aging: list[reporting_store.AgingTotal], rate_sets: dict[str, RateSet],
                       as_of_label: str) -> Figures:
    month, previous = labels[-1], labels[-2]
    series = []
    for label in labels[1:]:
        rows = [r for (p, _), r in by_key.items() if p == label]
        rates = rate_sets[label]
        customers = sum(r.customers for r in rows)
        if rates.missing([r.currency for r in rows if r.closing or r.arr], reporting):
            series.append(SeriesPoint(label, None, None, customers))
            continue
        series.append(SeriesPoint(label, convert_total({r.currency: r.closing for r in rows}, reporting, rates),
                                  convert_total({r.currency: r.arr for r in rows}, reporting, rates), customers))
    rows = [r for (p, _), r in by_key.items() if p == month]
    opening_customers = sum(r.customers for (p, _), r in by_key.items() if p == previous)
    movers = {kind: sum(r.movers.get(kind, 0) for r in rows) for kind in MOVEMENT_KINDS}
    closing_customers = sum(r.customers for r in rows)
    rates = rate_sets[month]
    moved = [r for r in rows if any(getattr(r, name) for name in WATERFALL)]
    waterfall = None
    ratios: dict = dict.fromkeys(("net_revenue_retention", "gross_revenue_retention", "logo_churn_rate",
                                  "revenue_churn_rate"))
    average = None
    if not rates.missing([r.currency for r in moved], reporting):
        parts = {r.currency: _parts(r, r.currency) for r in moved}
        waterfall = converted_waterfall(parts, reporting, rates) if parts else \
            Waterfall(reporting, rounding=_zero(reporting), **_parts(None, reporting))
        exact = {name: converted_sum({c: p[name] for c, p in parts.items()}, reporting, rates) for name in WATERFALL}
        ratios = _ratios(exact["opening"], exact, movers["churn"], opening_customers)
        average = arpa(exact["closing"], closing_customers, reporting)
    receivables = total = None
    overdue = sum(a.invoices for a in aging if a.bucket != "current")
    as_of_rates = rate_sets[as_of_label]
    if not as_of_rates.missing({a.currency for a in aging}, reporting) or not aging:
        receivables = {name: convert_total({a.currency: a.amount for a in aging if a.bucket == name}, reporting,
                                           as_of_rates) for name in AGING_BUCKETS}
        total = convert_total(_sum_by_currency(aging), reporting, as_of_rates)
    return Figures(currency=reporting, series=tuple(series), waterfall=waterfall,
                   opening_customers=opening_customers, closing_customers=closing_customers, movers=movers,
                   arpa=average, receivables=receivables, receivables_total=total, overdue_invoices=overdue,
                   **ratios)


def _sum_by_currency(aging: list[reporting_store.AgingTotal]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for a in aging:
        out[a.currency] = out.get(a.currency, ZERO) + a.amount
    return out


# ---------------------------------------------------------------- the customers behind a figure


#: ``movement:<kind>``, ``aging:<bucket>``, ``status:<status>``.
FIGURES = tuple([f"movement:{k}" for k in MOVEMENT_KINDS] + [f"aging:{b}" for b in AGING_BUCKETS]
                + [f"status:{s}" for s in STATUSES])


@dataclass(frozen=True)
class FigureCustomer:
    customer_id: str
    name: str
    currency: str
    amount: Decimal | None  # the MRR change, or the balance in the bucket; None for a status
    before: Decimal | None = None  # MRR at the end of the previous month (movements)
    after: Decimal | None = None  # MRR at the end of the month (movements)
    invoices: int | None = None  # invoices in the bucket (aging)


def check_figure(figure: object) -> str:
    if figure not in FIGURES:
        raise InvalidInputError("figure", f"{figure!r} is not a figure; use one of {', '.join(FIGURES)}")
    return str(figure)


def figure_customers(session: Session, month: str, figure: str, *, as_of: date, limit: int,
                     after: tuple[str, str] | None = None, currency: str | None = None) -> list[FigureCustomer]:
    """The customers behind one of the dashboard's figures, by customer id and currency after
    ``after`` (keyset pages): a movement kind of ``month``, an aging bucket or a billing status on
    ``as_of``."""
    parse_month(month)
    kind, _, value = check_figure(figure).partition(":")
    if not 1 <= limit <= MAX_PAGE + 1:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE}")
    if currency is not None:
        check_currency(currency)
    if kind == "movement":
        moves = revenue.mrr_movements(session, month, limit=limit, after=after, currency=currency, kind=value)
        names = reporting_store.customers_named(session, [m.customer_id for m in moves])
        return [FigureCustomer(m.customer_id, names.get(m.customer_id, ""), m.currency, m.amount, m.before, m.after)
                for m in moves]
    if kind == "aging":
        rows = reporting_store.aging_customers(session, as_of, value, limit=limit, after=after, currency=currency)
        names = reporting_store.customers_named(session, [r[0] for r in rows])
        return [FigureCustomer(cid, names.get(cid, ""), cur, amount, invoices=count)
                for cid, cur, amount, count in rows]
    found = reporting_store.status_customers(session, as_of, value, limit=limit, after=after, currency=currency)
    if found is not None:
        names = reporting_store.customers_named(session, [cid for cid, _ in found])
        return [FigureCustomer(cid, names.get(cid, ""), cur, None) for cid, cur in found]
    out: list[FigureCustomer] = []
    start = None
    if after is not None:
        start = after[0]
    for s in reporting_store.customer_standings(session, as_of, after=start):
        if after is not None and (s.customer_id, s.currency) <= after:
            continue
        if currency is not None and s.currency != currency:
            continue
        status = billing_status(subscriptions=s.subscriptions, past_due=s.past_due, running=s.running,
                                cancelling=s.cancelling)
        if status == value:
            out.append(FigureCustomer(s.customer_id, "", s.currency, None))
            if len(out) >= limit:
                break
    names = reporting_store.customers_named(session, [c.customer_id for c in out])
    return [FigureCustomer(c.customer_id, names.get(c.customer_id, ""), c.currency, None) for c in out]
