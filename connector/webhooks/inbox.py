"""The webhook inbox table and its insert.

``webhook_inbox`` holds every change notification billsync has acknowledged to
Salesforce, one row per record (or per object for a full resync), stored before
the acknowledgement and processed after it. Invariants:

- ``dedup_key`` is UNIQUE: ``om:<Notification/Id>`` for an Outbound Message,
  ``cdc:<transactionKey>:<sequenceNumber>:<recordId>`` for a CDC event (without
  the record id for ``GAP_OVERFLOW``), so a redelivered notification is a no-op;
- ``payload`` keeps the notification as received, for the record only: processing
  reads the record again from Salesforce and never trusts these field values;
- ``change_origin`` is CDC's ``changeOrigin``, or ``user:<LastModifiedById>`` for an
  Outbound Message carrying that field: what processing uses to ignore billsync's
  own writes;
- the worker works it as a queue (``connector.queue``, described by
  ``connector.webhooks.processing.INBOX``): it claims rows whose ``status`` is
  ``pending`` or ``failed`` (or ``in_flight`` under a lease that ran out) with
  ``next_attempt_at <= now`` (index on ``(status, next_attempt_at)``), with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; while a row is in flight,
  ``next_attempt_at`` is the end of its lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

INBOX_SOURCES = ("outbound_message", "cdc")
INBOX_ACTIONS = ("upsert", "delete", "refetch", "resync_object")
INBOX_STATUSES = ("pending", "in_flight", "done", "failed", "dead")

# Column sizes; the webhook parsers refuse longer values with a 400 rather than
# letting PostgreSQL reject them inside the transaction.
DEDUP_KEY_LENGTH = 160
OBJECT_NAME_LENGTH = 80
RECORD_ID_LENGTH = 18
CHANGE_ORIGIN_LENGTH = 255


def _at(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class WebhookInbox(SQLModel, table=True):
    """One acknowledged change notification, waiting to be processed (or processed)."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_webhook_inbox_dedup_key"),
        Index("ix_webhook_inbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)  # INBOX_SOURCES
    dedup_key: str = Field(max_length=DEDUP_KEY_LENGTH)
    object_name: str = Field(max_length=OBJECT_NAME_LENGTH)
    record_id: str | None = Field(default=None, max_length=RECORD_ID_LENGTH)  # None: the whole object
    action: str = Field(max_length=16)  # INBOX_ACTIONS
    change_origin: str | None = Field(default=None, max_length=CHANGE_ORIGIN_LENGTH)
    received_at: datetime = _at()
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)  # INBOX_STATUSES
    attempts: int = Field(default=0)
    next_attempt_at: datetime = _at()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    processed_at: datetime | None = _at(nullable=True)


def add_to_inbox(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert inbox rows, skipping any whose ``dedup_key`` is already stored.

    Returns how many rows were new. Runs inside the caller's transaction: nothing
    is visible (or acknowledged) before the caller commits.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = WebhookInbox.__table__
    # One cached statement, executed with a list of rows: SQLAlchemy batches it into
    # multi-row INSERTs ("insertmanyvalues") and returns only the rows that were new.
    statement = insert(table).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(table.c.id)
    # Sorted by key, so concurrent requests with overlapping notifications lock their keys in
    # the same order and wait for each other instead of deadlocking (PostgreSQL).
    ordered = sorted(rows, key=lambda row: row["dedup_key"])
    return len(session.execute(statement, ordered).all())
