"""Revenue use cases: MRR as of a date, the MRR bridge (opening, new, expansion, reactivation,
contraction, churn, closing) month by month, a customer's MRR, and invoiced usage revenue.

The metrics read recurring item versions through an ``MrrSource``:
``SubscriptionMrrSource`` over ``Subscription`` objects, ``DatabaseMrrSource`` over the
engine's tables (streamed by customer, with a fast path that reads plain subscriptions as
rows and counts customers with identical histories once).

Each customer's MRR and ARR at the month ends where they change are kept in ``mrr_month_ends``
(``refresh_customer_mrr`` with every subscription change, ``rebuild_mrr_month_ends``,
``check_mrr_month_ends``): the bridge and its movements for the API, the CLI and the dashboard
are sums over those rows (``kept_mrr_bridge``), the same rows as ``mrr_bridge`` computes from the
versions, which stays the reference and the path past the kept months (docs/reporting.md §4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money
from billing_engine.revenue import (
    MOVEMENT_KINDS,
    BridgeRow,
    CustomerKey,
    ItemMrr,
    Movement,
    annual_amount,
    classify,
    month_range,
    parse_month,
    previous_month_end,
)
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import revenue as revenue_store
from billing_engine.storage import subscriptions as subscription_store
from billing_engine.storage.catalog import load_prices
from billing_engine.storage.database import Session
from billing_engine.subscriptions import Subscription
from billing_engine.use_cases.customers import get_customer

ZERO = Decimal(0)
MrrVersion = tuple[ItemMrr, date, date | None]


class MrrSource(Protocol):
    """Where the metrics' recurring item versions come from; both methods are required.

    A version is ``(ItemMrr, starts_on, ends_before)``: the item's normalised monthly
    amount after discounts, valid on dates in ``[starts_on, ends_before)``
    (``ends_before`` None = open-ended). Cancellations end at the end of the paid period.

    ``recurring_versions``: every version up to ``until``, each customer's versions
    together (e.g. ordered by customer id).
    ``grouped_versions``: ``(groups, others)`` for aggregate figures: ``groups`` yields
    ``(versions of one customer, n)`` where that customer stands for ``n`` customers with
    the same MRR on every date; ``others`` every other customer's versions, as
    ``recurring_versions`` yields them. A source that does not group returns no groups
    and all its versions as ``others``.
    """

    def recurring_versions(self, session: Session, until: date) -> Iterable[MrrVersion]: ...

    def grouped_versions(self, session: Session,
                         until: date) -> tuple[Iterable[tuple[list[MrrVersion], int]], Iterable[MrrVersion]]: ...


def mrr_snapshots(versions: Iterable[MrrVersion],
                  dates: Sequence[date]) -> list[dict[CustomerKey, Decimal]]:
    """Rounded customer MRR at each date (pure; one pass over the versions)."""
    return [{key: round_money(value, key[1]) for key, value in snap.items() if value}
            for snap in _monthly_snapshots(versions, dates)]


def mrr_and_arr_snapshots(versions: Iterable[MrrVersion], dates: Sequence[date]) -> list[
        tuple[dict[CustomerKey, Decimal], dict[CustomerKey, Decimal]]]:
    """``(rounded customer MRR, customer ARR)`` at each date: ARR is the unrounded MRR × 12,
    rounded once (docs/billing-rules.md §17 Revenue metrics: MRR and ARR)."""
    return [({key: round_money(value, key[1]) for key, value in snap.items() if value},
             {key: annual_amount(value, key[1]) for key, value in snap.items() if value})
            for snap in _monthly_snapshots(versions, dates)]


def _monthly_snapshots(versions: Iterable[MrrVersion], dates: Sequence[date]) -> list[dict[CustomerKey, Decimal]]:
    """Unrounded customer MRR at each date (one pass over the versions)."""
    import bisect

    order = sorted(range(len(dates)), key=lambda i: dates[i])
    sorted_dates = [dates[i] for i in order]
    raw: list[dict[CustomerKey, Decimal]] = [defaultdict(Decimal) for _ in dates]
    for item, starts_on, ends_before in versions:
        lo = bisect.bisect_left(sorted_dates, starts_on)
        hi = len(sorted_dates) if ends_before is None else bisect.bisect_left(sorted_dates, ends_before)
        key = (item.customer_id, item.currency)
        for j in range(lo, hi):
            raw[order[j]][key] += item.mrr
    return raw


def mrr_as_of(session: Session, on: date, *, source: MrrSource) -> dict[CustomerKey, Decimal]:
    [snapshot] = mrr_snapshots(source.recurring_versions(session, on), [on])
    return snapshot


def mrr_bridge(session: Session, from_month: str, to_month: str, *, source: MrrSource,
               collect_movements: bool = True) -> tuple[list[BridgeRow], list[Movement]]:
    """The MRR bridge month by month (measured at month ends) and the customer movements.

    Opening = MRR at the end of the month before ``from_month``. A customer with MRR > 0
    at an earlier month end counts as reactivated, not new. One pass over the versions,
    one customer at a time: ``source.recurring_versions`` must yield each customer's
    versions together (e.g. ordered by customer id). Without movements, a source with
    ``grouped_versions`` (``DatabaseMrrSource``) lets customers with identical histories be
    counted once and weighted: the same rows, in time proportional to the distinct histories.
    """
    import bisect

    from billing_engine.revenue import bridge_from_series, month_end

    months = month_range(from_month, to_month)
    opening_on = previous_month_end(from_month)
    dates = [opening_on] + [d for _, d in months]
    labels = [label for label, _ in months]

    width = len(dates)

    zeros: dict[str, Decimal] = {}

    def values_of(segments: list[tuple[int, int, Decimal]],
                  currency: str) -> tuple[list[Decimal], list[Decimal]]:
        """(rounded MRR, ARR) at each date: ARR from the unrounded MRR × 12, rounded once."""
        if all(lo == 0 and hi == width for lo, hi, _ in segments):  # the usual case: one steady amount
            steady = [sum((m for _, _, m in segments), ZERO)]
            return _rounded(steady, currency) * width, _rounded_annual(steady, currency) * width
        if len(segments) == 1:  # one amount from one month end to another
            lo, hi, mrr = segments[0]
            zero = zeros.get(currency)
            if zero is None:
                zero = zeros[currency] = round_money(ZERO, currency)
            return ([zero] * lo + _rounded([mrr], currency) * (hi - lo) + [zero] * (width - hi),
                    [zero] * lo + _rounded_annual([mrr], currency) * (hi - lo) + [zero] * (width - hi))
        values = [ZERO] * width
        for lo, hi, mrr in segments:
            for j in range(lo, hi):
                values[j] += mrr
        return _rounded(values, currency), _rounded_annual(values, currency)

    def add(segments: list[tuple[int, int, Decimal]], item: ItemMrr, starts_on: date,
            ends_before: date | None) -> bool:
        """Add one version's segment; True when it had MRR > 0 at a month end before the opening date."""
        lo = bisect.bisect_left(dates, starts_on)
        hi = width if ends_before is None else bisect.bisect_left(dates, ends_before)
        if lo < hi:
            segments.append((lo, hi, item.mrr))
        if starts_on < opening_on and item.mrr > 0:
            first_end = month_end(starts_on.year, starts_on.month)
            if first_end < opening_on and (ends_before is None or first_end < ends_before):
                return True
        return False

    def per_customer(versions: Iterable[MrrVersion]) -> Iterable[tuple[Any, ...]]:
        done: set[CustomerKey] = set()
        current: CustomerKey | None = None
        segments: list[tuple[int, int, Decimal]] = []
        had = False
        for item, starts_on, ends_before in versions:
            key = (item.customer_id, item.currency)
            if key != current:
                if current is not None:
                    yield (current, had, *values_of(segments, current[1]))
                    done.add(current)
                if key in done:
                    raise ValueError(f"recurring_versions must group each customer's versions ({key[0]})")
                current, segments, had = key, [], False
            had = add(segments, item, starts_on, ends_before) or had
        if current is not None:
            yield (current, had, *values_of(segments, current[1]))

    series: Iterable[tuple[Any, ...]]
    if collect_movements:
        series = ((key, had, values, 1, annual)
                  for key, had, values, annual in per_customer(source.recurring_versions(session, dates[-1])))
    else:
        # Customers with the same single plain subscription have the same values: one series,
        # weighted by their number (same sums, exactly: Decimal sums and products are exact here).
        groups, others = source.grouped_versions(session, dates[-1])

        def weighted() -> Iterable[tuple[Any, ...]]:
            for versions, n in groups:
                for key, had, values, annual in per_customer(versions):
                    yield key, had, values, n, annual
            for key, had, values, annual in per_customer(others):
                yield key, had, values, 1, annual

        series = weighted()
    moves, rows = bridge_from_series(labels, series, collect_movements=collect_movements)
    return rows, moves


