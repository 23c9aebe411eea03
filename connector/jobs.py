"""Long work asked for from the console and done by the worker: a bill run, a full pull.

A person starts a job (``enqueue``): a row of ``console_jobs``, ``queued``. The worker claims it
(``claim_job``: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``, like ``connector.queue``; on
SQLite the write transaction's ``BEGIN IMMEDIATE`` serialises claimers), marks it ``running``,
reports its progress as it goes (``report_progress``: customers done out of all, for a bill run)
and settles it ``done`` with its result or ``failed`` with its error (``finish_job``). The page
reads the row (``find_job``) and refreshes itself until the job ends.

Two starts never run two jobs of one kind at once: ``active_kind`` holds the kind while the job
is queued or running (NULL after), under a UNIQUE constraint, so the second ``enqueue`` fails
with ``JobBusyError`` naming the job already under way. A job whose worker died (no heartbeat for
``JOB_LEASE``; a live worker beats every ``HEARTBEAT_SECONDS``) is claimed again: the bill run and
the pull are idempotent, so running one again only finishes the work.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, Text, UniqueConstraint, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from connector.database import is_postgresql, transaction
from connector.sync.tables import UtcDateTime

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.jobs")

KINDS = ("bill_run", "pull")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
#: A running job whose worker has not said it is alive for this long belongs to a dead worker and
#: is claimed again.
JOB_LEASE = timedelta(minutes=15)
#: How often a worker says its job is alive (between the progress reports, e.g. a long pull).
HEARTBEAT_SECONDS = 60
ERROR_MAX_LENGTH = 2000


class JobRow(SQLModel, table=True):
    """One job started from the console."""

    __tablename__ = "console_jobs"
    __table_args__ = (UniqueConstraint("active_kind", name="uq_console_jobs_active_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    active_kind: str | None = Field(default=None, max_length=20)  # the kind while queued or running
    status: str = Field(max_length=20, index=True)
    params_json: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: str = Field(max_length=300)
    requested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    worker_id: str | None = Field(default=None, max_length=200)
    done_count: int | None = Field(default=None)
    total_count: int | None = Field(default=None)
    result_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    params: dict[str, Any]
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    done_count: int | None
    total_count: int | None
    result: dict[str, Any] | None
    error: str | None
    worker_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status in (QUEUED, RUNNING)

    @property
    def percent(self) -> int | None:
        if not self.total_count or self.done_count is None:
            return None
        return min(100, self.done_count * 100 // self.total_count)


class JobBusyError(Exception):
    """A job of this kind is already queued or running."""

    def __init__(self, job_id: int | None):
        self.job_id = job_id
        super().__init__(f"job {job_id} of this kind is already under way")


def _job(row: JobRow) -> Job:
    assert row.id is not None
    return Job(row.id, row.kind, row.status, json.loads(row.params_json), row.requested_by, row.requested_at,
               row.started_at, row.finished_at, row.done_count, row.total_count,
               json.loads(row.result_json) if row.result_json else None, row.error, row.worker_id)


def active_job(session: Session, kind: str) -> Job | None:
    row = session.exec(select(JobRow).where(JobRow.active_kind == kind)).first()
    return _job(row) if row is not None else None


def enqueue(engine: Engine, kind: str, params: dict[str, Any], *, requested_by: str, now: datetime) -> Job:
    """Queue a job; raises ``JobBusyError`` when one of its kind is queued or running."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    try:
        with transaction(engine) as session:
            row = JobRow(kind=kind, active_kind=kind, status=QUEUED, params_json=json.dumps(params),
                         requested_by=requested_by, requested_at=now)
            session.add(row)
            session.flush()
            return _job(row)
    except IntegrityError:
        with Session(engine) as session:
            busy = active_job(session, kind)
        raise JobBusyError(busy.id if busy else None) from None


def find_job(session: Session, job_id: int) -> Job | None:
    row = session.get(JobRow, job_id)
    return _job(row) if row is not None else None


def recent_jobs(session: Session, *, limit: int = 20) -> list[Job]:
    return [_job(r) for r in session.exec(select(JobRow).order_by(JobRow.id.desc()).limit(limit)).all()]  # type: ignore[union-attr]


def claim_job(engine: Engine, *, worker_id: str, now: datetime) -> Job | None:
    """The oldest queued job (or one whose worker died), marked running for ``worker_id``; None if none."""
    with transaction(engine) as session:
        query = (select(JobRow).where(or_(JobRow.status == QUEUED,
                                          (JobRow.status == RUNNING) & (JobRow.heartbeat_at < now - JOB_LEASE)))
                 .order_by(JobRow.id).limit(1))  # type: ignore[arg-type]
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True)
        row = session.exec(query).first()
        if row is None:
            return None
        row.status, row.started_at, row.heartbeat_at, row.worker_id = RUNNING, now, now, worker_id
        session.add(row)
        session.flush()
        return _job(row)


