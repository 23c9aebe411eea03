"""Aggregate reads behind the dashboard (docs/reporting.md): receivables by aging bucket and the
customers behind a bucket, and each customer's subscription standing for its billing status.

Sums of money are taken by PostgreSQL (``NUMERIC``, exact) in one grouped query; on SQLite, whose
decimal columns are text, the same rows are summed in Python as ``Decimal`` (never as floats).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, and_, case, func, literal, or_, select, tuple_, type_coerce
from sqlmodel import Session

from billing_engine.payments import aging_bucket
from billing_engine.storage import revenue as revenue_store
from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.columns import to_decimal_value
from billing_engine.storage.database import is_postgresql
from billing_engine.storage.invoices import Invoice
from billing_engine.storage.subscriptions import SubscriptionRow

ZERO = Decimal(0)
#: Invoices with a balance a customer owes.
PAYABLE = ("open", "uncollectible")
#: Aging buckets by days past due (as ``billing_engine.payments.aging_bucket``), the most recent first.
_BUCKET_DAYS = (("0-30", 30), ("31-60", 60), ("61-90", 90))


def _bucket(t: Any, as_of: date) -> Any:
    due = func.coalesce(t.c.due_on, as_of)
    whens = [(due > as_of, literal("current"))]
    whens += [(due >= as_of - timedelta(days=days), literal(name)) for name, days in _BUCKET_DAYS]
    return case(*whens, else_=literal("90+"))


def _bucket_range(t: Any, bucket: str, as_of: date) -> Any:
    due = func.coalesce(t.c.due_on, as_of)
    if bucket == "current":
        return due > as_of
    bounds = {"0-30": (0, 30), "31-60": (31, 60), "61-90": (61, 90)}
    if bucket in bounds:
        low, high = bounds[bucket]
        return and_(due <= as_of - timedelta(days=low), due >= as_of - timedelta(days=high))
    return due < as_of - timedelta(days=90)


def _balance(t: Any) -> Any:
    """An invoice's balance in SQL, on PostgreSQL's exact ``NUMERIC`` columns."""
    def n(column: Any) -> Any:
        return type_coerce(column, Numeric(asdecimal=True))

    return n(t.c.total) - n(t.c.amount_paid) - n(t.c.amount_credited) + n(t.c.amount_refunded)


@dataclass(frozen=True)
class AgingTotal:
    currency: str
    bucket: str
    amount: Decimal
    invoices: int


def receivables_aging(session: Session, as_of: date) -> list[AgingTotal]:
    """Σ balances of open and uncollectible invoices with a balance > 0, per currency and aging
    bucket on ``as_of``, with the number of invoices. On PostgreSQL one grouped sum per currency and
    due date (a few hundred rows, over ``ix_invoices_owed_due_on`` alone), bucketed here."""
    t = Invoice.__table__
    if is_postgresql(session):
        def n(column: Any) -> Any:
            return func.sum(type_coerce(column, Numeric(asdecimal=True)))

        sums: dict[tuple[str, str], list[Any]] = {}
        for currency, due_on, total, paid, credited, refunded, count in session.execute(
                select(t.c.currency, t.c.due_on, n(t.c.total), n(t.c.amount_paid), n(t.c.amount_credited),
                       n(t.c.amount_refunded), func.count())
                .where(t.c.status.in_(PAYABLE), _balance(t) > 0).group_by(t.c.currency, t.c.due_on)):
            entry = sums.setdefault((currency, aging_bucket(due_on or as_of, as_of)), [ZERO, 0])
            entry[0] += total - paid - credited + refunded
            entry[1] += count
        return [AgingTotal(currency, name, amount, count) for (currency, name), (amount, count) in sums.items()]
    bucket = _bucket(t, as_of).label("bucket")
    sums = {}
    for currency, name, total, paid, credited, refunded in session.execute(
            select(t.c.currency, bucket, t.c.total, t.c.amount_paid, t.c.amount_credited, t.c.amount_refunded)
            .where(t.c.status.in_(PAYABLE))):
        value = (to_decimal_value(total) - to_decimal_value(paid) - to_decimal_value(credited)
                 + to_decimal_value(refunded))
        if value > 0:
            entry = sums.setdefault((currency, name), [ZERO, 0])
            entry[0] += value
            entry[1] += 1
    return [AgingTotal(currency, name, amount, count) for (currency, name), (amount, count) in sums.items()]


def aging_customers(session: Session, as_of: date, bucket: str, *, limit: int,
                    after: tuple[str, str] | None = None, currency: str | None = None) -> list[tuple[str, str, Decimal, int]]:
    """``(customer id, currency, Σ balance, invoices)`` of the customers owing in ``bucket`` on
    ``as_of``, by customer and currency after ``after`` (a keyset page)."""
    t = Invoice.__table__
    query_filter = [t.c.status.in_(PAYABLE), _bucket_range(t, bucket, as_of)]
    if currency is not None:
        query_filter.append(t.c.currency == currency)
    if after is not None:
        query_filter.append(or_(t.c.customer_id > after[0], and_(t.c.customer_id == after[0],
                                                                 t.c.currency > after[1])))
    if is_postgresql(session):
        balance = _balance(t)
        rows = session.execute(select(t.c.customer_id, t.c.currency, func.sum(balance), func.count())
                               .where(*query_filter, balance > 0)
                               .group_by(t.c.customer_id, t.c.currency)
                               .order_by(t.c.customer_id, t.c.currency).limit(limit))
        return [(cid, cur, amount, count) for cid, cur, amount, count in rows]
    out: list[tuple[str, str, Decimal, int]] = []
    current: tuple[str, str] | None = None
    amount, count = ZERO, 0
    for cid, cur, total, paid, credited, refunded in session.execute(
            select(t.c.customer_id, t.c.currency, t.c.total, t.c.amount_paid, t.c.amount_credited,
                   t.c.amount_refunded).where(*query_filter).order_by(t.c.customer_id, t.c.currency)):
        value = (to_decimal_value(total) - to_decimal_value(paid) - to_decimal_value(credited)
                 + to_decimal_value(refunded))
        if value <= 0:
            continue
        if (cid, cur) != current:
            if current is not None:
                out.append((*current, amount, count))
                if len(out) >= limit:
                    return out
            current, amount, count = (cid, cur), ZERO, 0
        amount += value
        count += 1
    if current is not None and len(out) < limit:
        out.append((*current, amount, count))
    return out


@dataclass(frozen=True)
class CustomerStanding:
    """What a customer's billing status on a date is made of."""

    customer_id: str
    currency: str
    subscriptions: int
    running: bool  # a subscription runs without a cancellation, or is about to start
    cancelling: bool  # a cancelled subscription still runs until its end
    past_due: bool  # an invoice in its currency with a balance is past its due date