def _rounded(values: list[Decimal], currency: str) -> list[Decimal]:
    quantum = round_money(ZERO, currency)  # 0.00 / 0 / 0.000: the currency's minor unit
    return [v.quantize(quantum, ROUND_HALF_UP) for v in values]


def _rounded_annual(values: list[Decimal], currency: str) -> list[Decimal]:
    quantum = round_money(ZERO, currency)
    return [(v * 12).quantize(quantum, ROUND_HALF_UP) for v in values]


def mrr_bridge_rows(session: Session, from_month: str, to_month: str, *, source: MrrSource) -> list[dict[str, str]]:
    """Rows for ``billsync metrics mrr --from --to [--csv]``: strings, exact decimals."""
    rows, _ = mrr_bridge(session, from_month, to_month, source=source, collect_movements=False)
    return [row.as_row() for row in rows]


def usage_revenue(session: Session, from_on: date, before: date) -> dict[str, Decimal]:
    """Invoiced usage (net, before tax) per currency for lines in finalized invoices in the range."""
    return invoice_store.usage_revenue(session, from_on, before)


_MONTHLY_CACHE: dict[tuple[Any, ...], Decimal] = {}


def item_monthly_amount(item: Any, items: Mapping[str, Any]) -> Decimal | None:
    """Normalised monthly amount of a recurring item after its discount (None if not recurring).

    A percent_of item is its percent of the covered recurring items' monthly amounts
    in the same version (so it follows their quantity and discounts).
    """
    from billing_engine.charges import rate_item
    from billing_engine.revenue import monthly_amount

    price = item.price
    if price.charge_type != "recurring" or price.interval is None:
        return None
    if price.terms.model == "percent_of":
        covered = set(price.terms.covered_product_codes)
        base = sum((item_monthly_amount(other, items) or ZERO for other in items.values()
                    if other.price.product.code in covered and other.price.terms.model != "percent_of"), ZERO)
        return base * price.terms.percent / 100
    # The price's terms are part of the key: a price id keeps its id when its amounts change.
    key = (price.price_id, price.interval, price.terms, item.quantity, item.contract_unit_price,
           item.discount_percent, item.discount_amount)
    cached = _MONTHLY_CACHE.get(key)
    if cached is not None:
        return cached
    full = rate_item(item).amount
    if item.discount_percent:
        full -= full * item.discount_percent / 100
    elif item.discount_amount:
        full = max(full - item.discount_amount, ZERO)
    value = monthly_amount(full, str(price.interval.value))
    if len(_MONTHLY_CACHE) > 50000:
        _MONTHLY_CACHE.clear()
    _MONTHLY_CACHE[key] = value  # same price, quantity, contract price and discount: same amount
    return value


