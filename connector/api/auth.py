"""API keys (table ``api_keys``) and the ``Authorization: Bearer`` check, docs/api.md *Authentication*.

A key is ``bsk_`` followed by 43 random URL-safe characters (256 bits), shown once by
``billsync api-key create``. billsync keeps its SHA-256 hash, never the key: a key is a long
random token, so a fast hash cannot be brute-forced and lets every request find its key
with one indexed lookup (argon2 or bcrypt are for passwords people choose, which are short
and guessable; they would add tens of milliseconds to every call). The first 12 characters
(the prefix) are kept in clear so that listings and logs can name a key without revealing it.

Scopes: ``read`` (every GET), ``write`` (finance actions; it includes ``read``) and ``usage``
(sending usage events only, so a metering pipeline holds no finance rights). A route
declares the one scope it needs.

``last_used_at`` is written at most once a minute per key, outside the request's
transaction and only when it is free to do so.

A web process keeps each active key it looked up for ``KEY_CACHE_SECONDS`` (5 s), so that hot
routes (usage ingestion) do not read ``api_keys`` on every request: a key revoked by
``billsync api-key revoke`` (another process) is refused by every web process at most that long
after; ``revoke_key`` in the same process forgets it at once. Unknown and revoked keys are never
kept (a key just created works at once).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel

from connector.api.problems import INSUFFICIENT_SCOPE, UNAUTHENTICATED, ApiProblem
from connector.database import READ_ONLY, transaction
from connector.sync.tables import UtcDateTime

log = logging.getLogger("billsync.api")

SCOPES = ("read", "write", "usage")
#: A scope that includes others: a write key may read.
IMPLIED = {"write": frozenset({"read"})}
KEY_MARK = "bsk_"
PREFIX_LENGTH = 12
NAME_LENGTH = 100
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: Longest Authorization value looked at; a longer one is refused without hashing it.
MAX_TOKEN_LENGTH = 200
#: ``last_used_at`` is refreshed when older than this.
TOUCH_EVERY = timedelta(minutes=1)
REALM = 'Bearer realm="billsync"'
#: How long a web process trusts an active key it looked up (docs/api.md *Authentication*).
KEY_CACHE_SECONDS = 5.0


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=NAME_LENGTH, unique=True)
    prefix: str = Field(max_length=PREFIX_LENGTH, unique=True)
    secret_hash: str = Field(max_length=64, unique=True)
    scopes: str = Field(max_length=100)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


@dataclass(frozen=True)
class ApiKey:
    """A key as the API and the CLI see it (never its secret)."""

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def actor(self) -> str:
        """How the audit log names what this key did."""
        return f"api-key:{self.name}"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)

    @classmethod
    def of(cls, row: Any) -> ApiKey:
        """From an ``api_keys`` row: an ``ApiKeyRow`` or a result row of its columns."""
        return cls(id=row.id, name=row.name, prefix=row.prefix, scopes=frozenset(row.scopes.split(",")),
                   created_at=row.created_at, revoked_at=row.revoked_at, last_used_at=row.last_used_at)


class ApiKeyError(Exception):
    """A key cannot be created or revoked as asked; the message says why."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ApiKeyError(f"unknown scope {unknown[0]!r}; choose from {', '.join(SCOPES)}")
    if not chosen:
        raise ApiKeyError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return chosen