def _held_by(job_id: int, worker_id: str | None) -> Any:
    """The job's row while ``worker_id`` still holds it (a worker whose lease was taken over by
    another changes nothing any more); ``None``: whoever holds it."""
    condition = (JobRow.id == job_id) & (JobRow.status == RUNNING)  # type: ignore[operator]
    return condition if worker_id is None else condition & (JobRow.worker_id == worker_id)  # type: ignore[operator]


def report_progress(engine: Engine, job_id: int, done: int, total: int, *, now: datetime,
                    worker_id: str | None = None) -> None:
    with transaction(engine) as session:
        session.execute(update(JobRow).where(_held_by(job_id, worker_id))
                        .values(done_count=done, total_count=total, heartbeat_at=now))


def beat(engine: Engine, job_id: int, *, now: datetime, worker_id: str | None = None) -> None:
    """Say the job's worker is alive (its lease starts again)."""
    with transaction(engine) as session:
        session.execute(update(JobRow).where(_held_by(job_id, worker_id)).values(heartbeat_at=now))


def finish_job(engine: Engine, job_id: int, *, now: datetime, result: dict[str, Any] | None = None,
               error: str | None = None, worker_id: str | None = None) -> None:
    """Settle a job: ``done`` with its result, or ``failed`` with its error; its kind is free again.
    With ``worker_id``, only while that worker still holds the job."""
    with transaction(engine) as session:
        session.execute(update(JobRow).where(_held_by(job_id, worker_id)).values(
            status=FAILED if error else DONE, active_kind=None, finished_at=now, heartbeat_at=now,
            result_json=json.dumps(result) if result is not None else None,
            error=error[:ERROR_MAX_LENGTH] if error else None))


# ---------------------------------------------------------------- running a job


def _bill_run(services: Services, job: Job, progress: Callable[[int, int], None]) -> dict[str, Any]:
    from connector.billing_jobs import run_bill_run

    result = run_bill_run(services, date.fromisoformat(job.params["as_of"]), progress=progress)
    return {"customers_billed": result.customers_billed, "invoices_created": result.invoices_created,
            "invoices_finalized": result.invoices_finalized, "invoices_held": result.invoices_created
            - result.invoices_finalized, "credit_notes_issued": result.credit_notes_issued,
            "failures": [f"{cid}: {reason}" for cid, reason in sorted(result.failures.items())]}


def _pull(services: Services, job: Job, progress: Callable[[int, int], None]) -> dict[str, Any]:
    from connector.sync.pull import pull_changes

    report = pull_changes(services, full=True)
    return {"objects": [{"object": o.object_name, "fetched": o.fetched, "applied": o.applied, "failed": o.failed,
                         "error": o.error} for o in report.objects],
            "failed_records": report.failed_records,
            "paused": report.pause_message}


RUNNERS: dict[str, Callable[[Services, Job, Callable[[int, int], None]], dict[str, Any]]] = {
    "bill_run": _bill_run, "pull": _pull}


def _readable(exc: Exception, job: Job) -> str:
    """What the job's page says of a failure: a refusal of the engine or the settings as it is
    worded for people; anything else (a driver's or a client's text may name hosts and tables)
    only by its kind, the worker's log having the details."""
    from billing_engine.errors import BillingError
    from connector.settings import SettingsError

    if isinstance(exc, BillingError | SettingsError):
        return str(exc)
    return f"{exc.__class__.__name__}: an unexpected error; the worker's log has the details (job {job.id})"


def run_job(services: Services, job: Job) -> Job:
    """Do a claimed job, reporting its progress, and settle it. A job's failure is recorded on it
    (the worker goes on); the settled job is returned."""
    engine = services.engine

    def progress(done: int, total: int) -> None:
        report_progress(engine, job.id, done, total, now=datetime.now(UTC), worker_id=job.worker_id)

    done = threading.Event()

    def keep_alive() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                beat(engine, job.id, now=datetime.now(UTC), worker_id=job.worker_id)
            except Exception as exc:  # the next beat may succeed; the job goes on meanwhile
                log.warning("job %s: heartbeat not written: %s", job.id, exc.__class__.__name__)

    alive = threading.Thread(target=keep_alive, name=f"job-{job.id}-heartbeat", daemon=True)
    alive.start()
    try:
        result = RUNNERS[job.kind](services, job, progress)
    except Exception as exc:
        log.exception("job %s (%s) failed", job.id, job.kind)
        finish_job(engine, job.id, now=datetime.now(UTC), error=_readable(exc, job), worker_id=job.worker_id)
    else:
        finish_job(engine, job.id, now=datetime.now(UTC), result=result, worker_id=job.worker_id)
    finally:
        done.set()
        alive.join(timeout=10)
    with Session(engine) as session:
        settled = find_job(session, job.id)
    assert settled is not None
    return settled