def customer_standings(session: Session, on: date, *, after: str | None = None,
                       batch_size: int = 5000) -> Iterator[CustomerStanding]:
    """Every customer's standing on ``on``, by id after ``after``, read ``batch_size`` at a time."""
    c, s = CustomerRow.__table__, SubscriptionRow.__table__
    running_now = or_(s.c.ends_before.is_(None), s.c.ends_before > on)
    running = func.max(case((or_(s.c.starts_on > on, and_(s.c.status == "active", running_now)), 1), else_=0))
    cancelling = func.max(case((and_(s.c.starts_on <= on, s.c.status == "cancelled", running_now), 1), else_=0))
    while True:
        query = select(c.c.id, c.c.currency).order_by(c.c.id).limit(batch_size)
        if after is not None:
            query = query.where(c.c.id > after)
        customers = session.execute(query).all()
        if not customers:
            return
        first, last = customers[0][0], customers[-1][0]
        subs = {cid: (n, r, x) for cid, n, r, x in session.execute(
            select(s.c.customer_id, func.count(), running, cancelling)
            .where(s.c.customer_id >= first, s.c.customer_id <= last).group_by(s.c.customer_id))}
        overdue = _past_due_customers(session, on, first, last)
        for cid, currency in customers:
            n, r, x = subs.get(cid, (0, 0, 0))
            yield CustomerStanding(cid, currency, n, bool(r), bool(x), (cid, currency) in overdue)
        if len(customers) < batch_size:
            return
        after = last


def _status_of_customers(on: date) -> tuple[Any, Any, Any]:
    """``(customers joined with their standing, the status expression, the customers table)`` by the
    rules of ``billing_engine.reporting.billing_status`` (PostgreSQL)."""
    c, s, t = CustomerRow.__table__, SubscriptionRow.__table__, Invoice.__table__
    running_now = or_(s.c.ends_before.is_(None), s.c.ends_before > on)
    subs = (select(s.c.customer_id.label("customer_id"), func.count().label("n"),
                   func.max(case((or_(s.c.starts_on > on, and_(s.c.status == "active", running_now)), 1),
                                 else_=0)).label("running"),
                   func.max(case((and_(s.c.starts_on <= on, s.c.status == "cancelled", running_now), 1),
                                 else_=0)).label("cancelling"))
            .group_by(s.c.customer_id).subquery())
    late = (select(t.c.customer_id.label("customer_id"), t.c.currency.label("currency"))
            .where(t.c.status.in_(PAYABLE), t.c.due_on < on, _balance(t) > 0).distinct().subquery())
    status = case((subs.c.n.is_(None), literal("none")), (late.c.customer_id.is_not(None), literal("past_due")),
                  (subs.c.running == 1, literal("active")), (subs.c.cancelling == 1, literal("cancelling")),
                  else_=literal("cancelled")).label("status")
    joined = c.outerjoin(subs, subs.c.customer_id == c.c.id).outerjoin(
        late, and_(late.c.customer_id == c.c.id, late.c.currency == c.c.currency))
    return joined, status, c


