"""The database: engine construction, transactions and migrations.

PostgreSQL is the production store; SQLite is the embedded default. On SQLite
every transaction starts with ``BEGIN IMMEDIATE`` so that two processes (web,
worker, clock) serialise their writes instead of failing half-way with
"database is locked"; readers are not blocked thanks to WAL.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Every module that defines tables; imported before metadata is used, so that
# Alembic and the schema test see all of them.
MODEL_MODULES: tuple[str, ...] = (
    "billing_engine.storage",  # every engine table: catalog, subscriptions, invoices, payments, usage, outbox
    "connector.webhooks.inbox",  # webhook inbox
    "connector.sync.tables",  # pull cursors, applied records, record errors, review flags
    "connector.clock_runs",  # the clock's daily runs (started, finished), for catching up missed runs
    "connector.sync.preview",  # open deals' previews, and what of them was written to Salesforce
)


class DatabaseError(Exception):
    """The database cannot be reached or is not migrated."""


def load_all_models() -> type[SQLModel]:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return SQLModel


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False})
        _make_sqlite_transactional(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _make_sqlite_transactional(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_postgresql(engine_or_session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "postgresql"


# ---------------------------------------------------------------- migrations


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_ready(engine: Engine) -> str | None:
    """``None`` when the database answers and is at the head revision, else the reason."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        return f"database unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    head = head_revision()
    if current != head:
        return f"database at migration {current or 'none'}, code expects {head}; run 'billsync db upgrade'"
    return None
