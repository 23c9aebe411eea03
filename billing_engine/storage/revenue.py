"""The MRR last announced per customer and currency (``customer_mrr``): the bill run compares
each customer's MRR with it to announce changes that take effect on their own date. And each
customer's MRR and ARR at month ends where they change (``mrr_month_ends``): the MRR bridge, the
dashboard's series and movements are sums over it (docs/reporting.md, *How the figures are kept*)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Date,
    Index,
    Numeric,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
)
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.columns import money_field, to_decimal_value
from billing_engine.storage.database import dialect_insert, is_postgresql, one_of, upsert_arrays

ZERO = Decimal(0)


class CustomerMrr(SQLModel, table=True):
    """The MRR last announced for a customer (``customer.summary_changed``), per currency.

    The bill run compares each customer's MRR on its date with this row and announces
    the customers whose MRR changed since (a cancellation or a renewal taking effect,
    a change dated in the future), so every change reaches Salesforce once.
    """

    __tablename__ = "customer_mrr"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    mrr: Decimal = money_field()
    measured_on: date = Field(nullable=False)


def announced_mrr(session: Session, customer_ids: Sequence[str]) -> dict[tuple[str, str], Decimal]:
    t = CustomerMrr.__table__
    out: dict[tuple[str, str], Decimal] = {}
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        for cid, currency, mrr in session.execute(select(t.c.customer_id, t.c.currency, t.c.mrr)
                                                  .where(one_of(session, t.c.customer_id, ids[start:start + 900]))):
            out[(cid, currency)] = mrr
    return out


def save_announced_mrr(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert ``{customer_id, currency, mrr, measured_on}`` rows."""
    if not rows:
        return
    t = CustomerMrr.__table__
    if upsert_arrays(session, t, rows, ["customer_id", "currency"], ["mrr", "measured_on"]):
        return
    stmt = dialect_insert(session, t)
    stmt = stmt.on_conflict_do_update(index_elements=["customer_id", "currency"],
                                      set_={"mrr": stmt.excluded.mrr, "measured_on": stmt.excluded.measured_on})
    session.execute(stmt, list(rows))


# ---------------------------------------------------------------- MRR at month ends


class MrrMonthEnd(SQLModel, table=True):
    """A customer's MRR and ARR at a month end, per currency, kept where they change.

    One row per ``(customer, currency, month)`` whose month-end MRR (rounded) or ARR differs from
    the previous month end's, plus one at the first month end a subscription covers: the values
    before and after and the movement's kind (``new``, ``expansion``, ``reactivation``,
    ``contraction``, ``churn``; NULL when only ARR moved, or nothing). A customer's value at a
    month end is its last row at or before it; sums of ``after - before`` up to a month give
    the month's totals. Recomputed for a customer whenever one of its subscriptions changes.
    """

    __tablename__ = "mrr_month_ends"
    __table_args__ = (Index("ix_mrr_month_ends_month", "month", "currency", "kind"),)
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    month: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    mrr_before: Decimal = money_field()
    mrr: Decimal = money_field()
    arr_before: Decimal = money_field()
    arr: Decimal = money_field()
    kind: str | None = Field(default=None, max_length=16, nullable=True)


class MrrMonthEndsState(SQLModel, table=True):
    """How far ``mrr_month_ends`` is kept (its last month end, ``kept_through``) and whether it awaits a
    rebuild (``billsync metrics rebuild-mrr``). Without this row, or while it awaits one, the
    figures are computed from the subscriptions."""

    __tablename__ = "mrr_month_ends_state"
    id: int = Field(primary_key=True)
    kept_through: str = Field(max_length=7, nullable=False)  # YYYY-MM
    stale: bool = Field(default=False, nullable=False)
    reason: str = Field(default="", max_length=200, nullable=False)


class SubscriptionStanding(SQLModel, table=True):
    """What a customer's billing status on any date is made of, from its subscriptions (kept with
    ``mrr_month_ends``, one row per customer with a subscription): on a date ``on`` a subscription
    runs or is about to start while ``on < running_until`` (the latest start, and the latest end of
    a subscription not cancelled, ``9999-12-31`` when one has none); once none runs, one cancelled
    still runs until its end while ``on < cancelling_until`` (NULL: no cancelled subscription).
    ``currency`` is the customer's (fixed once it has a subscription), for its invoices past due."""

    __tablename__ = "subscription_standings"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(max_length=3, nullable=False)
    running_until: date = Field(nullable=False)
    cancelling_until: date | None = Field(default=None, nullable=True)


