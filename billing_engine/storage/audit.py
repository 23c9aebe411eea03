"""The audit log (``audit_log``): who did what to which record, when, with the values before
and after, written in the same transaction as the change it describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, insert, select
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import timestamp_field

ACTOR_LENGTH = 200
ACTION_LENGTH = 100
TARGET_TYPE_LENGTH = 50
TARGET_ID_LENGTH = 200
REQUEST_ID_LENGTH = 64


class AuditRow(SQLModel, table=True):
    """One recorded action. ``before`` and ``after`` are JSON text (``None`` when the record
    did not exist before, or does not after)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id", "id"),
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = timestamp_field()
    actor: str = Field(max_length=ACTOR_LENGTH)
    action: str = Field(max_length=ACTION_LENGTH)
    target_type: str = Field(max_length=TARGET_TYPE_LENGTH)
    target_id: str = Field(max_length=TARGET_ID_LENGTH)
    before: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    after: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    request_id: str | None = Field(default=None, max_length=REQUEST_ID_LENGTH, nullable=True)


_INSERT = insert(AuditRow.__table__).returning(AuditRow.__table__.c.id)  # type: ignore[attr-defined]


def insert_audit_row(session: Session, values: dict[str, Any]) -> int:
    """One entry; the statement is built once and gets its values as parameters (every write
    request records an entry, and ``.values(...)`` would build and key a new statement each time)."""
    return session.execute(_INSERT, values).scalar_one()


def select_audit_rows(session: Session, *, limit: int, before_id: int | None = None,
                      target_type: str | None = None, target_id: str | None = None,
                      actor: str | None = None, action: str | None = None) -> list[AuditRow]:
    """Newest first (highest id first), at most ``limit`` rows with an id below ``before_id``."""
    t = AuditRow
    query = select(t)
    if before_id is not None:
        query = query.where(t.id < before_id)  # type: ignore[operator]
    if target_type is not None:
        query = query.where(t.target_type == target_type)
    if target_id is not None:
        query = query.where(t.target_id == target_id)
    if actor is not None:
        query = query.where(t.actor == actor)
    if action is not None:
        query = query.where(t.action == action)
    query = query.order_by(t.id.desc()).limit(limit)  # type: ignore[union-attr]
    return list(session.execute(query).scalars())
