"""The clock process: one APScheduler scheduler, in the one clock that leads.

Jobs (times in BILLSYNC_TIMEZONE):

| job | trigger | calls (the same function as the CLI command) |
|---|---|---|
| ``pull`` | every PULL_INTERVAL_SECONDS, first run at start | ``connector.sync.pull.pull_changes`` (``billsync sync pull``) |
| ``push`` | every PUSH_INTERVAL_SECONDS, first run at start | ``connector.sync.push.push_outbox`` (``billsync sync push``) |
| ``bill_run`` | daily at BILL_RUN_AT | ``connector.billing_jobs.run_bill_run`` as of today (``billsync bill-run``) |
| ``reconcile`` | daily at RECONCILE_AT | ``connector.sync.reconcile.reconcile_period`` for the previous and the current month (``billsync reconcile``), report only |
| ``collections`` | daily at COLLECTIONS_AT | ``connector.collection_jobs.run_collections`` as of today (``billsync payments collections``): direct debits due booked, unpaid invoices past due marked overdue |
| ``dunning`` | daily at DUNNING_AT | ``connector.collection_jobs.run_dunning`` as of today (``billsync payments dunning``): the reminders of DUNNING_SCHEDULE |
| ``churn_score`` | daily at CHURN_SCORE_AT (CHURN_RISK=on) | ``connector.churn_jobs.run_churn_scoring`` as of today (``billsync churn score``), after ``run_churn_training`` when this month's model is not trained yet |
| ``churn_train`` | monthly, the 1st at CHURN_SCORE_AT, and at start when this month's model is not trained (CHURN_RISK=on) | ``connector.churn_jobs.run_churn_training`` as of today (``billsync churn train``); skipped when this month's model is trained |
| ``forecast`` | monthly on the 1st at FORECAST_AT, and at start | ``connector.billing_jobs.store_month_forecast`` for today's month (``billsync metrics forecast --store``): the month's MRR forecast stored once; not scheduled with ``FORECAST=off`` |
| ``partitions`` | at start, then every 6 hours | ``connector.billing_jobs.prepare_usage_partitions`` through the third month ahead (``billsync usage partitions``); nothing to do on SQLite |

Each job runs at most once at a time (``max_instances=1``), missed runs are coalesced
into one, and a job's exception is logged and never stops the clock. Without a
Salesforce connection (``SF_AUTH=none``) only the bill run, the collection jobs, the churn jobs and the
partitions are scheduled; the churn jobs only with ``CHURN_RISK=on``.

**One leader.** Any number of ``billsync clock`` processes may run (a deploy overlap, a
second dyno): a ``Clock`` runs its scheduler only while it holds the leadership lock
(``connector.clock_lock``: a PostgreSQL advisory lock, or a file lock next to a SQLite
database). The others are standbys: they try to take the lock every
CLOCK_LOCK_POLL_SECONDS and lead when the leader is gone; the leader checks as often that
it still holds the lock, and stops its jobs when it lost it.

**Daily runs are recorded and caught up.** Each daily run's start and finish is recorded
per business date (``connector.clock_runs``). A clock that starts or takes the lead
after a daily job's time with no finished run for today (none, or one whose clock died
halfway) runs it at once; a scheduled daily run whose date already finished is skipped.
The bill run, the reconciliation and the collection jobs are idempotent, so running one again is
safe.

**The month's churn model comes before the day's scores.** The two churn jobs never run at once
(one lock), and a scoring first trains when this month's model is not trained yet
(``connector.churn_jobs.churn_model_is_current``: none trained on the history through the last
month end): on the 1st the scores use the model trained that day, whichever job fires first. A
clock that starts or takes the lead when this month's model is not trained runs ``churn_train`` at
once, so a training missed while no clock ran is caught up (the scheduler's jobs live in memory:
a stopped clock remembers no missed run).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from connector.clock_lock import ClockLock
    from connector.settings import Settings
    from connector.wiring import Services

log = logging.getLogger("billsync.clock")

PUSH_BATCH_SIZE = 200
CRON_MISFIRE_GRACE_SECONDS = 6 * 3600  # a daily run delayed in a running clock (busy, host asleep) still runs
# A monthly training delayed in a running clock still runs that week; one missed while no clock ran
# is caught up at start (``missed_training``).
CHURN_TRAIN_MISFIRE_SECONDS = 7 * 86400


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
    "collections": UseCase("connector.collection_jobs", "run_collections"),
    "dunning": UseCase("connector.collection_jobs", "run_dunning"),
    "partitions": UseCase("connector.billing_jobs", "prepare_usage_partitions"),
    "churn_score": UseCase("connector.churn_jobs", "run_churn_scoring"),
    "churn_train": UseCase("connector.churn_jobs", "run_churn_training"),
    "forecast": UseCase("connector.billing_jobs", "store_month_forecast"),
}
SALESFORCE_JOBS = ("pull", "push", "reconcile")
CHURN_JOBS = ("churn_score", "churn_train")  # scheduled only with CHURN_RISK=on
DAILY_JOBS = ("bill_run", "reconcile", "collections", "dunning", "churn_score")  # recorded in clock_runs, caught up when missed
#: Whether this month's churn model is trained (the scoring trains first when it is not).
CHURN_MODEL_CURRENT = UseCase("connector.churn_jobs", "churn_model_is_current")
#: Held by a churn job while it runs: the training and a scoring never overlap.
_CHURN_LOCK = threading.Lock()


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


def bill_run_job(services: Services, today: date | None = None) -> Any:
    as_of = today or _today(services)
    result = USE_CASES["bill_run"].resolve()(services, as_of)
    log.info("bill run as of %s: %s invoices created, %s finalized, %s held for review, %s with anomalies, %s failed",
             as_of, result.invoices_created, result.invoices_finalized, result.invoices_held,
             result.invoices_anomalous, len(result.failures))
    for customer_id, reason in sorted(result.failures.items()):
        log.warning("bill run as of %s: customer %s failed: %s", as_of, customer_id, reason)
    return result


def reconcile_job(services: Services, today: date | None = None) -> list[Any]:
    reports = []
    for period in previous_and_current_month(today or _today(services)):
        report = USE_CASES["reconcile"].resolve()(services, period)
        reports.append(report)
        if report.agrees:
            log.info("reconcile %s: engine and Salesforce agree", period)
        else:
            log.warning("reconcile %s: %s mismatches; run 'billsync reconcile --period %s'", period,
                        len(report.mismatches), period)
    return reports


def collections_job(services: Services, today: date | None = None) -> Any:
    as_of = today or _today(services)
    report = USE_CASES["collections"].resolve()(services, as_of)
    for line in report.lines():
        log.info("%s", line)
    return report


def dunning_job(services: Services, today: date | None = None) -> Any:
    as_of = today or _today(services)
    report = USE_CASES["dunning"].resolve()(services, as_of)
    for line in report.lines():
        log.info("%s", line)
    return report


def churn_score_job(services: Services, today: date | None = None) -> Any:
    """Score as of today; when this month's model is not trained yet (the 1st, or a training
    missed), train first, so the day's scores use it. A failed training leaves the scoring to the
    model in use."""
    as_of = today or _today(services)
    with _CHURN_LOCK:
        if not CHURN_MODEL_CURRENT.resolve()(services, as_of):
            try:
                _train(services, as_of)
            except Exception:
                log.exception("churn model as of %s: the training failed; scoring with the model in use", as_of)
        report = USE_CASES["churn_score"].resolve()(services, as_of)
    log.info("churn risk as of %s: %s customers scored (%s), %s changed, %s no longer paying", as_of,
             report.scored, report.method, report.changed, report.removed)
    return report


def churn_train_job(services: Services, today: date | None = None) -> Any:
    """Train as of today unless this month's model is trained (by a scoring that ran first)."""
    as_of = today or _today(services)
    with _CHURN_LOCK:
        if CHURN_MODEL_CURRENT.resolve()(services, as_of):
            log.info("churn model as of %s: this month's model is trained; skipped", as_of)
            return None
        return _train(services, as_of)


