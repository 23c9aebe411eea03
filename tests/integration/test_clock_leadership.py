"""One clock leads, the others wait as standbys; a daily run that did not finish is caught up.

The in-process tests step two ``Clock`` objects and their schedulers on virtual time (no
waiting) against the test database: the leadership lock is real (a PostgreSQL advisory
lock, or the file lock next to the SQLite database), and so is the ``clock_runs`` table.
The last test starts two real ``billsync clock`` processes and SIGKILLs the leader.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from billing_engine.use_cases.billing import BillRunResult
from connector import clock_runs
from connector.clock_lock import PostgresClockLock, clock_lock_for
from connector.database import make_engine
from connector.scheduler import Clock
from connector.settings import load_settings
from connector.wiring import build_services
from tests.conftest import BACKEND
from tests.support.clock import SteppedScheduler

pytestmark = pytest.mark.timeout(120)

CONNECTED = {"SF_AUTH": "session", "SF_INSTANCE_URL": "https://example.my.salesforce.com",
             "SF_ACCESS_TOKEN": "token"}
DAY = date(2026, 11, 24)


@pytest.fixture
def clock_logs():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("billsync.clock")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def messages(records, prefix):
    return [r.getMessage() for r in records if r.getMessage().startswith(prefix)]


@pytest.fixture
def make_clock(database_url):
    """``make_clock(**env)``: a clock on the test database, stepped by the test."""
    made = []

    def make(**env):
        services = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **env}))
        clock = Clock(services, clock_lock_for(services.engine), SteppedScheduler)
        made.append(clock)
        return clock

    yield make
    for clock in made:
        clock.close()
        clock.services.engine.dispose()


@pytest.fixture
def recorded(monkeypatch, virtual_clock):
    """Each use case replaced by a recorder of (job, virtual time); ``failing`` makes one raise."""
    import connector.billing_jobs
    import connector.collection_jobs
    import connector.sync.pull
    import connector.sync.push
    import connector.sync.reconcile

    class Calls(list):
        failing: set[str] = set()

    calls = Calls()
    failing = calls.failing = set()

    def recorder(name, result=None):
        def record(*args, **kwargs):
            calls.append((name, virtual_clock.now))
            if name in failing:
                raise RuntimeError(f"{name} broke halfway")
            return result
        return record

    report = type("Report", (), {"agrees": True, "mismatches": []})()
    bill = BillRunResult(as_of=DAY)
    monkeypatch.setattr(connector.sync.pull, "pull_changes", recorder("pull"))
    monkeypatch.setattr(connector.sync.push, "push_outbox", recorder("push"))
    monkeypatch.setattr(connector.billing_jobs, "run_bill_run", recorder("bill_run", bill))
    monkeypatch.setattr(connector.sync.reconcile, "reconcile_period", recorder("reconcile", report))
    collected = type("Report", (), {"lines": lambda self: []})()
    monkeypatch.setattr(connector.collection_jobs, "run_collections", recorder("collections", collected))
    monkeypatch.setattr(connector.collection_jobs, "run_dunning", recorder("dunning", collected))
    return calls


def bill_runs(engine):
    return [run for run in clock_runs.all_runs(engine) if run.job == "bill_run"]


def names(calls, *wanted):
    return [name for name, _at in calls if name in wanted]


def step(*clocks):
    """One look at the lock by each clock, then one pass of the leader's scheduler."""
    for clock in clocks:
        clock.step()
        if clock.scheduler is not None:
            clock.scheduler.run_due()


# ---------------------------------------------------------------- one leader


def test_a_second_clock_waits_as_a_standby_and_leads_when_the_first_stops(make_clock, clock_logs, virtual_clock,
                                                                          recorded):
    first, second = make_clock(), make_clock()
    step(first)
    assert first.leading
    for _ in range(3):
        step(second)
        assert not second.leading
    assert messages(clock_logs, "leading") == [f"leading: this clock runs the jobs ({first.lock.describe()})"]
    assert len(messages(clock_logs, "standby: another clock leads")) == 1  # once, not at every try

    first.close()  # the leader stops (or dies: the lock goes with its process or session)
    step(second)
    assert second.leading
    assert len(messages(clock_logs, "leading")) == 2


