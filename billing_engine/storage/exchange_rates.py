"""Exchange rates per day and currency pair (``exchange_rates``), for the reporting currency
(docs/reporting.md §2 Exchange rates and conversion): one row per (date, base, quote)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import UniqueConstraint, and_, or_, select
from sqlmodel import Field, Session, SQLModel

from billing_engine.exchange_rates import ExchangeRate
from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import dialect_insert


class ExchangeRateRow(SQLModel, table=True):
    """``1 base = rate quote`` on ``rate_on``, where it came from and who entered it."""

    __tablename__ = "exchange_rates"
    __table_args__ = (UniqueConstraint("rate_on", "base", "quote", name="uq_exchange_rates_day_pair"),)
    id: int | None = Field(default=None, primary_key=True)
    rate_on: date = Field(nullable=False)
    base: str = Field(max_length=3, nullable=False)
    quote: str = Field(max_length=3, nullable=False)
    rate: Decimal = money_field()
    source: str = Field(max_length=16, nullable=False)  # manual | ecb
    entered_by: str = Field(default="", max_length=200, nullable=False)
    entered_at: datetime = timestamp_field()


def _rate(row: Any) -> ExchangeRate:
    return ExchangeRate(on=row.rate_on, base=row.base, quote=row.quote, rate=row.rate, source=row.source,
                        entered_by=row.entered_by)


def find_rate(session: Session, on: date, base: str, quote: str) -> ExchangeRateRow | None:
    return session.scalars(select(ExchangeRateRow).where(
        ExchangeRateRow.rate_on == on, ExchangeRateRow.base == base, ExchangeRateRow.quote == quote)).first()


def save_rates(session: Session, rates: Sequence[ExchangeRate], *, entered_at: datetime) -> None:
    """Upsert rates by (date, base, quote): a rate given again replaces the stored one."""
    if not rates:
        return
    t = ExchangeRateRow.__table__
    rows = [{"rate_on": r.on, "base": r.base, "quote": r.quote, "rate": r.rate, "source": r.source,
             "entered_by": r.entered_by, "entered_at": entered_at} for r in rates]
    for start in range(0, len(rows), 500):
        stmt = dialect_insert(session, t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["rate_on", "base", "quote"],
            set_={name: stmt.excluded[name] for name in ("rate", "source", "entered_by", "entered_at")})
        session.execute(stmt, rows[start:start + 500])


def rates_between(session: Session, first: date, last: date, base: str,
                  quotes: Sequence[str] | None = None) -> list[ExchangeRate]:
    """Every rate of ``base`` dated from ``first`` to ``last`` inclusive (of these ``quotes`` only,
    when given), by date and quote."""
    t = ExchangeRateRow.__table__
    query = select(t).where(t.c.base == base, t.c.rate_on >= first, t.c.rate_on <= last)
    if quotes is not None:
        query = query.where(t.c.quote.in_(sorted(quotes)))
    rows = session.execute(query.order_by(t.c.rate_on, t.c.quote))
    return [_rate(row) for row in rows]


def rates_page(session: Session, *, limit: int, after: tuple[date, str] | None = None,
               quote: str | None = None, first: date | None = None, last: date | None = None) -> list[ExchangeRate]:
    """Rates by date then currency after ``after`` (a keyset page), optionally of one currency and
    within dates."""
    t = ExchangeRateRow.__table__
    query = select(t)
    if after is not None:
        query = query.where(or_(t.c.rate_on > after[0], and_(t.c.rate_on == after[0], t.c.quote > after[1])))
    if quote is not None:
        query = query.where(t.c.quote == quote)
    if first is not None:
        query = query.where(t.c.rate_on >= first)
    if last is not None:
        query = query.where(t.c.rate_on <= last)
    return [_rate(row) for row in session.execute(query.order_by(t.c.rate_on, t.c.quote).limit(limit))]