def create_key(engine: Engine, name: str, scopes: Iterable[str], *, now: datetime) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once; only its hash is kept)."""
    if not NAME.fullmatch(name):
        raise ApiKeyError(f"name {name[:120]!r}: 1 to {NAME_LENGTH} letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    chosen = check_scopes(scopes)
    for _ in range(5):
        secret = KEY_MARK + secrets.token_urlsafe(32)
        row = ApiKeyRow(name=name, prefix=secret[:PREFIX_LENGTH], secret_hash=hash_key(secret),
                        scopes=",".join(chosen), created_at=now)
        try:
            with transaction(engine) as session:
                if session.execute(select(ApiKeyRow.id).where(ApiKeyRow.name == name)).first():
                    raise ApiKeyError(f"an API key named {name!r} already exists (a revoked key keeps its "
                                      "name); choose another name")
                session.add(row)
                session.flush()
                return ApiKey.of(row), secret
        except IntegrityError:  # the same prefix drawn twice, or the same name created concurrently
            continue
    raise ApiKeyError(f"could not create a key named {name!r}; try again")


def list_keys(engine: Engine) -> list[ApiKey]:
    with Session(engine) as session:
        return [ApiKey.of(row) for row in session.execute(select(ApiKeyRow).order_by(ApiKeyRow.id)).scalars()]


def revoke_key(engine: Engine, name_or_prefix: str, *, now: datetime) -> tuple[ApiKey, bool]:
    """Revoke the key with this name or prefix; ``(key, False)`` when it already was revoked."""
    with transaction(engine) as session:
        row = session.execute(select(ApiKeyRow).where(
            (ApiKeyRow.name == name_or_prefix) | (ApiKeyRow.prefix == name_or_prefix))).scalars().first()
        if row is None:
            raise ApiKeyError(f"no API key named or prefixed {name_or_prefix[:120]!r} ('billsync api-key list' "
                              "shows them)")
        if row.revoked_at is not None:
            return ApiKey.of(row), False
        row.revoked_at = now
        session.add(row)
        session.flush()
        revoked, secret_hash = ApiKey.of(row), row.secret_hash
    # Forgotten once the revocation is committed: a request in between would read the key still
    # active and trust it again for KEY_CACHE_SECONDS.
    KEYS.forget(secret_hash)
    return revoked, True


# ---------------------------------------------------------------- the request's key


def _unauthenticated(detail: str, *, invalid_token: bool) -> ApiProblem:
    challenge = f'{REALM}, error="invalid_token"' if invalid_token else REALM
    return ApiProblem(401, "Unauthorized", detail, type=UNAUTHENTICATED, headers={"WWW-Authenticate": challenge})


def bearer_token(header: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header, else a 401 problem."""
    if not header:
        raise _unauthenticated("send an API key: 'Authorization: Bearer <key>'", invalid_token=False)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("the Authorization header must be 'Bearer <key>'", invalid_token=False)
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(KEY_MARK):
        raise _unauthenticated("the API key is not valid", invalid_token=True)
    return token


#: The key with a secret's hash, read as plain columns (every API request runs it).
_BY_HASH = select(*ApiKeyRow.__table__.c).where(  # type: ignore[attr-defined]
    ApiKeyRow.__table__.c.secret_hash == bindparam("secret_hash"))  # type: ignore[attr-defined]


class KeyCache:
    """Active keys looked up by this process, by database and secret hash, each trusted for
    ``seconds`` after it was read (``clock``: monotonic seconds)."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self._entries: dict[tuple[str, str], tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def find(self, database: str, secret_hash: str) -> tuple[float, ApiKey] | None:
        """``(when it was read, the key)`` while it is trusted."""
        found = self._entries.get((database, secret_hash))
        if found is None or self.clock() - found[0] >= self.seconds:
            return None
        return found

    def keep(self, database: str, secret_hash: str, key: ApiKey, read_at: float) -> None:
        with self._lock:
            if len(self._entries) >= 1000:  # stale entries of keys no longer used
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.seconds}
            self._entries[(database, secret_hash)] = (read_at, key)

    def forget(self, secret_hash: str) -> None:
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if k[1] != secret_hash}


#: This process's keys.
KEYS = KeyCache()


def authenticate(engine: Engine, header: str | None, *, now: datetime | None = None,
                 cache: KeyCache = KEYS) -> ApiKey:
    """The active key an ``Authorization`` header carries, else a 401 problem (an active key read
    less than ``cache.seconds`` ago is not read again)."""
    token = bearer_token(header)
    secret_hash, database = hash_key(token), engine.url.render_as_string(hide_password=True)
    found = cache.find(database, secret_hash)
    if found is None:
        read_at = cache.clock()
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            row = connection.execute(_BY_HASH, {"secret_hash": secret_hash}).first()
            key = ApiKey.of(row) if row is not None else None
        if key is None:
            raise _unauthenticated("the API key is not valid", invalid_token=True)
        if key.revoked_at is not None:
            raise _unauthenticated("the API key was revoked", invalid_token=True)
        cache.keep(database, secret_hash, key, read_at)
    else:
        read_at, key = found
    now = now or datetime.now(UTC)
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
        _touch(engine, key.id, now)
        cache.keep(database, secret_hash, key := dataclasses.replace(key, last_used_at=now), read_at)
    return key


def _touch(engine: Engine, key_id: int, now: datetime) -> None:
    """Best effort: a busy database skips it (the next call a minute later tries again)."""
    try:
        with transaction(engine) as session:
            session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))
    except OperationalError:
        log.debug("last_used_at of API key %s not updated: the database is busy", key_id)


def require_scope(key: ApiKey, scope: str) -> None:
    if not key.allows(scope):
        raise ApiProblem(403, "Forbidden", f"this route needs an API key with the {scope!r} scope",
                         type=INSUFFICIENT_SCOPE,
                         headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'})
