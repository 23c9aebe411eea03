"""The MRR forecasts as they were made: one snapshot per month of making.

``mrr_forecasts``: one row per month the forecast was made in (``made_in``), currency and month
forecast, with the contracted and expected MRR and the band (``billing_engine.forecast``). The
primary key ``(made_in, currency, month)`` keeps one snapshot per month: storing it again
changes nothing (``INSERT … ON CONFLICT DO NOTHING``), so what was forecast stays what it was and
can be compared with what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Field, Session, SQLModel

from billing_engine.forecast import ForecastMonth
from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import dialect_insert


class MrrForecast(SQLModel, table=True):
    __tablename__ = "mrr_forecasts"
    made_in: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    currency: str = Field(primary_key=True, max_length=3)
    month: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    horizon: int = Field(nullable=False)  # 1: the month it was made in
    contracted: Decimal = money_field()
    expected: Decimal = money_field()
    low: Decimal = money_field()
    high: Decimal = money_field()
    made_at: datetime = timestamp_field()


StoredMonth = tuple[str, str, ForecastMonth]  # (made_in, currency, month's forecast)


def has_snapshot(session: Session, made_in: str) -> bool:
    t = MrrForecast
    return session.scalar(select(t.made_in).where(t.made_in == made_in).limit(1)) is not None


def insert_snapshot(session: Session, made_in: str, months: Sequence[tuple[str, ForecastMonth]],
                    made_at: datetime) -> int:
    """Store the forecast made in ``made_in`` (``(currency, month)`` rows); rows already stored
    for the same month of making are kept as they are. The number of rows written."""
    if not months:
        return 0
    table = MrrForecast.__table__  # type: ignore[attr-defined]
    rows = [{"made_in": made_in, "currency": currency, "month": m.month, "horizon": m.horizon,
             "contracted": m.contracted, "expected": m.expected, "low": m.low, "high": m.high, "made_at": made_at}
            for currency, m in months]
    written = session.execute(dialect_insert(session, table).values(rows).on_conflict_do_nothing(
        index_elements=["made_in", "currency", "month"]).returning(table.c.month))
    return len(written.all())


def snapshots_through(session: Session, last_month: str, *, currency: str | None = None,
                      first_made_in: str | None = None) -> list[StoredMonth]:
    """The stored forecasts of months up to ``last_month``, by month of making, currency and month."""
    t = MrrForecast
    stmt = select(t).where(t.month <= last_month)
    if currency is not None:
        stmt = stmt.where(t.currency == currency)
    if first_made_in is not None:
        stmt = stmt.where(t.made_in >= first_made_in)
    return [(r.made_in, r.currency, ForecastMonth(r.month, r.horizon, r.contracted, r.expected, r.low, r.high))
            for r in session.scalars(stmt.order_by(t.made_in, t.currency, t.month))]


def snapshot_of(session: Session, made_in: str) -> list[StoredMonth]:
    t = MrrForecast
    return [(r.made_in, r.currency, ForecastMonth(r.month, r.horizon, r.contracted, r.expected, r.low, r.high))
            for r in session.scalars(select(t).where(t.made_in == made_in).order_by(t.currency, t.month))]
