"""The clock on virtual time: APScheduler's own job processing, stepped by the test."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.base import BaseScheduler


class SteppedScheduler(BaseScheduler):
    """APScheduler's own job processing, stepped by the test instead of a thread.

    Due jobs run in the calling thread (``DebugExecutor``); ``run_due()`` is one pass of the
    scheduler's loop at the time of the ``virtual_clock`` fixture.
    """

    def wakeup(self) -> None:  # nothing sleeps: the test calls run_due()
        pass

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)

    def _create_default_executor(self) -> DebugExecutor:
        return DebugExecutor()

    def run_due(self) -> None:
        self._process_jobs()


@pytest.fixture
def virtual_clock(monkeypatch):
    """The time APScheduler's scheduler and the clock's jobs see; ``advance(seconds=...)`` moves it,
    nothing waits."""
    from apscheduler.executors import base as executors
    from apscheduler.schedulers import base

    from connector import scheduler as clock_module

    clock = types.SimpleNamespace(now=datetime.now(UTC).replace(microsecond=0))
    clock.advance = lambda **delta: setattr(clock, "now", clock.now + timedelta(**delta))

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return clock.now.astimezone(tz) if tz else clock.now.replace(tzinfo=None)

    monkeypatch.setattr(base, "datetime", VirtualDatetime)
    monkeypatch.setattr(executors, "datetime", VirtualDatetime)  # misfires are judged on the same time
    monkeypatch.setattr(clock_module, "_now", lambda: clock.now)
    return clock