class SubscriptionMrrSource:
    """An ``MrrSource`` over ``Subscription`` objects (``load(session)`` returns them, each
    customer's together); it does not group customers."""

    def __init__(self, load: Callable[[Session], Iterable[Subscription]]):
        self.load = load

    def grouped_versions(self, session: Session,
                         until: date) -> tuple[Iterable[tuple[list[MrrVersion], int]], Iterable[MrrVersion]]:
        return (), self.recurring_versions(session, until)

    def recurring_versions(self, session: Session, until: date) -> Iterable[MrrVersion]:
        for sub in self.load(session):
            yield from subscription_mrr_versions(sub, until)


def subscription_mrr_versions(sub: Subscription, until: date) -> Iterable[MrrVersion]:
    end = sub.ends_before
    versions = sub.versions(until)
    for index, version in enumerate(versions):
        starts = version.effective_on
        stops = versions[index + 1].effective_on if index + 1 < len(versions) else end
        if end is not None and stops is not None:
            stops = min(stops, end)
        if stops is not None and stops <= starts:
            continue
        for item in version.items.values():
            monthly = item_monthly_amount(item, version.items)
            if monthly:
                yield ItemMrr(sub.customer_id, sub.subscription_id, item.item_id, sub.currency, monthly), starts, stops


class DatabaseMrrSource:
    """An ``MrrSource`` over the engine's tables, streamed a batch of customers at a time, each
    customer's versions together (what ``mrr_bridge`` needs), in flat memory.

    A subscription without amendments whose items never change in the range (no uplifted
    renewal before ``until``) is read as plain rows and yields one version for the whole
    subscription (``item_id`` ``"*"``: the sum of its items' MRR); the others are loaded
    as ``Subscription`` histories and yield one version per item.
    """

    def __init__(self, batch_size: int = 2000):
        self.batch_size = batch_size

    def recurring_versions(self, session: Session, until: date) -> Iterable[MrrVersion]:
        prices: dict = {}
        amounts: dict[tuple[Any, ...], Decimal] = {}
        after = None
        while True:
            page = subscription_store.customers_page(session, after=after, limit=self.batch_size)
            if not page:
                return
            after = page[-1].id
            yield from self._versions_of(session, [r.id for r in page], until, prices, amounts)

    def grouped_versions(self, session: Session, until: date) -> tuple[
            Iterable[tuple[list[MrrVersion], int]],
            Iterable[MrrVersion]]:
        """``(groups, others)`` for aggregate figures (the bridge without movements), in flat memory:

        ``groups``: ``(versions of one customer, n)``: that customer stands for ``n`` customers whose
        only subscription has no amendments and the same terms (currency, start, term, items), so
        the same MRR on every date; ``others``: every other customer's versions, as
        ``recurring_versions`` yields them (one customer at a time, by id).
        """
        prices: dict = {}
        amounts: dict[tuple[Any, ...], Decimal] = {}
        return (self._group_versions(session, until, prices, amounts),
                self._other_versions(session, until, prices, amounts))

    def _group_versions(self, session: Session, until: date, prices: dict,
                        amounts: dict) -> Iterable[tuple[list[MrrVersion], int]]:
        weights = subscription_store.plain_subscription_groups(session)  # one (id, n) per group
        for start in range(0, len(weights), self.batch_size):
            chunk = weights[start:start + self.batch_size]
            versions: dict[str, list[MrrVersion]] = defaultdict(list)
            for version in self._versions_of(session, [cid for cid, _ in chunk], until, prices, amounts):
                versions[version[0].customer_id].append(version)
            for cid, n in chunk:
                if versions.get(cid):
                    yield versions[cid], n

    def _other_versions(self, session: Session, until: date, prices: dict,
                        amounts: dict) -> Iterable[MrrVersion]:
        after = None
        while True:
            ids = subscription_store.other_subscription_customers_page(session, after=after, limit=self.batch_size)
            if not ids:
                return
            after = ids[-1]
            yield from self._versions_of(session, ids, until, prices, amounts)

    def _versions_of(self, session: Session, customer_ids: Sequence[str], until: date, prices: dict,
                     amounts: dict) -> Iterable[MrrVersion]:
        from billing_engine.periods import add_months

        subs, item_rows = subscription_store.subscription_terms_of_customers(session, customer_ids)
        items: dict[str, list[Any]] = defaultdict(list)
        for row in item_rows:
            items[row[0]].append(row)
        load_prices(session, {row[2] for row in item_rows}, prices)
        histories = {}
        complex_ids = [sub.id for sub in subs if sub.amended or (
            sub.renewal_uplift_percent and sub.auto_renew and sub.term_months is not None
            and add_months(sub.starts_on, sub.term_months) <= until)]
        if complex_ids:
            histories = {h.subscription_id: h for h in subscription_store.subscriptions_of_customers(
                session, (), subscription_ids=complex_ids, price_cache=prices)}
        for sub in subs:
            history = histories.get(sub.id)
            if history is not None:
                yield from subscription_mrr_versions(history, until)
                continue
            terms = tuple(tuple(row[2:]) for row in items.get(sub.id, ()))
            mrr = amounts.get(terms)
            if mrr is None:
                mrr = amounts[terms] = _subscription_monthly_amount(terms, prices)
            if mrr:
                ends = None if sub.auto_renew or sub.term_months is None else \
                    add_months(sub.starts_on, sub.term_months)
                yield ItemMrr(sub.customer_id, sub.id, "*", sub.currency, mrr), sub.starts_on, ends


