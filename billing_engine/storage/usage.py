"""Usage records: stored once per ``(source, idempotency_key)`` (UNIQUE), dated in the
customer's timezone, and summed per subscription for the bill run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import one_of


class UsageRecord(SQLModel, table=True):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key", name="uq_usage_records_source_key"),
        Index("ix_usage_records_item_on", "subscription_id", "subscription_item_id", "occurred_on"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", max_length=64, nullable=False)
    subscription_item_id: str = Field(max_length=64, nullable=False)
    quantity: Decimal = money_field()
    occurred_at: datetime = timestamp_field()
    occurred_on: date = Field(nullable=False)  # in the customer's timezone
    source: str = Field(max_length=200, nullable=False)
    idempotency_key: str = Field(max_length=200, nullable=False)
    recorded_at: datetime = timestamp_field()


def find_usage(session: Session, source: str, key: str) -> UsageRecord | None:
    return session.scalars(select(UsageRecord).where(UsageRecord.source == source,
                                                  UsageRecord.idempotency_key == key)).first()


def usage_totals(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                 before: date) -> list[tuple[str, date, Decimal]]:
    """``(item id, occurred_on, quantity)`` per record in ``[on_or_after, before)`` (summed in Python:
    SUM over ExactDecimal text on SQLite would go through a float)."""
    t = UsageRecord.__table__
    return list(session.execute(
        select(t.c.subscription_item_id, t.c.occurred_on, t.c.quantity)
        .where(t.c.subscription_id == subscription_id, t.c.subscription_item_id.in_(list(item_ids)),
               t.c.occurred_on >= on_or_after, t.c.occurred_on < before)
    ).all())


def usage_records_for_subscriptions(session: Session, subscription_ids: Sequence[str],
                                    before: date) -> dict[str, list[tuple[str, date, Decimal]]]:
    """Per subscription, ``(item id, occurred_on, quantity)`` of its usage records before ``before``:
    one query per 900 subscriptions."""
    t = UsageRecord.__table__
    out: dict[str, list[tuple[str, date, Decimal]]] = {}
    ids = list(subscription_ids)
    for start in range(0, len(ids), 900):
        rows = session.execute(select(t.c.subscription_id, t.c.subscription_item_id, t.c.occurred_on, t.c.quantity)
                               .where(one_of(session, t.c.subscription_id, ids[start:start + 900]), t.c.occurred_on < before))
        for sid, item_id, on, quantity in rows:
            out.setdefault(sid, []).append((item_id, on, quantity))
    return out
