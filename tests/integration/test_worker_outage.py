"""The worker while the database is down: one line when it goes, one when it is back, backoff between.

The database is a real one that cannot be reached: PostgreSQL on a closed local port
(connection refused), or a SQLite file in a folder that does not exist. The worker's
waits are recorded instead of slept.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from connector.database import make_engine
from connector.settings import load_settings
from connector.wiring import build_services
from connector.worker import Drain, drains_for, run_worker

CONNECTED = {"SF_AUTH": "session", "SF_INSTANCE_URL": "https://example.my.salesforce.com",
             "SF_ACCESS_TOKEN": "token", "LOG_LEVEL": "warning"}
UNREACHABLE = ["postgresql://billsync@127.0.0.1:1/billsync", "sqlite:///{tmp}/gone/billsync.db"]


class RecordedWaits(threading.Event):
    """A stop event whose waits are recorded, not slept; it is set after ``polls`` waits."""

    def __init__(self, polls: int):
        super().__init__()
        self.polls, self.waits = polls, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.polls:
            self.set()
        return self.is_set()


@pytest.fixture
def worker_logs():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("billsync.worker")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def unreachable_url(raw, tmp_path):
    if raw.startswith("sqlite"):
        return raw.format(tmp=tmp_path)
    return raw


@pytest.mark.parametrize("raw_url", UNREACHABLE, ids=["postgresql-refused", "sqlite-missing"])
def test_a_database_outage_is_one_warning_without_traceback_and_polls_back_off(raw_url, tmp_path, worker_logs):
    url = unreachable_url(raw_url, tmp_path)
    services = build_services(load_settings({"DATABASE_URL": url, **CONNECTED}))
    if url.startswith("sqlite"):
        services.engine.dispose()
        (tmp_path / "gone").rmdir()  # make_engine created the folder: the file cannot be opened now
    drains = drains_for(services, worker_id="worker-test", batch_size=10, lease=timedelta(seconds=60))
    stop = RecordedWaits(polls=8)
    try:
        run_worker(drains, once=False, poll_seconds=5, stop=stop)
    finally:
        services.engine.dispose()

    assert stop.waits == [1, 2, 4, 8, 16, 30, 30, 30]  # exponential backoff, capped at 30 s
    assert [r.exc_info for r in worker_logs] == [None]  # eight polls, one line, no traceback
    [line] = [r.getMessage() for r in worker_logs]
    assert line.startswith("worker: database unreachable: OperationalError: ")
    assert line.endswith("; retrying with backoff") and "\n" not in line
    assert worker_logs[0].levelno == logging.WARNING


def test_the_worker_says_once_when_the_database_is_reachable_again(worker_logs, database_url):
    refused = make_engine("postgresql://billsync@127.0.0.1:1/billsync")
    live = make_engine(database_url)
    passes = []

    def run(should_stop):
        passes.append(1)
        engine = refused if len(passes) <= 3 else live  # down for three passes, then back
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return 0

    stop = RecordedWaits(polls=6)
    try:
        run_worker([Drain("probe", run)], once=False, poll_seconds=5, stop=stop)
    finally:
        refused.dispose()
        live.dispose()
    assert stop.waits == [1, 2, 4, 5, 5, 5]  # backoff while down, then the poll interval
    assert [r.getMessage().split(":")[0:2] for r in worker_logs] == [
        ["worker", " database unreachable"], ["worker", " database reachable again"]]
    assert all(r.exc_info is None for r in worker_logs)


def test_a_failing_drain_that_is_not_the_database_still_logs_its_traceback(worker_logs):
    def broken(should_stop):
        raise ValueError("a bug")

    stop = RecordedWaits(polls=2)
    run_worker([Drain("broken", broken)], once=False, poll_seconds=5, stop=stop)
    assert stop.waits == [5, 5]
    assert len(worker_logs) == 2 and all(r.exc_info for r in worker_logs)