class _ItemTerms:
    """The fields of a ``SubscriptionItem`` the MRR calculation reads (rows of the fast path)."""

    __slots__ = ("price", "quantity", "contract_unit_price", "discount_percent", "discount_amount")

    def __init__(self, price, quantity, contract_unit_price, discount_percent, discount_amount):
        self.price, self.quantity, self.contract_unit_price = price, quantity, contract_unit_price
        self.discount_percent, self.discount_amount = discount_percent, discount_amount


def _subscription_monthly_amount(terms: tuple[tuple[Any, ...], ...], prices: Mapping[str, Any]) -> Decimal:
    from billing_engine.storage.columns import to_decimal_value

    items = {str(n): _ItemTerms(prices[t[0]], *(to_decimal_value(v) for v in t[1:])) for n, t in enumerate(terms)}
    return sum((item_monthly_amount(item, items) or ZERO for item in items.values()), ZERO)


def database_mrr_source(batch_size: int = 2000) -> DatabaseMrrSource:
    """A ready-made ``MrrSource`` reading subscriptions from the database."""
    return DatabaseMrrSource(batch_size)


def mrr_bridge_report(session_or_engine: Any, from_month: str, to_month: str) -> list[dict[str, str]]:
    """The MRR bridge per month and currency from the database: rows of exact decimal strings
    (``month, currency, opening, new, expansion, reactivation, contraction, churn, closing, arr,
    customers``). Takes a ``Session`` or an engine (then reads in its own session)."""
    if isinstance(session_or_engine, Session):
        return [row.as_row() for row in _bridge_months(session_or_engine, from_month, to_month)]
    with Session(session_or_engine) as session:
        return [row.as_row() for row in _bridge_months(session, from_month, to_month)]