def _train(services: Services, as_of: date) -> Any:
    report = USE_CASES["churn_train"].resolve()(services, as_of)
    log.info("churn model as of %s: %s", as_of, report.message)
    return report


#: How many months after the current one the usage events' partitions are prepared.
PARTITION_MONTHS_AHEAD = 3
#: How often the clock prepares them (idempotent and quick when they exist).
PARTITIONS_EVERY_HOURS = 6


def partitions_job(services: Services, today: date | None = None) -> Any:
    from billing_engine.periods import add_months

    through = add_months((today or _today(services)).replace(day=1), PARTITION_MONTHS_AHEAD)
    report = USE_CASES["partitions"].resolve()(services, through)
    if report.created or report.moved:
        log.info("usage partitions through %s: created %s; %s events moved out of the default partition",
                 f"{through:%Y-%m}", ", ".join(f"{m:%Y-%m}" for m in report.created) or "none", report.moved)
    return report


def forecast_job(services: Services, today: date | None = None) -> Any:
    day = today or _today(services)
    result = USE_CASES["forecast"].resolve()(services, day)
    if result.stored:
        log.info("MRR forecast made in %s stored: %s rows", result.made_in, result.rows)
    return result


JOB_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "pull": pull_job, "push": push_job, "bill_run": bill_run_job, "reconcile": reconcile_job,
    "collections": collections_job, "dunning": dunning_job,
    "partitions": partitions_job, "churn_score": churn_score_job, "churn_train": churn_train_job,
    "forecast": forecast_job,
}


