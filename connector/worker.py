"""The worker process: drains the webhook inbox and the Salesforce outbox.

Run any number of them (``worker`` in the Procfile): outbox rows are claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never push the same
row, and a worker killed mid-push leaves its rows to be claimed again after the lease
(re-sending is harmless: every push is an upsert by external id).

Each pass runs every drain in ``drains_for(services)`` in turn; a drain returns how
many items it handled. The loop sleeps ``--poll-seconds`` when a pass found nothing,
and stops after the current batch on SIGTERM or SIGINT (``billsync worker``, in
``connector.cli.processes``).

While the database is unreachable the worker says so once ("database unreachable: …;
retrying with backoff"), waits 1 s, 2 s, 4 s … at most 30 s between tries, and says
"database reachable again" once when a pass succeeds: one line per change, no traceback.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.worker")

OUTAGE_FIRST_WAIT_SECONDS = 1.0
OUTAGE_MAX_WAIT_SECONDS = 30.0
#: How long a worker waits before pushing again after the push refused the org.
REFUSED_PUSH_WAIT = timedelta(minutes=5)
DOCUMENTS_RETRY = timedelta(minutes=5)


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (down, refusing, dropped connection)."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


@dataclass(frozen=True)
class Drain:
    name: str
    run: Callable[[Callable[[], bool]], int]  # (should_stop) -> items handled
    wait_until: Callable[[], datetime | None] = lambda: None  # e.g. a Salesforce limit pause


class _OutboxDrain:
    def __init__(self, services: Services, worker_id: str, batch_size: int, lease: timedelta):
        self.services, self.worker_id, self.batch_size, self.lease = services, worker_id, batch_size, lease
        self.paused_until: datetime | None = None

    def __call__(self, should_stop: Callable[[], bool]) -> int:
        from connector.sync.binding import OrgBindingError
        from connector.sync.push import push_outbox

        try:
            report = push_outbox(self.services, worker_id=self.worker_id, batch_size=self.batch_size,
                                 lease=self.lease, should_stop=should_stop)
        except OrgBindingError as exc:  # nothing was sent; an admin must act: say so, look again later
            log.error("push refused: %s", exc)
            self.paused_until = datetime.now(UTC) + REFUSED_PUSH_WAIT
            return 0
        self.paused_until = report.paused_until
        if report.claimed:
            for line in report.lines():
                log.info("push: %s", line)
        return report.done + report.dead + report.superseded


class _InboxDrain:
    """Salesforce notifications stored by the web process: re-read their records and apply them."""

    def __init__(self, services: Services, worker_id: str, batch_size: int):
        self.services, self.worker_id, self.batch_size = services, worker_id, batch_size
        self.paused_until: datetime | None = None

    def __call__(self, should_stop: Callable[[], bool]) -> int:
        from connector.webhooks.processing import drain_inbox

        report = drain_inbox(self.services, worker_id=self.worker_id, batch_size=min(self.batch_size, 200))
        self.paused_until = report.paused_until
        if report.claimed:
            for line in report.lines():
                log.info("inbox: %s", line)
        return report.done + report.dead


class _DocumentsDrain:
    """Finalized invoices and credit notes without a document: render and store them (their
    ``document.stored`` events then attach the PDFs in Salesforce). Without the seller's identity,
    says once what is missing and looks again every ``DOCUMENTS_RETRY`` (the settings do not change
    while the process runs, but a first bill run may not have happened yet)."""

    def __init__(self, services: Services, batch_size: int):
        self.services, self.batch_size = services, batch_size
        self.refused_until: datetime | None = None
        self.said: str | None = None

    def __call__(self, should_stop: Callable[[], bool]) -> int:
        from connector.documents.generate import generate_documents
        from connector.documents.seller import SellerIdentityError

        if self.refused_until is not None and datetime.now(UTC) < self.refused_until:
            return 0
        try:
            report = generate_documents(self.services, batch_size=min(self.batch_size, 100),
                                        limit=self.batch_size)
        except SellerIdentityError as exc:
            text = "; ".join(exc.problems)
            if text != self.said:
                log.warning("documents: none generated until the seller's identity is complete: %s", text)
                self.said = text
            self.refused_until = datetime.now(UTC) + DOCUMENTS_RETRY
            return 0
        if report.generated or report.failed:
            for line in report.lines():
                log.info("documents: %s", line)
        return report.generated


class _JobsDrain:
    """Jobs started from the console (a bill run, a full pull): one claimed and run per pass."""

    def __init__(self, services: Services, worker_id: str):
        self.services, self.worker_id = services, worker_id

    def __call__(self, should_stop: Callable[[], bool]) -> int:
        from connector.jobs import claim_job, run_job

        job = claim_job(self.services.engine, worker_id=self.worker_id, now=datetime.now(UTC))
        if job is None:
            return 0
        log.info("job %s (%s) started, asked by %s", job.id, job.kind, job.requested_by)
        settled = run_job(self.services, job)
        log.info("job %s (%s) %s", settled.id, settled.kind, settled.status)
        return 1


def drains_for(services: Services, *, worker_id: str, batch_size: int, lease: timedelta) -> list[Drain]:
    """What a worker drains, in order: the jobs started from the console, notifications (they change
    what the push sends), then the documents of new invoices (their PDFs are pushed too), then the
    outbox."""
    drains: list[Drain] = [Drain("console jobs", _JobsDrain(services, worker_id))]
    if services.settings.sf_auth != "none":
        inbox = _InboxDrain(services, worker_id, batch_size)
        drains.append(Drain("webhook inbox", inbox, lambda: inbox.paused_until))
    from connector.documents.seller import documents_wanted

    if documents_wanted(services.settings):
        drains.append(Drain("documents", _DocumentsDrain(services, batch_size)))
    if services.settings.sf_auth != "none":
        outbox = _OutboxDrain(services, worker_id, batch_size, lease)
        drains.append(Drain("outbox", outbox, lambda: outbox.paused_until))
    return drains


def run_worker(drains: list[Drain], *, once: bool, poll_seconds: float, stop: threading.Event) -> int:
    """Run the drains until ``stop`` (or, with ``once``, until a pass finds nothing). Returns items handled.

    ``poll_seconds`` must be a finite number greater than 0 (``nan`` would never sleep).
    """
    if not (isinstance(poll_seconds, int | float) and math.isfinite(poll_seconds) and poll_seconds > 0):
        raise ValueError(f"poll_seconds must be a finite number of seconds above 0, not {poll_seconds!r}")
    total = 0
    outage_wait: float | None = None  # the next wait while the database is unreachable
    while not stop.is_set():
        handled = 0
        unreachable: BaseException | None = None
        for drain in drains:
            if stop.is_set():
                break
            try:
                handled += drain.run(stop.is_set)
            except Exception as exc:
                if once:
                    raise
                if database_unreachable(exc):  # the other drains need it too: wait for it
                    unreachable = exc
                    break
                # Keep the process alive (the platform would only restart it): log, wait, try again.
                log.exception("worker: the %s drain failed; trying again in %s s", drain.name, poll_seconds)
        total += handled
        if unreachable is not None:
            if outage_wait is None:
                log.warning("worker: database unreachable: %s; retrying with backoff", _one_line(unreachable))
                outage_wait = OUTAGE_FIRST_WAIT_SECONDS
            else:
                outage_wait = min(outage_wait * 2, OUTAGE_MAX_WAIT_SECONDS)
            stop.wait(outage_wait)
            continue
        if outage_wait is not None:
            log.warning("worker: database reachable again")
            outage_wait = None
        if once and handled == 0:
            break
        if handled == 0:
            resume = [t for t in (d.wait_until() for d in drains) if t is not None]
            delay = poll_seconds
            if resume:  # paused by Salesforce: no point polling before the pause ends
                delay = max(poll_seconds, (min(resume) - datetime.now(UTC)).total_seconds())
            if once:
                break
            stop.wait(delay)
    return total