def customer_mrr(session: Session, customer_id: str, on: date) -> Decimal:
    """The customer's MRR on ``on``: Σ item MRR rounded half up once, in the customer's currency
    (``Decimal("0.00")`` for none; docs/billing-rules.md §17 Revenue metrics: MRR and ARR)."""
    currency = get_customer(session, customer_id).currency
    return _customer_mrr(subscription_store.subscriptions_of_customers(session, [customer_id]), customer_id,
                         currency, on)


def customers_mrr(session: Session, currencies: Mapping[str, str], on: date) -> dict[str, Decimal]:
    """Each customer's MRR on ``on``, as ``customer_mrr`` gives it, for many customers in one read of
    their subscriptions (``currencies``: customer id → the customer's currency)."""
    subs_of: dict[str, list[Subscription]] = {customer_id: [] for customer_id in currencies}
    for sub in subscription_store.subscriptions_of_customers(session, sorted(currencies)):
        subs_of[sub.customer_id].append(sub)
    return {customer_id: _customer_mrr(subs_of[customer_id], customer_id, currency, on)
            for customer_id, currency in currencies.items()}


def _customer_mrr(subs: Sequence[Subscription], customer_id: str, currency: str, on: date) -> Decimal:
    [snapshot] = mrr_snapshots((v for s in subs for v in subscription_mrr_versions(s, on)), [on])
    return snapshot.get((customer_id, currency), round_money(ZERO, currency))


# ---------------------------------------------------------------- the bridge for the API

#: Longest range of months one bridge request covers.
MAX_BRIDGE_MONTHS = 120


def mrr_bridge_months(session: Session, from_month: str, to_month: str, *,
                      currency: str | None = None) -> list[BridgeRow]:
    """The MRR bridge per month and currency (measured at month ends), optionally one currency's."""
    months = month_range(from_month, to_month)
    if len(months) > MAX_BRIDGE_MONTHS:
        raise InvalidInputError("to", f"at most {MAX_BRIDGE_MONTHS} months at a time")
    rows = _bridge_months(session, from_month, to_month)
    return [row for row in rows if currency is None or row.currency == currency]