def run_job(name: str, services: Services) -> None:
    """Run one job; its exception is logged, never raised (the clock keeps going).

    A daily job's run is recorded (started, then finished) for today's business date, and
    skipped when today's run already finished.
    """
    from connector import clock_runs

    try:
        if name not in DAILY_JOBS:
            JOB_FUNCTIONS[name](services)
            return
        today = _today(services)
        if clock_runs.finished(services.engine, name, today):
            log.info("clock job %s for %s already finished; skipped", name, today)
            return
        clock_runs.record_start(services.engine, name, today, clock_id=worker_id(), at=_now())
        try:
            JOB_FUNCTIONS[name](services, today)
        except Exception as exc:
            clock_runs.record_failure(services.engine, name, today, error=f"{exc.__class__.__name__}: {exc}")
            raise
        clock_runs.record_finish(services.engine, name, today, at=_now())
        log.info("clock job %s for %s finished", name, today)
    except _needs_a_person() as exc:  # a setting or the org must change first: one line, no traceback
        log.error("clock job %s cannot run: %s; it tries again at its next time", name, exc)
    except Exception:
        log.exception("clock job %s failed; it runs again at its next time", name)


def _needs_a_person() -> tuple[type[Exception], ...]:
    """Errors that say what an admin must fix (mapping files, the org billsync is bound to)."""
    from connector.sync.binding import OrgBindingError
    from mappings import MappingsError

    return (OrgBindingError, MappingsError)


def missed_runs(services: Services, now: datetime) -> set[str]:
    """The daily jobs whose time of day has passed today with no finished run for today."""
    from connector import clock_runs

    settings = services.settings
    local = now.astimezone(ZoneInfo(settings.billsync_timezone))
    times = {"bill_run": settings.bill_run_at, "reconcile": settings.reconcile_at,
             "collections": settings.collections_at, "dunning": settings.dunning_at,
             "churn_score": settings.churn_score_at}
    missed = set()
    for name in DAILY_JOBS:
        if name in SALESFORCE_JOBS and not is_connected(settings):
            continue
        if name in CHURN_JOBS and settings.churn_risk != "on":
            continue
        if local.time().replace(tzinfo=None) < times[name]:
            continue
        try:
            done = clock_runs.finished(services.engine, name, local.date())
        except Exception as exc:  # the run itself checks again, and reports the database's state
            log.warning("clock: cannot read today's %s run (%s); running it now", name, exc.__class__.__name__)
            done = False
        if not done:
            missed.add(name)
    return missed


def missed_training(services: Services, now: datetime) -> bool:
    """Whether churn risk is on and this month's model is not trained (the monthly training was
    missed, or never ran): the clock runs ``churn_train`` at start."""
    settings = services.settings
    if settings.churn_risk != "on":
        return False
    local = now.astimezone(ZoneInfo(settings.billsync_timezone))
    try:
        return not CHURN_MODEL_CURRENT.resolve()(services, local.date())
    except Exception as exc:  # the job itself checks again, and reports the database's state
        log.warning("clock: cannot read this month's churn model (%s); training now", exc.__class__.__name__)
        return True


# ---------------------------------------------------------------- the scheduler


def is_connected(settings: Settings) -> bool:
    return settings.sf_auth != "none"


