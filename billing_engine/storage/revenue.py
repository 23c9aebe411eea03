"""The MRR last announced per customer and currency (``customer_mrr``): the bill run compares
each customer's MRR with it to announce changes that take effect on their own date."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import money_field
from billing_engine.storage.database import dialect_insert, one_of, upsert_arrays


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