#: A subscription without an end runs until this day.
NO_END = date.max
#: ``(currency, running_until, cancelling_until)``.
Standing = tuple[str, date, date | None]

MonthEndRow = tuple[str, str, str, Decimal, Decimal, Decimal, Decimal, str | None]
_COLUMNS = ("customer_id", "currency", "month", "mrr_before", "mrr", "arr_before", "arr", "kind")


def lock_customer(session: Session, customer_id: str) -> None:
    """Serialise the recomputation of one customer's month ends (PostgreSQL row lock, ``FOR NO KEY
    UPDATE``: invoices may still be written for it; SQLite's writers are serialised already)."""
    if is_postgresql(session):
        c = CustomerRow.__table__
        session.execute(select(c.c.id).where(c.c.id == customer_id).with_for_update(key_share=True))


def replace_month_ends(session: Session, customer_ids: Sequence[str], rows: Sequence[MonthEndRow]) -> None:
    """Replace these customers' rows with ``rows``."""
    t = MrrMonthEnd.__table__
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        session.execute(delete(t).where(one_of(session, t.c.customer_id, ids[start:start + 900])))
    insert_month_ends(session, rows)


def insert_month_ends(session: Session, rows: Sequence[MonthEndRow]) -> None:
    if rows:
        session.execute(insert(MrrMonthEnd.__table__), [dict(zip(_COLUMNS, row, strict=True)) for row in rows])


def clear_month_ends(session: Session) -> None:
    session.execute(delete(MrrMonthEnd.__table__))


def month_ends_of(session: Session, customer_ids: Sequence[str] | None = None) -> list[MonthEndRow]:
    """Stored rows (of these customers, or all), by customer, currency and month."""
    t = MrrMonthEnd.__table__
    query = select(*(t.c[name] for name in _COLUMNS)).order_by(t.c.customer_id, t.c.currency, t.c.month)
    if customer_ids is not None:
        query = query.where(one_of(session, t.c.customer_id, list(customer_ids)))
    return [(cid, cur, month, to_decimal_value(mb), to_decimal_value(m), to_decimal_value(ab), to_decimal_value(a),
             kind) for cid, cur, month, mb, m, ab, a, kind in session.execute(query)]


@dataclass(frozen=True)
class MonthEndTotal:
    """Σ over one month, currency and kind (None: no MRR movement) of the rows' changes."""

    month: str
    currency: str
    kind: str | None
    mrr_change: Decimal  # Σ (mrr - mrr_before)
    arr_change: Decimal
    customers_change: int  # Σ (mrr > 0) - (mrr_before > 0)
    customers: int  # rows
    moved: Decimal  # Σ |mrr - mrr_before|


def month_end_totals(session: Session, through_month: str) -> list[MonthEndTotal]:
    """The rows' changes summed per month, currency and kind up to ``through_month``: PostgreSQL
    sums ``NUMERIC`` in one grouped query; on SQLite (decimal text) Python sums ``Decimal``."""
    t = MrrMonthEnd.__table__
    if is_postgresql(session):
        def n(column: Any) -> Any:
            return type_coerce(column, Numeric(asdecimal=True))

        mrr, mrr_before = n(t.c.mrr), n(t.c.mrr_before)
        change = mrr - mrr_before
        counted = func.sum(case((mrr > 0, 1), else_=0)) - func.sum(case((mrr_before > 0, 1), else_=0))
        rows = session.execute(
            select(t.c.month, t.c.currency, t.c.kind, func.sum(change), func.sum(n(t.c.arr) - n(t.c.arr_before)),
                   counted, func.count(), func.sum(func.abs(change)))
            .where(t.c.month <= through_month).group_by(t.c.month, t.c.currency, t.c.kind))
        return [MonthEndTotal(m, cur, kind, mrr, arr, int(n_change), n, moved)
                for m, cur, kind, mrr, arr, n_change, n, moved in rows]
    sums: dict[tuple[str, str, str | None], list[Any]] = {}
    for m, cur, kind, mb, mrr, ab, arr in session.execute(
            select(t.c.month, t.c.currency, t.c.kind, t.c.mrr_before, t.c.mrr, t.c.arr_before, t.c.arr)
            .where(t.c.month <= through_month)):
        before, after = to_decimal_value(mb), to_decimal_value(mrr)
        entry = sums.setdefault((m, cur, kind), [ZERO, ZERO, 0, 0, ZERO])
        entry[0] += after - before
        entry[1] += to_decimal_value(arr) - to_decimal_value(ab)
        entry[2] += (after > 0) - (before > 0)
        entry[3] += 1
        entry[4] += abs(after - before)
    return [MonthEndTotal(m, cur, kind, *values) for (m, cur, kind), values in sums.items()]


