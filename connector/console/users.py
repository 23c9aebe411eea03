"""Console users (table ``console_users``): who may sign in to the web console, with which
role, and the lock-out after too many wrong passwords (docs/console.md *Roles*, *Security*).

Passwords are hashed with argon2id (argon2-cffi's defaults); billsync never keeps a password.
The count of wrong passwords and the end of a lock-out are stored on the user's row, so a
lock-out holds across every web process. The signing key of the console's cookies, when
``SECRET_KEY`` is not set, is generated once and kept in ``console_signing_keys``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Column, Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from connector.database import READ_ONLY, transaction
from connector.sync.tables import UtcDateTime

#: What each role may do: viewers read, finance also acts on invoices and payments, admins too.
ROLES = ("admin", "finance", "viewer")
ACTING_ROLES = frozenset({"admin", "finance"})
LOCALES = ("en", "fr")
EMAIL_LENGTH = 254
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 200
NAME_LENGTH = 100

_hasher = PasswordHasher()
#: Checked against when the e-mail is unknown, so that both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserRow(SQLModel, table=True):
    __tablename__ = "console_users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=EMAIL_LENGTH, unique=True)
    name: str = Field(max_length=NAME_LENGTH)
    role: str = Field(max_length=20)
    locale: str | None = Field(default=None, max_length=10)
    password_hash: str = Field(max_length=200)
    failed_sign_ins: int = Field(default=0)
    locked_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_sign_in_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class SigningKeyRow(SQLModel, table=True):
    __tablename__ = "console_signing_keys"

    id: int = Field(primary_key=True)
    secret: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


@dataclass(frozen=True)
class User:
    """A console user as pages and commands see it (never the password's hash).
    Flask-Login's user: ``get_id``, ``is_authenticated``, ``is_active``, ``is_anonymous``."""

    id: int
    email: str
    name: str
    role: str
    locale: str | None
    created_at: datetime
    disabled_at: datetime | None
    locked_until: datetime | None
    last_sign_in_at: datetime | None

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def can_act(self) -> bool:
        """Finance and admins finalize, void, credit and record payments; viewers only read."""
        return self.role in ACTING_ROLES

    @property
    def actor(self) -> str:
        """How the audit log names what this user did."""
        return f"console:{self.email}"

    def get_id(self) -> str:
        return str(self.id)

    @classmethod
    def of(cls, row: Any) -> User:
        return cls(id=row.id, email=row.email, name=row.name, role=row.role, locale=row.locale,
                   created_at=row.created_at, disabled_at=row.disabled_at, locked_until=row.locked_until,
                   last_sign_in_at=row.last_sign_in_at)


class UserError(Exception):
    """A user cannot be created or changed as asked; the message says why."""


def normalized_email(email: str) -> str:
    return email.strip().lower()


def check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise UserError(f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    """A random password of 20 URL-safe characters (about 120 bits), never starting with ``-``
    (which a shell command line would take for an option)."""
    while True:
        password = secrets.token_urlsafe(15)
        if not password.startswith("-"):
            return password


def create_user(engine: Engine, email: str, *, role: str, password: str, now: datetime,
                name: str | None = None, locale: str | None = None) -> User:
    email = normalized_email(email)
    if len(email) > EMAIL_LENGTH or not EMAIL.fullmatch(email):
        raise UserError(f"{email[:120]!r} is not an e-mail address")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if locale is not None and locale not in LOCALES:
        raise UserError(f"unknown language {locale!r}; choose from {', '.join(LOCALES)}")
    check_password(password)
    shown = (name or email.split("@")[0]).strip()[:NAME_LENGTH]
    row = UserRow(email=email, name=shown, role=role, locale=locale, password_hash=_hasher.hash(password),
                  created_at=now)
    try:
        with transaction(engine) as session:
            if session.execute(select(UserRow.id).where(UserRow.email == email)).first():
                raise UserError(f"a user {email!r} already exists")
            session.add(row)
            session.flush()
            return User.of(row)
    except IntegrityError:
        raise UserError(f"a user {email!r} already exists") from None


def list_users(engine: Engine) -> list[User]:
    with Session(engine) as session:
        return [User.of(row) for row in session.execute(select(UserRow).order_by(UserRow.email)).scalars()]


def find_user(engine: Engine, user_id: int) -> User | None:
    with Session(engine.execution_options(**{READ_ONLY: True})) as session:
        row = session.get(UserRow, user_id)
        return User.of(row) if row is not None else None


def disable_user(engine: Engine, email: str, *, now: datetime) -> tuple[User, bool]:
    """Disable a user: it cannot sign in and its open sessions end. ``(user, False)`` when it already was."""
    with transaction(engine) as session:
        row = session.execute(select(UserRow).where(UserRow.email == normalized_email(email))).scalars().first()
        if row is None:
            raise UserError(f"no user {email[:120]!r} ('billsync users list' shows them)")
        if row.disabled_at is not None:
            return User.of(row), False
        row.disabled_at = now
        session.flush()
        return User.of(row), True


def set_locale(engine: Engine, user_id: int, locale: str | None) -> None:
    if locale is not None and locale not in LOCALES:
        raise UserError(f"unknown language {locale!r}")
    with transaction(engine) as session:
        session.execute(update(UserRow).where(UserRow.id == user_id).values(locale=locale))


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or why not (``wrong``, ``locked``, ``disabled``)."""

    user: User | None
    refused: str | None = None
    locked_until: datetime | None = None


def authenticate(engine: Engine, email: str, password: str, *, now: datetime, attempts: int,
                 lockout: timedelta) -> SignIn:
    """Check an e-mail and password. ``attempts`` wrong passwords in a row lock the user for
    ``lockout``: while locked, even the right password is refused. Unknown e-mails, wrong
    passwords and disabled users get answers a caller cannot tell apart by their time."""
    email = normalized_email(email)[:EMAIL_LENGTH]
    password = password[:MAX_PASSWORD_LENGTH]
    with transaction(engine) as session:
        row = session.execute(select(UserRow).where(UserRow.email == email).with_for_update()).scalars().first()
        if row is None:
            _verify(_DUMMY_HASH, password)
            return SignIn(None, "wrong")
        if row.locked_until is not None and row.locked_until > now:
            _verify(_DUMMY_HASH, password)
            return SignIn(None, "locked", row.locked_until)
        if not _verify(row.password_hash, password):
            failures = row.failed_sign_ins + 1
            if failures >= attempts:
                row.failed_sign_ins, row.locked_until = 0, now + lockout
                return SignIn(None, "locked", row.locked_until)
            row.failed_sign_ins = failures
            return SignIn(None, "wrong")
        if row.disabled_at is not None:
            return SignIn(None, "wrong")
        row.failed_sign_ins, row.locked_until, row.last_sign_in_at = 0, None, now
        if _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
        session.flush()
        return SignIn(User.of(row))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def signing_key(engine: Engine, *, now: datetime) -> str:
    """The console's cookie signing key kept in the database, created on first use."""
    with Session(engine) as session:
        row = session.get(SigningKeyRow, 1)
        if row is not None:
            return row.secret
    try:
        with transaction(engine) as session:
            session.add(SigningKeyRow(id=1, secret=secrets.token_urlsafe(48), created_at=now))
    except IntegrityError:  # another process created it first
        pass
    with Session(engine) as session:
        return session.get(SigningKeyRow, 1).secret