def test_the_sqlite_lock_is_a_file_next_to_the_database(database_url):
    if BACKEND != "sqlite":
        pytest.skip("SQLite's lock")
    lock = clock_lock_for(make_engine(database_url))
    other = clock_lock_for(make_engine(database_url))
    path = database_url.removeprefix("sqlite:///") + ".clock.lock"
    try:
        assert lock.try_acquire() and os.path.exists(path)
        assert not other.try_acquire()
        lock.release()
        assert other.try_acquire()
    finally:
        lock.release()
        other.release()


@pytest.mark.postgres_only
def test_a_leader_that_lost_its_database_session_stops_its_jobs(make_clock, clock_logs, virtual_clock, recorded,
                                                                 engine):
    first, second = make_clock(), make_clock()
    step(first, second)
    assert first.leading and not second.leading
    assert isinstance(first.lock, PostgresClockLock)
    with engine.begin() as connection:  # the leader's session ends (a network cut, a database restart)
        ended = connection.execute(text("SELECT pg_terminate_backend(:pid, 10000)"),  # waits until it has ended
                                   {"pid": first.lock.backend_pid}).scalar()
    assert ended

    assert first.step() is False  # the leader notices at its next check and stops its jobs
    assert not first.leading
    assert messages(clock_logs, "lost the clock lock")
    step(second)
    assert second.leading


# ---------------------------------------------------------------- catching up missed daily runs


def test_a_clock_started_after_the_bill_run_time_runs_the_missed_run_once(make_clock, virtual_clock, recorded,
                                                                          clock_logs):
    virtual_clock.now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # after 02:00 and 03:30
    clock = make_clock(**CONNECTED)
    step(clock)
    assert names(recorded, "bill_run", "reconcile") == ["bill_run", "reconcile", "reconcile"]  # two periods
    assert "clock: today's bill_run has not finished; running it now" in [r.getMessage() for r in clock_logs]
    for _ in range(12):
        virtual_clock.advance(minutes=30)
        step(clock)
    clock.close()

    again = make_clock(**CONNECTED)  # a second start, after the run finished
    step(again)
    virtual_clock.advance(minutes=5)
    step(again)
    assert names(recorded, "bill_run") == ["bill_run"]
    assert names(recorded, "reconcile") == ["reconcile", "reconcile"]
    runs = {run.job: run for run in clock_runs.all_runs(again.services.engine)}
    assert set(runs) == {"bill_run", "reconcile", "collections", "dunning", "churn_score"}  # churn at 04:30
    assert names(recorded, "collections", "dunning") == ["collections", "dunning"]
    for run in runs.values():
        assert run.run_date == DAY and run.attempts == 1
        assert run.started_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC) and run.finished_at is not None


def test_a_bill_run_killed_halfway_runs_again_when_the_clock_starts(make_clock, virtual_clock, recorded):
    virtual_clock.now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    dead = make_clock()
    clock_runs.record_start(dead.services.engine, "bill_run", DAY, clock_id="clock-killed", at=virtual_clock.now)

    virtual_clock.advance(hours=1)  # restarted an hour later
    clock = make_clock()
    step(clock)
    assert names(recorded, "bill_run") == ["bill_run"]
    [run] = bill_runs(clock.services.engine)
    assert run.attempts == 2 and run.finished_at == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_a_failed_bill_run_is_not_finished_and_runs_again_at_the_next_start(make_clock, virtual_clock, recorded):
    virtual_clock.now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    recorded.failing.add("bill_run")
    clock = make_clock()
    step(clock)  # before the time: 02:00 is due now
    [run] = bill_runs(clock.services.engine)
    assert run.finished_at is None and "bill_run broke halfway" in run.last_error
    clock.close()

    recorded.failing.clear()
    virtual_clock.advance(minutes=10)
    restarted = make_clock()
    step(restarted)
    assert names(recorded, "bill_run") == ["bill_run", "bill_run"]
    [run] = bill_runs(restarted.services.engine)
    assert run.finished_at is not None and run.last_error is None and run.attempts == 2