def month_end_currencies(session: Session) -> set[str]:
    t = MrrMonthEnd.__table__
    return set(session.execute(select(t.c.currency).distinct()).scalars())


def month_end_movements(session: Session, month: str, *, limit: int, after: tuple[str, str] | None = None,
                        currency: str | None = None, kind: str | None = None) -> list[MonthEndRow]:
    """The rows of ``month`` with a movement, by customer and currency after ``after`` (keyset)."""
    t = MrrMonthEnd.__table__
    where = [t.c.month == month, t.c.kind.is_not(None)]
    if currency is not None:
        where.append(t.c.currency == currency)
    if kind is not None:
        where.append(t.c.kind == kind)
    if after is not None:
        where.append(or_(t.c.customer_id > after[0], and_(t.c.customer_id == after[0], t.c.currency > after[1])))
    query = (select(*(t.c[name] for name in _COLUMNS)).where(*where)
             .order_by(t.c.customer_id, t.c.currency).limit(limit))
    return [(cid, cur, m, to_decimal_value(mb), to_decimal_value(v), to_decimal_value(ab), to_decimal_value(a), k)
            for cid, cur, m, mb, v, ab, a, k in session.execute(query)]


def standings_from_subscriptions(session: Session, customer_ids: Sequence[str] | None = None,
                                 ) -> dict[str, Standing]:
    """``customer id → (currency, running_until, cancelling_until)`` computed from the subscriptions
    (of these customers, or all): see ``SubscriptionStanding``."""
    from billing_engine.storage.subscriptions import SubscriptionRow

    s, c = SubscriptionRow.__table__, CustomerRow.__table__
    end = func.coalesce(s.c.ends_before, literal(NO_END, Date))
    query = (select(s.c.customer_id, c.c.currency, func.max(s.c.starts_on),
                    func.max(case((s.c.status == "active", end))), func.max(case((s.c.status == "cancelled", end))))
             .join(c, c.c.id == s.c.customer_id).group_by(s.c.customer_id, c.c.currency))
    if customer_ids is not None:
        query = query.where(one_of(session, s.c.customer_id, list(customer_ids)))
    return {cid: (currency, max(_day(started), _day(running) or _day(started)), _day(cancelling))
            for cid, currency, started, running, cancelling in session.execute(query)}


def _day(value: Any) -> Any:
    """A date from an aggregate (SQLite returns its ISO text)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def replace_standings(session: Session, customer_ids: Sequence[str], standings: dict[str, Standing]) -> None:
    """Replace these customers' standings with ``standings`` (customers without one: no row)."""
    t = SubscriptionStanding.__table__
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        session.execute(delete(t).where(one_of(session, t.c.customer_id, ids[start:start + 900])))
    insert_standings(session, standings)


def insert_standings(session: Session, standings: dict[str, Standing]) -> None:
    rows = [{"customer_id": cid, "currency": currency, "running_until": running, "cancelling_until": cancelling}
            for cid, (currency, running, cancelling) in standings.items()]
    for start in range(0, len(rows), 5000):
        session.execute(insert(SubscriptionStanding.__table__), rows[start:start + 5000])


def clear_standings(session: Session) -> None:
    session.execute(delete(SubscriptionStanding.__table__))


def standings_of(session: Session) -> dict[str, Standing]:
    """Every kept standing."""
    t = SubscriptionStanding.__table__
    return {cid: (currency, running, cancelling) for cid, currency, running, cancelling in session.execute(
        select(t.c.customer_id, t.c.currency, t.c.running_until, t.c.cancelling_until))}


def month_ends_state(session: Session) -> tuple[str, bool] | None:
    """``(kept through, awaiting a rebuild)``, or None when never built."""
    row = session.execute(select(MrrMonthEndsState.__table__.c.kept_through, MrrMonthEndsState.__table__.c.stale)
                          .where(MrrMonthEndsState.__table__.c.id == 1)).first()
    return None if row is None else (row[0], bool(row[1]))


def set_month_ends_state(session: Session, kept_through: str, *, stale: bool = False, reason: str = "") -> None:
    t = MrrMonthEndsState.__table__
    session.execute(delete(t))
    session.execute(insert(t).values(id=1, kept_through=kept_through, stale=stale, reason=reason[:200]))


def lock_month_ends(session: Session) -> None:
    """PostgreSQL: wait for the transactions writing rows and hold them off until commit (a rebuild)."""
    if is_postgresql(session):
        session.execute(text("LOCK TABLE mrr_month_ends IN EXCLUSIVE MODE"))