def _bridge_months(session: Session, from_month: str, to_month: str) -> list[BridgeRow]:
    """From ``mrr_month_ends`` when it covers the range and is not awaiting a rebuild, else from
    the subscriptions (the same rows)."""
    if _kept_covers(session, to_month):
        return kept_mrr_bridge(session, from_month, to_month)
    rows, _ = mrr_bridge(session, from_month, to_month, source=database_mrr_source(), collect_movements=False)
    return rows


def bridge_totals(rows: Sequence[BridgeRow]) -> list[BridgeRow]:
    """Per currency over the rows' range: the first month's opening, the sum of each movement,
    the last month's closing, ARR and customers (``period`` is ``FROM..TO``)."""
    by_currency: dict[str, list[BridgeRow]] = defaultdict(list)
    for row in rows:
        by_currency[row.currency].append(row)
    totals = []
    for currency in sorted(by_currency):
        months = by_currency[currency]
        first, last = months[0], months[-1]
        totals.append(BridgeRow(
            period=f"{first.period}..{last.period}", currency=currency, opening=first.opening,
            new=sum((r.new for r in months), ZERO), expansion=sum((r.expansion for r in months), ZERO),
            reactivation=sum((r.reactivation for r in months), ZERO),
            contraction=sum((r.contraction for r in months), ZERO), churn=sum((r.churn for r in months), ZERO),
            closing=last.closing, customers=last.customers, arr=last.arr,
            movers={kind: sum(r.movers.get(kind, 0) for r in months) for kind in MOVEMENT_KINDS}))
    return totals


def mrr_movements(session: Session, month: str, *, limit: int, after: tuple[str, str] | None = None,
                  currency: str | None = None, kind: str | None = None) -> list[Movement]:
    """The customers whose MRR moved in ``month`` (its end against the previous month's end), by
    customer and currency after ``after`` (keyset pages), optionally of one currency and kind."""
    if kind is not None and kind not in MOVEMENT_KINDS:
        raise InvalidInputError("kind", f"unknown movement {kind!r}; use one of {', '.join(MOVEMENT_KINDS)}")
    parse_month(month)
    if _kept_covers(session, month):
        return [Movement(m, cid, cur, str(k), before, after) for cid, cur, m, before, after, _, _, k in
                revenue_store.month_end_movements(session, month, limit=limit, after=after, currency=currency,
                                                  kind=kind)]
    _, moves = mrr_bridge(session, month, month, source=database_mrr_source())
    chosen = sorted((m for m in moves if (currency is None or m.currency == currency)
                     and (kind is None or m.kind == kind)
                     and (after is None or (m.customer_id, m.currency) > after)),
                    key=lambda m: (m.customer_id, m.currency))
    return chosen[:limit]


# ---------------------------------------------------------------- MRR kept at month ends

#: How many months after the current one a rebuild keeps (a bridge reaching further is computed
#: from the subscriptions until the next rebuild moves the horizon).
KEPT_MONTHS_AHEAD = 60


def _last_day(month: str) -> date:
    from billing_engine.revenue import month_end

    return month_end(*parse_month(month))


def month_end_rows(versions: Sequence[MrrVersion], kept_through: str) -> list[revenue_store.MonthEndRow]:
    """The ``mrr_month_ends`` rows of one customer's versions (pure): for each currency, a row at the
    first month end a version covers and at every month end where the rounded MRR or the ARR
    differs from the previous month end's, through ``kept_through`` (``YYYY-MM``).

    The MRR at a month end is Σ of the versions in force on it, rounded half up once; ARR is that
    unrounded sum × 12, rounded once; the kind is ``classify``'s, a customer being reactivated
    rather than new when a recurring item with MRR > 0 was in force at an earlier month end.
    """
    from billing_engine.revenue import month_end

    until = _last_day(kept_through)
    by_currency: dict[tuple[str, str], list[MrrVersion]] = defaultdict(list)
    for version in versions:
        by_currency[(version[0].customer_id, version[0].currency)].append(version)
    out: list[revenue_store.MonthEndRow] = []
    for (customer_id, currency), mine in sorted(by_currency.items()):
        quantum = round_money(ZERO, currency)
        ends = sorted({month_end(d.year, d.month) for _, starts, stops in mine
                       for d in (starts, stops) if d is not None})
        before = before_arr = quantum
        ever = False
        for index, day in enumerate(ends):
            if day > until:
                break
            total, positive = ZERO, False
            for item, starts, stops in mine:
                if starts <= day and (stops is None or day < stops):
                    total += item.mrr
                    positive = positive or item.mrr > 0
            value = total.quantize(quantum, ROUND_HALF_UP)
            annual = (total * 12).quantize(quantum, ROUND_HALF_UP)
            if index == 0 or value != before or annual != before_arr:
                kind = classify(before, value, had_mrr_before=ever)
                out.append((customer_id, currency, f"{day.year:04d}-{day.month:02d}", before, value, before_arr,
                            annual, kind))
            ever = ever or positive
            before, before_arr = value, annual
    return out


