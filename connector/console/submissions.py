"""A console form is carried out once: each action form carries a random key (``submission``),
claimed in the transaction of its effect (table ``console_submissions``).

A double click, the browser sending the form again, or Back and send: the second request finds
the key taken (it waits on the key's unique index on PostgreSQL, on the write lock on SQLite,
until the first commits) and changes nothing. A request that fails rolls its claim back with
the rest, so the form can be corrected and sent again with the same key.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

from connector.database import is_postgresql
from connector.sync.tables import UtcDateTime

#: 32 lower-case hexadecimal digits, as ``new_key`` makes them.
KEY_PATTERN = r"^[0-9a-f]{32}$"


class SubmissionRow(SQLModel, table=True):
    __tablename__ = "console_submissions"

    key: str = Field(primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="console_users.id")
    action: str = Field(max_length=40)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


def new_key() -> str:
    """A form's submission key."""
    return secrets.token_hex(16)


def claim(session: Session, key: str, *, user_id: int, action: str, now: datetime) -> bool:
    """Take ``key`` in the caller's transaction: True the first time, False when the form was
    already carried out."""
    table = SubmissionRow.__table__  # type: ignore[attr-defined]
    dialect = postgresql if is_postgresql(session) else sqlite
    insert = dialect.insert(table).values(key=key, user_id=user_id, action=action, created_at=now) \
        .on_conflict_do_nothing(index_elements=["key"])
    if session.execute(insert.returning(table.c.key)).first() is not None:
        return True
    return session.execute(select(table.c.key).where(table.c.key == key)).first() is None