def build_scheduler(services: Services, scheduler_cls: type[BaseScheduler] = BackgroundScheduler,
                    *, now: datetime | None = None, catch_up: Collection[str] = ()) -> BaseScheduler:
    """The clock's scheduler with its jobs (not started); the daily jobs named in
    ``catch_up`` (and ``churn_train`` when named there) run at ``now`` first. Tests pass a
    scheduler they step themselves."""
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

    def daily(name: str) -> dict[str, Any]:
        return {"next_run_time": start} if name in catch_up else {}

    add("bill_run", CronTrigger(hour=settings.bill_run_at.hour, minute=settings.bill_run_at.minute,
                                timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS, **daily("bill_run"))
    if is_connected(settings):
        add("reconcile", CronTrigger(hour=settings.reconcile_at.hour, minute=settings.reconcile_at.minute,
                                     timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS,
            **daily("reconcile"))
    add("collections", CronTrigger(hour=settings.collections_at.hour, minute=settings.collections_at.minute,
                                   timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS,
        **daily("collections"))
    add("dunning", CronTrigger(hour=settings.dunning_at.hour, minute=settings.dunning_at.minute,
                               timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS, **daily("dunning"))
    if settings.churn_risk == "on":
        at = settings.churn_score_at
        add("churn_score", CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.billsync_timezone),
            CRON_MISFIRE_GRACE_SECONDS, **daily("churn_score"))
        add("churn_train", CronTrigger(day=1, hour=at.hour, minute=at.minute, timezone=settings.billsync_timezone),
            CHURN_TRAIN_MISFIRE_SECONDS, **daily("churn_train"))
    add("partitions", IntervalTrigger(hours=PARTITIONS_EVERY_HOURS, timezone=settings.billsync_timezone),
        PARTITIONS_EVERY_HOURS * 3600, next_run_time=start)
    if settings.forecast == "on":  # stored once a month: at start too, so a month the clock missed is stored
        add("forecast", CronTrigger(day=1, hour=settings.forecast_at.hour, minute=settings.forecast_at.minute,
                                    timezone=settings.billsync_timezone), CRON_MISFIRE_GRACE_SECONDS,
            next_run_time=start)
    return scheduler


def describe_trigger(name: str, settings: Settings) -> str:
    return {
        "pull": f"every {settings.pull_interval_seconds} s",
        "push": f"every {settings.push_interval_seconds} s",
        "bill_run": f"daily at {settings.bill_run_at:%H:%M} {settings.billsync_timezone}",
        "reconcile": f"daily at {settings.reconcile_at:%H:%M} {settings.billsync_timezone}",
        "collections": f"daily at {settings.collections_at:%H:%M} {settings.billsync_timezone}",
        "dunning": f"daily at {settings.dunning_at:%H:%M} {settings.billsync_timezone}",
        "partitions": f"every {PARTITIONS_EVERY_HOURS} h",
        "churn_score": f"daily at {settings.churn_score_at:%H:%M} {settings.billsync_timezone}",
        "churn_train": f"monthly on the 1st at {settings.churn_score_at:%H:%M} {settings.billsync_timezone}, "
                       "before that day's scoring, and at start when this month's model is not trained",
        "forecast": f"monthly on the 1st at {settings.forecast_at:%H:%M} {settings.billsync_timezone}, and at start",
    }[name]


# ---------------------------------------------------------------- leadership


class Clock:
    """One clock process: a standby until it holds the leadership lock, then the scheduler's host.

    ``step()`` is called at start and every CLOCK_LOCK_POLL_SECONDS (``run_clock``): a
    standby tries to take the lock, and on success builds and starts the scheduler with
    today's missed daily runs first; the leader checks it still holds the lock.
    """

    def __init__(self, services: Services, lock: ClockLock,
                 scheduler_cls: type[BaseScheduler] = BackgroundScheduler):
        self.services, self.lock, self.scheduler_cls = services, lock, scheduler_cls
        self.scheduler: BaseScheduler | None = None
        self._state: str | None = None  # what was last logged: each state is logged once

    @property
    def leading(self) -> bool:
        return self.scheduler is not None

    def step(self) -> bool:
        """One look at the lock; ``False`` when this clock led and lost the lock (its jobs are stopped)."""
        if self.scheduler is not None:
            if self.lock.still_held():
                return True
            log.error("lost the clock lock (%s): stopped the jobs; another clock may lead now",
                      self.lock.describe())
            self._stop_scheduler()
            self._state = "lost"
            return False
        try:
            acquired = self.lock.try_acquire()
        except Exception as exc:
            self._say("unreachable", logging.WARNING, "standby: cannot reach the clock lock (%s): %s: %s; retrying "
                      "every %s s", self.lock.describe(), exc.__class__.__name__, str(exc).splitlines()[0] if str(exc)
                      else "", self.services.settings.clock_lock_poll_seconds)
            return True
        if not acquired:
            self._say("standby", logging.INFO, "standby: another clock leads; trying to take over every %s s",
                      self.services.settings.clock_lock_poll_seconds)
            return True
        self._lead()
        return True

    def _lead(self) -> None:
        self._say("leading", logging.INFO, "leading: this clock runs the jobs (%s)", self.lock.describe())
        now = _now()
        missed = missed_runs(self.services, now)
        for name in sorted(missed):
            log.info("clock: today's %s has not finished; running it now", name)
        if missed_training(self.services, now):
            log.info("clock: this month's churn model is not trained; training it now")
            missed = {*missed, "churn_train"}
        scheduler = build_scheduler(self.services, self.scheduler_cls, now=now, catch_up=missed)
        scheduler.start()
        self.scheduler = scheduler

    def _say(self, state: str, level: int, message: str, *args: Any) -> None:
        if self._state != state:
            self._state = state
            log.log(level, message, *args)

    def _stop_scheduler(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)

    def close(self) -> None:
        """Stop the jobs and give the lock up (a standby takes over at its next try)."""
        self._stop_scheduler()
        self.lock.release()


def run_clock(clock: Clock, stop: threading.Event) -> bool:
    """Step ``clock`` every CLOCK_LOCK_POLL_SECONDS until ``stop``; ``False`` if it led and lost the lock."""
    poll = clock.services.settings.clock_lock_poll_seconds
    try:
        while True:
            if not clock.step():
                return False
            if stop.wait(poll):
                return True
    finally:
        clock.close()
