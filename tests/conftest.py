"""Shared fixtures: a fresh, migrated database per test on the backend under test.

``TEST_DATABASE_URL`` picks the backend (``scripts/test`` runs the suite once per
backend):
- ``sqlite://`` (default): the schema is migrated once into a template file and
  each test gets its own copy.
- ``postgresql://...``: the run creates its own schema (so concurrent runs never
  see each other), migrates it once, and empties every table after each test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text

from connector.database import head_revision, load_all_models, make_engine, upgrade
from connector.settings import Settings, load_settings

# The one local Salesforce sandbox of the run (fixtures ``sandbox`` and ``org``), and the
# clock on virtual time (fixture ``virtual_clock``).
pytest_plugins = ["tests.support.sandbox", "tests.support.clock"]

RAW_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://") or "sqlite://"
BACKEND = "postgresql" if RAW_URL.startswith("postgres") else "sqlite"


def pytest_report_header(config):
    return f"billsync test database backend: {BACKEND} ({RAW_URL})"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (scripts/test runs it there)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


class TestDatabase:
    """The per-run database: a template SQLite file or a PostgreSQL schema."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        if BACKEND == "sqlite":
            self.template = tmp / "template.db"
            self.base_url = f"sqlite:///{self.template}"
        else:
            from connector.settings import parse_database_url

            self.schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            url = parse_database_url(RAW_URL)
            sep = "&" if "?" in url else "?"
            self.admin_url = url
            self.base_url = f"{url}{sep}options={quote('-csearch_path=' + self.schema)}"
        self._count = 0

    def create(self) -> None:
        if BACKEND == "postgresql":
            admin = make_engine(self.admin_url)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            admin.dispose()
        engine = make_engine(self.base_url)
        upgrade(engine)
        engine.dispose()

    def drop(self) -> None:
        if BACKEND == "postgresql":
            admin = make_engine(self.admin_url)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            admin.dispose()

    def fresh_url(self) -> str:
        """A URL to a database holding the migrated schema and no rows."""
        if BACKEND == "sqlite":
            self._count += 1
            path = self.tmp / f"test_{self._count}.db"
            shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        return self.base_url

    def empty(self, engine: Engine) -> None:
        if BACKEND != "postgresql":
            return
        tables = [t.name for t in load_all_models().metadata.sorted_tables]
        with engine.begin() as conn:
            if tables:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
            # A test may move the recorded revision (readiness checks): every test starts at head.
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
            # As a freshly migrated database: the MRR at month ends is kept (docs/reporting.md §4).
            conn.execute(text("INSERT INTO mrr_month_ends_state (id, kept_through, stale, reason) "
                              "VALUES (1, :through, false, '')"), {"through": _kept_through()})


def _kept_through() -> str:
    from billing_engine.use_cases.revenue import KEPT_MONTHS_AHEAD

    today = datetime.now(UTC).date()
    ahead = today.year * 12 + today.month - 1 + KEPT_MONTHS_AHEAD
    return f"{ahead // 12:04d}-{ahead % 12 + 1:02d}"


@pytest.fixture(scope="session")
def test_database(tmp_path_factory) -> Iterator[TestDatabase]:
    database = TestDatabase(tmp_path_factory.mktemp("db"))
    database.create()
    yield database
    database.drop()


@pytest.fixture
def database_url(test_database: TestDatabase) -> Iterator[str]:
    url = test_database.fresh_url()
    yield url
    if BACKEND == "postgresql":
        engine = make_engine(url)
        test_database.empty(engine)
        engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning"})


# ---------------------------------------------------------------- billsync connected to the sandbox


@pytest.fixture
def connected_settings(org, database_url, monkeypatch) -> Settings:
    """Settings of a billsync connected to the emptied sandbox, on the test database."""
    from tests.support.sandbox import sandbox_environment

    # CI and this machine may set REQUESTS_CA_BUNDLE: billsync must still trust the sandbox CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return load_settings(sandbox_environment(org, database_url))


@pytest.fixture
def services(connected_settings):
    """Services (database engine + Salesforce client) wired exactly as the processes wire them."""
    from connector.wiring import build_services

    built = build_services(connected_settings)
    yield built
    built.engine.dispose()