def refresh_customer_mrr(session: Session, customer_id: str) -> None:
    """Recompute one customer's ``mrr_month_ends`` rows and its standing (``subscription_standings``,
    what its billing status is made of) from its subscriptions as they stand in this transaction (after a subscription of it is started, amended, renewed or cancelled). The
    customer's row is locked first, so two transactions changing two of its subscriptions
    recompute one after the other, the second from the state the first committed. Nothing to do
    while the rows are not kept (never built, or awaiting a rebuild)."""
    state = revenue_store.month_ends_state(session)
    if state is None or state[1]:
        return
    kept_through = state[0]
    revenue_store.lock_customer(session, customer_id)
    session.flush()
    versions = list(DatabaseMrrSource()._versions_of(session, [customer_id], _last_day(kept_through), {}, {}))
    revenue_store.replace_month_ends(session, [customer_id], month_end_rows(versions, kept_through))
    revenue_store.replace_standings(session, [customer_id],
                                    revenue_store.standings_from_subscriptions(session, [customer_id]))


def rebuild_mrr_month_ends(session: Session, *, today: date | None = None, batch_size: int = 2000) -> int:
    """Recompute ``mrr_month_ends`` and ``subscription_standings`` for every customer from the
    subscriptions (``billsync metrics rebuild-mrr``), through ``KEPT_MONTHS_AHEAD`` months after ``today``'s, in the caller's
    transaction; the number of rows written. Changes recorded meanwhile wait for it (PostgreSQL
    table lock) and are then recomputed on top."""
    from billing_engine.periods import add_months

    today = today or datetime.now(UTC).date()
    ahead = add_months(date(today.year, today.month, 1), KEPT_MONTHS_AHEAD)
    kept_through = f"{ahead.year:04d}-{ahead.month:02d}"
    revenue_store.lock_month_ends(session)
    revenue_store.clear_month_ends(session)
    written = 0
    batch: list[revenue_store.MonthEndRow] = []
    for versions in _versions_by_customer(session, _last_day(kept_through), batch_size):
        batch.extend(month_end_rows(versions, kept_through))
        if len(batch) >= 5000:
            revenue_store.insert_month_ends(session, batch)
            written += len(batch)
            batch = []
    revenue_store.insert_month_ends(session, batch)
    revenue_store.clear_standings(session)
    revenue_store.insert_standings(session, revenue_store.standings_from_subscriptions(session))
    revenue_store.set_month_ends_state(session, kept_through)
    return written + len(batch)


def _versions_by_customer(session: Session, until: date, batch_size: int) -> Iterable[list[MrrVersion]]:
    current: str | None = None
    versions: list[MrrVersion] = []
    for version in DatabaseMrrSource(batch_size).recurring_versions(session, until):
        if version[0].customer_id != current:
            if versions:
                yield versions
            current, versions = version[0].customer_id, []
        versions.append(version)
    if versions:
        yield versions


