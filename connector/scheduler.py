"""The clock process: one APScheduler BlockingScheduler per deployment.

Jobs (times in BILLSYNC_TIMEZONE):

| job | trigger | calls (the same function as the CLI command) |
|---|---|---|
| ``pull`` | every PULL_INTERVAL_SECONDS, first run at start | ``connector.sync.pull.pull_changes`` (``billsync sync pull``) |
| ``push`` | every PUSH_INTERVAL_SECONDS, first run at start | ``connector.sync.push.push_outbox`` (``billsync sync push``) |
| ``bill_run`` | daily at BILL_RUN_AT | ``connector.billing_jobs.run_bill_run`` as of today (``billsync bill-run``) |
| ``reconcile`` | daily at RECONCILE_AT | ``connector.sync.reconcile.reconcile_period`` for the previous and the current month (``billsync reconcile``), report only |

Each job runs at most once at a time (``max_instances=1``), missed runs are coalesced
into one, and a job's exception is logged and never stops the clock. Without a
Salesforce connection (``SF_AUTH=none``) only the bill run is scheduled.

APScheduler 3 keeps its jobs in memory here: run exactly one clock (``billsync clock``, in
``connector.cli.processes``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.wiring import Services

log = logging.getLogger("billsync.clock")

PUSH_BATCH_SIZE = 200
CRON_MISFIRE_GRACE_SECONDS = 6 * 3600  # a clock restarted late still runs the day's bill run


@dataclass(frozen=True)
class UseCase:
    """Where a job's use case lives: imported when the job runs, so a test can replace it."""

    module: str
    name: str

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.name)

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


# Job name → the use case it calls (the CLI commands call the same functions).
USE_CASES: dict[str, UseCase] = {
    "pull": UseCase("connector.sync.pull", "pull_changes"),
    "push": UseCase("connector.sync.push", "push_outbox"),
    "bill_run": UseCase("connector.billing_jobs", "run_bill_run"),
    "reconcile": UseCase("connector.sync.reconcile", "reconcile_period"),
}
SALESFORCE_JOBS = ("pull", "push", "reconcile")


def worker_id() -> str:
    return f"clock-{socket.gethostname()}-{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


def _today(services: Services) -> date:
    from connector.billing_jobs import today_in

    return today_in(services.settings.billsync_timezone, _now())


def previous_and_current_month(today: date) -> list[str]:
    previous = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return [f"{previous[0]:04d}-{previous[1]:02d}", f"{today.year:04d}-{today.month:02d}"]


# ---------------------------------------------------------------- the jobs


def pull_job(services: Services) -> Any:
    report = USE_CASES["pull"].resolve()(services)
    for line in getattr(report, "object_errors", []) or []:
        log.warning("pull: %s", line)
    return report


def push_job(services: Services) -> Any:
    return USE_CASES["push"].resolve()(services, worker_id=worker_id(), batch_size=PUSH_BATCH_SIZE)


def bill_run_job(services: Services) -> Any:
    as_of = _today(services)
    result = USE_CASES["bill_run"].resolve()(services, as_of)
    log.info("bill run as of %s: %s invoices created, %s finalized, %s failed", as_of,
             result.invoices_created, result.invoices_finalized, len(result.failures))
    for customer_id, reason in sorted(result.failures.items()):
        log.warning("bill run as of %s: customer %s failed: %s", as_of, customer_id, reason)
    return result


def reconcile_job(services: Services) -> list[Any]:
    reports = []
    for period in previous_and_current_month(_today(services)):
        report = USE_CASES["reconcile"].resolve()(services, period)
        reports.append(report)
        if report.agrees:
            log.info("reconcile %s: engine and Salesforce agree", period)
        else:
            log.warning("reconcile %s: %s mismatches; run 'billsync reconcile --period %s'", period,
                        len(report.mismatches), period)
    return reports


JOB_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "pull": pull_job, "push": push_job, "bill_run": bill_run_job, "reconcile": reconcile_job,
}


def run_job(name: str, services: Services) -> None:
    """Run one job; its exception is logged, never raised (the clock keeps going)."""
    try:
        JOB_FUNCTIONS[name](services)
    except Exception:
        log.exception("clock job %s failed; it runs again at its next time", name)


# ---------------------------------------------------------------- the scheduler


def is_connected(settings: Settings) -> bool:
    return settings.sf_auth != "none"


def build_scheduler(services: Services, scheduler_cls: type[BaseScheduler] = BlockingScheduler,
                    *, now: datetime | None = None) -> BaseScheduler:
    """The clock's scheduler with its jobs (not started). Tests pass ``BackgroundScheduler``."""
    settings = services.settings
    scheduler = scheduler_cls(timezone=settings.billsync_timezone)
    start = now or _now()

    def add(name: str, trigger: Any, misfire: int, **extra: Any) -> None:
        scheduler.add_job(run_job, trigger, args=[name, services], id=name, name=name, max_instances=1,
                          coalesce=True, misfire_grace_time=misfire, replace_existing=True, **extra)

    if is_connected(settings):
        add("pull", IntervalTrigger(seconds=settings.pull_interval_seconds, timezone=settings.billsync_timezone),
            settings.pull_interval_seconds, next_run_time=start)
        add("push", IntervalTrigger(seconds=settings.push_interval_seconds, timezone=settings.billsync_timezone),
            settings.push_interval_seconds, next_run_time=start)
    add("bill_run", CronTrigger(hour=settings.bill_run_at.hour, minute=settings.bill_run_at.minute,
                                timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS)
    if is_connected(settings):
        add("reconcile", CronTrigger(hour=settings.reconcile_at.hour, minute=settings.reconcile_at.minute,
                                     timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS)
    return scheduler


def describe_trigger(name: str, settings: Settings) -> str:
    return {
        "pull": f"every {settings.pull_interval_seconds} s",
        "push": f"every {settings.push_interval_seconds} s",
        "bill_run": f"daily at {settings.bill_run_at:%H:%M} {settings.billsync_timezone}",
        "reconcile": f"daily at {settings.reconcile_at:%H:%M} {settings.billsync_timezone}",
    }[name]
