"""``Idempotency-Key`` on POST (table ``api_idempotency_keys``), docs/api.md *Idempotency*.

Stripe's semantics. A POST that carries an ``Idempotency-Key`` header:

- the first time, runs, and its response (status, body, ``Location``) is stored with the
  key and a fingerprint of the request (method, path, query, canonical JSON body);
- again with the same key and the same request: the stored response is sent back, with
  ``Idempotent-Replayed: true``, and nothing runs;
- again with the same key and another request: 409 problem, nothing runs.

Keys belong to the API key that sent them (two clients may use the same value) and are
kept ``API_IDEMPOTENCY_HOURS`` (at least 24 hours); older ones are purged by the web
process, at most once an hour. A request that fails (4xx, 5xx) stores nothing: its key may
be used again. A POST without the header runs every time it is sent.

Concurrency: the key's row is inserted at the start of the route's own transaction and its
response stored at the end of it, so the key, the change and its audit entry commit
together or not at all. A concurrent duplicate waits on the key's unique index (PostgreSQL)
or on the write lock (SQLite, ``BEGIN IMMEDIATE``) until the first commits, then finds the
stored response and replays it: 100 identical requests sent at once make one change.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Request, Response
from sqlalchemy import Column, Engine, Index, Text, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

from connector.api.problems import IDEMPOTENCY_KEY_REUSED, ApiProblem, malformed
from connector.database import is_postgresql, transaction
from connector.sync.tables import UtcDateTime

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_LENGTH = 255
#: Printable ASCII without spaces: what the header may carry.
KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{KEY_LENGTH}}}")
#: Response headers stored with the response and replayed.
STORED_HEADERS = ("Content-Type", "Location")


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "api_idempotency_keys"
    __table_args__ = (Index("ix_api_idempotency_keys_created_at", "created_at"),)

    api_key_id: int = Field(primary_key=True, foreign_key="api_keys.id")
    key: str = Field(primary_key=True, max_length=KEY_LENGTH)
    request_hash: str = Field(max_length=64)
    status: int | None = Field(default=None, nullable=True)
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    headers: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


@dataclass(frozen=True)
class Stored:
    request_hash: str
    status: int | None
    body: str | None
    headers: dict[str, str]


def key_of(request: Request) -> str | None:
    """The request's ``Idempotency-Key``, ``None`` without one; a 400 problem when malformed."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not KEY_PATTERN.fullmatch(value):
        raise malformed(f"{HEADER} must be 1 to {KEY_LENGTH} printable ASCII characters without spaces",
                        [{"header": HEADER, "detail": f"1 to {KEY_LENGTH} printable ASCII characters"}])
    return value


def fingerprint(request: Request) -> str:
    """SHA-256 of the method, path, query and body; a JSON body is canonicalised first (key
    order and spacing do not count)."""
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode() if raw else b""
    except ValueError:
        body = raw
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.query_string, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def claim(session: Session, api_key_id: int, key: str, request_hash: str, now: datetime) -> Stored | None:
    """Insert the key's row in the caller's transaction: ``None`` when this request owns it
    (the caller runs and then calls ``store``), else what an earlier request stored."""
    table = IdempotencyRow.__table__  # type: ignore[attr-defined]
    dialect = postgresql if is_postgresql(session) else sqlite
    insert = dialect.insert(table).values(api_key_id=api_key_id, key=key, request_hash=request_hash,
                                          created_at=now).on_conflict_do_nothing(index_elements=["api_key_id", "key"])
    if session.execute(insert.returning(table.c.api_key_id)).first() is not None:
        return None
    row = session.execute(select(table.c.request_hash, table.c.status, table.c.body, table.c.headers).where(
        (table.c.api_key_id == api_key_id) & (table.c.key == key))).first()
    if row is None:  # pragma: no cover - purged between the insert and the read
        raise conflict_in_progress()
    return Stored(request_hash=row.request_hash, status=row.status, body=row.body,
                  headers=json.loads(row.headers) if row.headers else {})


def store(session: Session, api_key_id: int, key: str, response: Response) -> None:
    headers = {name: response.headers[name] for name in STORED_HEADERS if name in response.headers}
    session.execute(update(IdempotencyRow).where(
        (IdempotencyRow.api_key_id == api_key_id) & (IdempotencyRow.key == key)).values(  # type: ignore[arg-type]
        status=response.status_code, body=response.get_data(as_text=True), headers=json.dumps(headers)))


def conflict_in_progress() -> ApiProblem:
    return ApiProblem(409, "Conflict", f"a request with this {HEADER} is still being processed; retry later",
                      type=IDEMPOTENCY_KEY_REUSED)


def replay(stored: Stored, request_hash: str) -> Response:
    """The stored response again, or a 409 problem when the key came with another request."""
    if stored.request_hash != request_hash:
        raise ApiProblem(409, "Conflict", f"this {HEADER} was already used with another request; "
                         "use a new key for a new request", type=IDEMPOTENCY_KEY_REUSED)
    if stored.status is None:
        raise conflict_in_progress()
    response = Response(stored.body or "", status=stored.status)
    for name, value in stored.headers.items():
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def purge(engine: Engine, *, older_than: datetime) -> int:
    """Delete keys created before ``older_than``; how many."""
    with transaction(engine) as session:
        result: Any = session.execute(delete(IdempotencyRow).where(
            IdempotencyRow.created_at < older_than))  # type: ignore[arg-type,operator]
        return result.rowcount


def retention(hours: int) -> timedelta:
    return timedelta(hours=hours)