def check_mrr_month_ends(session: Session, *, batch_size: int = 2000) -> list[str]:
    """The differences between ``mrr_month_ends`` and a computation from the subscriptions, one line
    each (``customer currency month: kept … computed …``); empty when they agree."""
    kept: dict[tuple[str, str, str], tuple[Any, ...]] = {
        row[:3]: row[3:] for row in revenue_store.month_ends_of(session)}
    state = revenue_store.month_ends_state(session)
    if state is None:
        return ["mrr_month_ends was never built (billsync metrics rebuild-mrr)"]
    kept_through, stale = state
    problems = []
    if stale:
        problems.append("mrr_month_ends awaits a rebuild (billsync metrics rebuild-mrr)")
    for versions in _versions_by_customer(session, _last_day(kept_through), batch_size):
        for row in month_end_rows(versions, kept_through):
            stored = kept.pop(row[:3], None)
            if stored != row[3:]:
                problems.append(f"{row[0]} {row[1]} {row[2]}: kept {_describe_row(stored)}, "
                                f"computed {_describe_row(row[3:])}")
    for key, stored in sorted(kept.items()):
        problems.append(f"{key[0]} {key[1]} {key[2]}: kept {_describe_row(stored)}, computed nothing")
    standings = revenue_store.standings_of(session)
    for cid, computed in sorted(revenue_store.standings_from_subscriptions(session).items()):
        standing = standings.pop(cid, None)
        if standing != computed:
            problems.append(f"{cid} standing: kept {_describe_standing(standing)}, "
                            f"computed {_describe_standing(computed)}")
    for cid, standing in sorted(standings.items()):
        problems.append(f"{cid} standing: kept {_describe_standing(standing)}, computed nothing")
    return problems


def _describe_standing(standing: revenue_store.Standing | None) -> str:
    if standing is None:
        return "nothing"
    currency, running, cancelling = standing
    return f"{currency}, running until {running}, cancelling until {cancelling or 'never'}"


def _describe_row(values: tuple[Any, ...] | None) -> str:
    if values is None:
        return "nothing"
    mrr_before, mrr, arr_before, arr, kind = values
    return f"MRR {mrr_before} -> {mrr}, ARR {arr_before} -> {arr} ({kind or 'no movement'})"


def _kept_covers(session: Session, to_month: str) -> bool:
    state = revenue_store.month_ends_state(session)
    return state is not None and not state[1] and to_month <= state[0]


def kept_mrr_bridge(session: Session, from_month: str, to_month: str) -> list[BridgeRow]:
    """The MRR bridge from ``mrr_month_ends`` (the same rows as ``mrr_bridge`` without movements):
    each currency's level at the opening month end plus, per month, the sums of the changes."""
    months = month_range(from_month, to_month)
    opening_month = f"{previous_month_end(from_month):%Y-%m}"
    totals = revenue_store.month_end_totals(session, to_month)
    currencies = sorted(revenue_store.month_end_currencies(session))
    labels = [label for label, _ in months]
    index = {label: i for i, label in enumerate(labels)}
    level: dict[str, list[Any]] = {c: [round_money(ZERO, c), 0, round_money(ZERO, c)] for c in currencies}
    change: dict[str, list[list[Any]]] = {c: [[ZERO, 0, ZERO] for _ in labels] for c in currencies}
    sums = {c: [dict.fromkeys(MOVEMENT_KINDS, ZERO) for _ in labels] for c in currencies}
    movers = {c: [dict.fromkeys(MOVEMENT_KINDS, 0) for _ in labels] for c in currencies}
    for t in totals:
        if t.month <= opening_month:
            entry = level[t.currency]
        else:
            i = index[t.month]
            entry = change[t.currency][i]
            if t.kind is not None:
                sums[t.currency][i][t.kind] += t.moved
                movers[t.currency][i][t.kind] += t.customers
        entry[0] += t.mrr_change
        entry[1] += t.customers_change
        entry[2] += t.arr_change
    rows = []
    running: dict[str, list[Any]] = {c: list(level[c]) for c in currencies}
    for i, label in enumerate(labels):
        for currency in currencies:
            opening, count, arr = running[currency]
            mrr_change, count_change, arr_change = change[currency][i]
            closing = opening + mrr_change
            running[currency] = [closing, count + count_change, arr + arr_change]
            s = sums[currency][i]
            row = BridgeRow(period=label, currency=currency, opening=opening, new=s["new"],
                            expansion=s["expansion"], reactivation=s["reactivation"],
                            contraction=s["contraction"], churn=s["churn"], closing=closing,
                            customers=count + count_change, arr=arr + arr_change, movers=movers[currency][i])
            if not row.holds():  # pragma: no cover - guarded by construction
                raise AssertionError(f"MRR bridge does not hold for {label} {currency}")
            rows.append(row)
    return rows