def test_a_clock_started_before_the_bill_run_time_waits_for_it(make_clock, virtual_clock, recorded):
    virtual_clock.now = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    clock = make_clock()
    step(clock)
    assert names(recorded, "bill_run") == []
    virtual_clock.advance(hours=1)
    step(clock)
    assert [call for call in recorded if call[0] == "bill_run"] == [("bill_run", datetime(2026, 11, 24, 2, 0,
                                                                                            tzinfo=UTC))]


# ---------------------------------------------------------------- two clocks over a day


def test_two_clocks_started_together_run_each_job_once_over_a_simulated_day(make_clock, virtual_clock, recorded,
                                                                             clock_logs):
    start = virtual_clock.now = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    env = {**CONNECTED, "PULL_INTERVAL_SECONDS": "600", "PUSH_INTERVAL_SECONDS": "300"}
    clocks = [make_clock(**env), make_clock(**env)]
    leaders = []
    while virtual_clock.now < start + timedelta(days=1):
        if virtual_clock.now == start + timedelta(hours=12):  # the leader dies at noon
            dead = next(clock for clock in clocks if clock.leading)
            dead.close()
            clocks.remove(dead)
        step(*clocks)
        leaders.append(sum(clock.leading for clock in clocks))
        virtual_clock.advance(seconds=300)

    assert set(leaders) == {1}  # exactly one leader at every moment
    assert len(messages(clock_logs, "leading")) == 2  # the first leader, then the standby at noon
    assert names(recorded, "bill_run") == ["bill_run"]
    assert names(recorded, "reconcile") == ["reconcile", "reconcile"]  # one run, two periods
    for job, interval in (("pull", 600), ("push", 300)):
        times = [at for name, at in recorded if name == job]
        assert len(times) == len(set(times)) == 86400 // interval  # on time, never twice
    runs = clock_runs.all_runs(clocks[0].services.engine)
    assert [(run.job, run.run_date, run.attempts) for run in runs] == [
        ("bill_run", DAY, 1), ("churn_score", DAY, 1), ("collections", DAY, 1), ("dunning", DAY, 1),
        ("reconcile", DAY, 1)]
    assert all(run.finished_at is not None for run in runs)


# ---------------------------------------------------------------- real processes


class ClockProcess:
    """``billsync clock`` as a subprocess, its output lines read as they come."""

    def __init__(self, database_url: str):
        env = {**os.environ, "DATABASE_URL": database_url, "SF_AUTH": "none", "LOG_LEVEL": "info",
               "LOG_FORMAT": "text", "CLOCK_LOCK_POLL_SECONDS": "1", "BILL_RUN_AT": "00:00"}
        self.process = subprocess.Popen([sys.executable, "-m", "connector.cli", "clock"], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, *needles: str, timeout: float) -> str:
        """The first needle seen in the output (earlier lines count), within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                for needle in needles:
                    if needle in line:
                        return needle
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"none of {needles} within {timeout} s; output: {self.seen}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def test_killing_the_leader_clock_hands_over_to_the_standby_within_a_minute(database_url):
    clocks = [ClockProcess(database_url), ClockProcess(database_url)]  # started together
    try:
        states = [clock.wait_for("leading:", "standby: another clock leads", timeout=60) for clock in clocks]
        assert sorted(states) == ["leading:", "standby: another clock leads"]
        leader, standby = clocks if states[0] == "leading:" else clocks[::-1]
        # The missed 00:00 bill run runs at once, by the leader only.
        leader.wait_for("clock job bill_run for", timeout=30)

        leader.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        standby.wait_for("leading:", timeout=60)
        handover = time.monotonic() - killed_at
        assert handover < 60

        standby.process.send_signal(signal.SIGTERM)
        assert standby.process.wait(timeout=30) == 0
        standby.wait_for("clock: stopped", timeout=5)
        assert not any("bill run as of" in line for line in standby.seen)  # today's run finished: not again
    finally:
        for clock in clocks:
            clock.stop()
    engine = make_engine(database_url)
    try:
        [run] = bill_runs(engine)
        assert run.job == "bill_run" and run.attempts == 1 and run.finished_at is not None
    finally:
        engine.dispose()

