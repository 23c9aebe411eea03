"""Where the sync stands, read in one place: the installation, the outbox (rows per status), the
pull's cursors, the last push, record errors and open reviews (the webhook inbox has its own,
``connector.webhooks.processing.inbox_counts``).

The push records its last run that delivered something (``record_job_run``, table
``sync_job_runs``); the pull's runs are on its cursors. ``sync_overview`` is what the API's sync
status answers (``billsync sync status`` prints the same figures with the rows behind them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from connector.database import is_postgresql, transaction
from connector.queue import utc
from connector.sync.installation import Installation, find_installation
from connector.sync.outbox_claims import outbox_counts
from connector.sync.pull import CursorStatus, pull_status
from connector.sync.tables import ReviewFlag, SyncJobRun, SyncRecordError

PUSH = "push"


@dataclass(frozen=True)
class JobRun:
    job: str
    finished_at: datetime
    summary: str


def record_job_run(engine: Any, job: str, *, finished_at: datetime, summary: str) -> None:
    """Remember the last run of ``job`` that delivered something (one row per job, replaced)."""
    table = SyncJobRun.__table__  # type: ignore[attr-defined]  # set on every table class
    with transaction(engine) as session:
        dialect = postgresql if is_postgresql(session) else sqlite
        insert = dialect.insert(table).values(job=job, finished_at=finished_at, summary=summary)
        session.execute(insert.on_conflict_do_update(
            index_elements=["job"], set_={"finished_at": insert.excluded.finished_at,
                                          "summary": insert.excluded.summary}))


def last_job_run(session: Session, job: str) -> JobRun | None:
    row = session.get(SyncJobRun, job)
    return JobRun(row.job, utc(row.finished_at) or row.finished_at, row.summary) if row is not None else None


@dataclass(frozen=True)
class SyncOverview:
    installation: Installation | None
    outbox: dict[str, int]  # pending, in_flight, done, dead, failing (pending after an error)
    cursors: list[CursorStatus]
    last_push: JobRun | None
    record_errors: int  # Salesforce records the pull could not apply
    open_reviews: int

    @property
    def last_pull_at(self) -> datetime | None:
        return max((c.last_run_at for c in self.cursors if c.last_run_at), default=None)


def sync_overview(engine: Any, session: Session) -> SyncOverview:
    """The figures of the sync as they stand (reads only)."""
    state = pull_status(session, error_limit=0)
    return SyncOverview(
        installation=find_installation(engine),
        outbox=outbox_counts(session),
        cursors=state.cursors,
        last_push=last_job_run(session, PUSH),
        record_errors=session.execute(select(func.count()).select_from(SyncRecordError)).scalar_one(),
        open_reviews=session.execute(select(func.count()).select_from(ReviewFlag)
                                     .where(ReviewFlag.resolved_at.is_(None))).scalar_one())
