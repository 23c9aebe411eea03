"""The clock's record of its daily runs (table ``clock_runs``), so a missed run is caught up.

One row per daily job and business date (in BILLSYNC_TIMEZONE): when the run last
started, when it finished (``None`` while it runs, or if it failed or its clock died
halfway), how many times it was started, by which clock, and the last failure. A clock
that starts, or takes the lead, after a job's time of day with no finished run for
today runs it at once (``connector.scheduler``); the bill run and the reconciliation are
idempotent, so running one again after a clock died halfway only finishes the work.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Engine, Text
from sqlmodel import Field, SQLModel, select

from connector.database import transaction
from connector.sync.tables import UtcDateTime

JOB_NAME_LENGTH = 40
CLOCK_ID_LENGTH = 200


class ClockRun(SQLModel, table=True):
    """One daily job's run for one business date."""

    __tablename__ = "clock_runs"

    job: str = Field(primary_key=True, max_length=JOB_NAME_LENGTH)
    run_date: date = Field(primary_key=True)
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    attempts: int = Field(default=0)
    clock_id: str = Field(max_length=CLOCK_ID_LENGTH)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


def record_start(engine: Engine, job: str, run_date: date, *, clock_id: str, at: datetime) -> None:
    with transaction(engine) as session:
        run = session.get(ClockRun, (job, run_date))
        if run is None:
            run = ClockRun(job=job, run_date=run_date, started_at=at, clock_id=clock_id)
        run.started_at, run.finished_at, run.clock_id = at, None, clock_id[:CLOCK_ID_LENGTH]
        run.attempts += 1
        session.add(run)


def record_finish(engine: Engine, job: str, run_date: date, *, at: datetime) -> None:
    with transaction(engine) as session:
        run = session.get(ClockRun, (job, run_date))
        if run is not None:
            run.finished_at, run.last_error = at, None
            session.add(run)


def record_failure(engine: Engine, job: str, run_date: date, *, error: str) -> None:
    with transaction(engine) as session:
        run = session.get(ClockRun, (job, run_date))
        if run is not None:
            run.last_error = error[:2000]
            session.add(run)


def finished(engine: Engine, job: str, run_date: date) -> bool:
    """Whether ``job`` has a finished run for ``run_date``."""
    with transaction(engine) as session:
        run = session.get(ClockRun, (job, run_date))
        return run is not None and run.finished_at is not None


def all_runs(engine: Engine) -> list[ClockRun]:
    with transaction(engine) as session:
        return list(session.exec(select(ClockRun).order_by(ClockRun.run_date, ClockRun.job)).all())  # type: ignore[arg-type]