def status_counts(session: Session, on: date) -> dict[str, int] | None:
    """PostgreSQL: customers per billing status on ``on``, by the rules of
    ``billing_engine.reporting.billing_status`` (``none``, ``past_due``, ``active``, ``cancelling``,
    ``cancelled``); ``None`` elsewhere (the caller counts ``customer_standings``).

    While ``subscription_standings`` is kept (with ``mrr_month_ends``), one grouped count of its
    rows, the customers past due probed in a hash of the owed invoices past their due date (read
    from their index); else one grouped query over every customer and its subscriptions."""
    if not is_postgresql(session):
        return None
    state = revenue_store.month_ends_state(session)
    if state is None or state[1]:
        joined, status, _ = _status_of_customers(on)
        return {name: count for name, count in session.execute(
            select(status, func.count()).select_from(joined).group_by(status))}
    c, t = CustomerRow.__table__, Invoice.__table__
    k = revenue_store.SubscriptionStanding.__table__
    late = (select(t.c.customer_id, t.c.currency)
            .where(t.c.status.in_(PAYABLE), t.c.due_on < on, _balance(t) > 0))
    status = case((tuple_(k.c.customer_id, k.c.currency).in_(late), literal("past_due")),
                  (k.c.running_until > on, literal("active")), (k.c.cancelling_until > on, literal("cancelling")),
                  else_=literal("cancelled"))
    counts = {name: count for name, count in session.execute(select(status, func.count()).group_by(status))}
    customers = session.execute(select(func.count()).select_from(c)).scalar_one()
    if customers > sum(counts.values()):
        counts["none"] = customers - sum(counts.values())
    return counts


def status_customers(session: Session, on: date, status: str, *, limit: int, after: tuple[str, str] | None = None,
                     currency: str | None = None) -> list[tuple[str, str]] | None:
    """PostgreSQL: ``(customer id, currency)`` of the customers with ``status`` on ``on``, by id after
    ``after`` (a keyset page), in one query; ``None`` elsewhere (the caller reads
    ``customer_standings``)."""
    if not is_postgresql(session):
        return None
    joined, expression, c = _status_of_customers(on)
    ranked = select(c.c.id.label("id"), c.c.currency.label("currency"), expression).select_from(joined)
    if currency is not None:
        ranked = ranked.where(c.c.currency == currency)
    if after is not None:
        ranked = ranked.where(or_(c.c.id > after[0], and_(c.c.id == after[0], c.c.currency > after[1])))
    inner = ranked.subquery()
    return [(cid, cur) for cid, cur in session.execute(
        select(inner.c.id, inner.c.currency).where(inner.c.status == status)
        .order_by(inner.c.id, inner.c.currency).limit(limit))]


def _past_due_customers(session: Session, on: date, first: str, last: str) -> set[tuple[str, str]]:
    """``(customer id, currency)`` with a payable invoice past due on ``on`` with a balance > 0."""
    t = Invoice.__table__
    where = [t.c.status.in_(PAYABLE), t.c.due_on < on, t.c.customer_id >= first, t.c.customer_id <= last]
    if is_postgresql(session):
        return {(cid, cur) for cid, cur in session.execute(
            select(t.c.customer_id, t.c.currency).where(*where, _balance(t) > 0).distinct())}
    out: set[tuple[str, str]] = set()
    for cid, cur, total, paid, credited, refunded in session.execute(
            select(t.c.customer_id, t.c.currency, t.c.total, t.c.amount_paid, t.c.amount_credited,
                   t.c.amount_refunded).where(*where)):
        if (to_decimal_value(total) - to_decimal_value(paid) - to_decimal_value(credited)
                + to_decimal_value(refunded)) > 0:
            out.add((cid, cur))
    return out


def customers_named(session: Session, ids: Sequence[str]) -> dict[str, str]:
    """The name of each of these customers."""
    c = CustomerRow.__table__
    out: dict[str, str] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 900):
        out.update(dict(session.execute(select(c.c.id, c.c.name).where(c.c.id.in_(wanted[start:start + 900]))).all()))
    return out
