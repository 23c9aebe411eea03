"""The database: engine construction, timeouts, transactions and migrations.

PostgreSQL is the production store; SQLite is the embedded default. On SQLite
every transaction starts with ``BEGIN IMMEDIATE`` so that two processes (web,
worker, clock) serialise their writes instead of failing half-way with
"database is locked"; readers are not blocked thanks to WAL.

Every engine has a connect and a pool timeout. The web process's engine also
bounds each statement and each lock wait (``Timeouts``), so that a hung or
locked database turns a request into a quick 503 instead of a hung worker; the
worker, clock and CLI run bill runs and syncs whose statements may take longer,
so their engines wait for locks and statements as long as they need.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session, SQLModel

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Every module that defines tables; imported before metadata is used, so that
# Alembic and the schema test see all of them.
MODEL_MODULES: tuple[str, ...] = (
    "billing_engine.storage",  # every engine table: catalog, subscriptions, invoices, payments, usage, outbox
    "connector.webhooks.inbox",  # webhook inbox
    "connector.sync.tables",  # pull cursors, applied records, record errors, review flags
    "connector.clock_runs",  # the clock's daily runs (started, finished), for catching up missed runs
    "connector.sync.installation",  # this installation's id (its external ids) and the org it is bound to
    "connector.sync.preview",  # open deals' previews, and what of them was written to Salesforce
    "connector.api.auth",  # API keys (name, prefix, hash of the secret, scopes)
    "connector.api.idempotency",  # POSTs' Idempotency-Keys and their stored responses
    "connector.console.users",  # console users (role, language, lock-out) and the cookie signing key
    "connector.console.submissions",  # console action forms already carried out
    "connector.jobs",  # bill runs and pulls started from the console, for the worker
    "connector.portal.tables",  # customer portal links (hashed) and previewed changes
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


#: How long SQLite waits for another process's write lock when no lock timeout is set.
SQLITE_BUSY_SECONDS = 60
#: Execution option: this connection only reads, so on SQLite it begins a deferred
#: transaction and never waits for the write lock (readiness uses it).
READ_ONLY = "billsync_read_only"
#: The readiness check's own bounds, shorter than any request's.
READY_STATEMENT_SECONDS = 2
READY_LOCK_SECONDS = 1


@dataclass(frozen=True)
class Timeouts:
    """How long an engine waits for the database (docs/operations.md, *Timeouts*).

    ``connect_seconds``: opening a connection (PostgreSQL ``connect_timeout``).
    ``pool_seconds``: waiting for a free connection of the engine's pool.
    ``statement_seconds``: PostgreSQL ``statement_timeout``; ``None`` for no bound.
    ``lock_seconds``: PostgreSQL ``lock_timeout`` and SQLite's busy timeout; ``None``
    for no bound on PostgreSQL and ``SQLITE_BUSY_SECONDS`` on SQLite.
    """

    connect_seconds: int = 10
    pool_seconds: int = 30
    statement_seconds: int | None = None
    lock_seconds: int | None = None


def make_engine(url: str, *, echo: bool = False, timeouts: Timeouts | None = None) -> Engine:
    timeouts = timeouts or Timeouts()
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        busy = timeouts.lock_seconds if timeouts.lock_seconds is not None else SQLITE_BUSY_SECONDS
        engine = create_engine(url, echo=echo, pool_timeout=timeouts.pool_seconds,
                               connect_args={"timeout": busy, "check_same_thread": False})
        _make_sqlite_transactional(engine, busy)
        return engine
    engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                           pool_timeout=timeouts.pool_seconds)
    _bound_postgresql(engine, timeouts)
    return engine


def _bound_postgresql(engine: Engine, timeouts: Timeouts) -> None:
    """Connect timeout, and the server-side statement and lock timeouts of every session,
    given as startup options (no extra round trip; a URL's own ``options`` are kept)."""
    settings = []
    if timeouts.statement_seconds is not None:
        settings.append(f"-c statement_timeout={timeouts.statement_seconds * 1000}")
    if timeouts.lock_seconds is not None:
        settings.append(f"-c lock_timeout={timeouts.lock_seconds * 1000}")

    @event.listens_for(engine, "do_connect")
    def _on_connect(_dialect, _record, _cargs, cparams):
        cparams.setdefault("connect_timeout", timeouts.connect_seconds)
        if settings:
            cparams["options"] = " ".join([cparams.get("options", ""), *settings]).strip()


def _make_sqlite_transactional(engine: Engine, busy_seconds: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_seconds * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot answer now (down, unreachable, a
    statement or lock timeout, a locked SQLite file, no free pooled connection):
    worth a 503 and a retry, not a 500."""
    return isinstance(exc, (OperationalError, PoolTimeoutError))


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


def partition_tables(connection) -> set[str]:
    """The tables of the current schema that are partitions of a partitioned table (PostgreSQL;
    the monthly partitions of ``usage_events``): their columns and indexes are their parent's."""
    if connection.dialect.name != "postgresql":
        return set()
    return set(connection.execute(text(
        "SELECT c.relname FROM pg_class c WHERE c.relispartition AND c.relkind = 'r' "
        "AND c.relnamespace = CAST(current_schema() AS regnamespace)")).scalars())


def schema_name_filter(connection):
    """Alembic's ``include_name`` for comparing the models with the database: partitions are
    compared through their parent table, so they are left out (``partition_tables``)."""
    partitions = partition_tables(connection)

    def include_name(name, type_, _parent_names) -> bool:
        return not (type_ == "table" and name in partitions)

    return include_name


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_ready(engine: Engine) -> str | None:
    """``None`` when the database answers and is at the head revision, else the reason.

    Fails fast: the check waits at most ``READY_LOCK_SECONDS`` for a lock and
    ``READY_STATEMENT_SECONDS`` for a statement on PostgreSQL, and never waits for
    SQLite's write lock."""
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            if is_postgresql(engine):
                connection.execute(text("SELECT set_config('statement_timeout', :s, true), "
                                        "set_config('lock_timeout', :l, true)"),
                                   {"s": f"{READY_STATEMENT_SECONDS}s", "l": f"{READY_LOCK_SECONDS}s"})
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        return f"database unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    head = head_revision()
    if current != head:
        return f"database at migration {current or 'none'}, code expects {head}; run 'billsync db upgrade'"
    return None
