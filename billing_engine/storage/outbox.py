"""The outbox table and THE writer of its rows, ``add_events``.

Every engine change Salesforce must hear about becomes one ``OutboxEvent``
(``billing_engine.outbox``: topics, payload encoding, coalescing) written here in the
same transaction as the change. The delivery columns (status, attempts, lease) belong
to the connector's push, which claims and settles the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Index, and_, select, text, update
from sqlmodel import Field, Session, SQLModel

from billing_engine.outbox import STATUS_DEAD, STATUS_DONE, STATUS_PENDING, OutboxEvent
from billing_engine.storage.columns import timestamp_field
from billing_engine.storage.database import bulk_insert, dialect_insert, upsert_arrays


class OutboxRow(SQLModel, table=True):
    """See ``billing_engine.outbox`` for the contract."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at", "id"),
        Index("ix_outbox_aggregate", "aggregate_type", "aggregate_id"),
        Index("uq_outbox_pending_coalesce", "coalesce_key", unique=True,
              sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=60, nullable=False)
    aggregate_type: str = Field(max_length=40, nullable=False)
    aggregate_id: str = Field(max_length=64, nullable=False)
    payload: str = Field(nullable=False)
    coalesce_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp_field()
    status: str = Field(default="pending", max_length=16, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime | None = timestamp_field(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    salesforce_id: str | None = Field(default=None, max_length=18)
    locked_by: str | None = Field(default=None, max_length=100)
    locked_at: datetime | None = timestamp_field(nullable=True)


def add_events(session: Session, events: Iterable[OutboxEvent]) -> None:
    """THE outbox writer: one row per event, in the caller's transaction.

    Events with a ``coalesce_key`` replace the payload of the pending row with that key
    (one pending row per snapshot); the others are inserted (``COPY`` for large batches
    on PostgreSQL)."""
    rows = [_row(event) for event in events]
    plain = [r for r in rows if not r.get("coalesce_key")]
    bulk_insert(session, OutboxRow, plain)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # one statement may touch a pending row once: keep each key's last row
        if row.get("coalesce_key"):
            latest[row["coalesce_key"]] = row
    if not latest:
        return
    t = OutboxRow.__table__
    if upsert_arrays(session, t, list(latest.values()), ["coalesce_key"], ["payload", "created_at"],
                      "status = 'pending'"):
        return
    stmt = dialect_insert(session, t)
    stmt = stmt.on_conflict_do_update(
        index_elements=["coalesce_key"], index_where=text("status = 'pending'"),
        set_={"payload": stmt.excluded.payload, "created_at": stmt.excluded.created_at},
    )
    session.execute(stmt, list(latest.values()))


def _row(event: OutboxEvent) -> dict[str, Any]:
    if event.created_at is None:
        raise ValueError(f"outbox event {event.topic} for {event.aggregate_type} {event.aggregate_id} "
                         "has no created_at")
    return {"topic": event.topic, "aggregate_type": event.aggregate_type, "aggregate_id": event.aggregate_id,
            "payload": event.payload_json(), "coalesce_key": event.coalesce_key, "created_at": event.created_at,
            "status": STATUS_PENDING, "attempts": 0}


def requeue(session: Session, aggregate_type: str, aggregate_id: str, topics: Sequence[str], *,
            now: datetime) -> bool:
    """Put the delivered or dead events of these topics about one aggregate back to pending (their
    order kept: same ids). False when the aggregate has no such event at all."""
    t = OutboxRow.__table__
    where = and_(t.c.aggregate_type == aggregate_type, t.c.aggregate_id == aggregate_id, t.c.topic.in_(topics))
    if session.execute(select(t.c.id).where(where).limit(1)).first() is None:
        return False
    session.execute(update(t).where(where, t.c.status.in_((STATUS_DONE, STATUS_DEAD)))
                    .values(status=STATUS_PENDING, attempts=0, next_attempt_at=now, last_error=None,
                            locked_by=None, locked_at=None))
    return True
