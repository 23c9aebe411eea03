"""The worker process: drains the webhook inbox and the Salesforce outbox.

Run any number of them (``worker`` in the Procfile): outbox rows are claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never push the same
row, and a worker killed mid-push leaves its rows to be claimed again after the lease
(re-sending is harmless: every push is an upsert by external id).

Each pass runs every drain in ``drains_for(services)`` in turn; a drain returns how
many items it handled. The loop sleeps ``--poll-seconds`` when a pass found nothing,
and stops after the current batch on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from connector.cli_support import UserError, load_services
from connector.salesforce.errors import SalesforceAuthError

log = logging.getLogger("billsync.worker")


@dataclass(frozen=True)
class Drain:
    name: str
    run: Callable[[Callable[[], bool]], int]  # (should_stop) -> items handled
    wait_until: Callable[[], datetime | None] = lambda: None  # e.g. a Salesforce limit pause


class _OutboxDrain:
    def __init__(self, services: Any, worker_id: str, batch_size: int, lease: timedelta):
        self.services, self.worker_id, self.batch_size, self.lease = services, worker_id, batch_size, lease
        self.paused_until: datetime | None = None

    def __call__(self, should_stop: Callable[[], bool]) -> int:
        from connector.sync.push import push_outbox

        report = push_outbox(self.services, worker_id=self.worker_id, batch_size=self.batch_size, lease=self.lease,
                             should_stop=should_stop)
        self.paused_until = report.paused_until
        if report.claimed:
            for line in report.lines():
                log.info("push: %s", line)
        return report.done + report.dead + report.superseded


class _InboxDrain:
    """Salesforce notifications stored by the web process: re-read their records and apply them."""

    def __init__(self, services: Any, worker_id: str, batch_size: int):
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


def drains_for(services: Any, *, worker_id: str, batch_size: int, lease: timedelta) -> list[Drain]:
    """What a worker drains, in order: notifications first (they change what the push sends), then the outbox."""
    drains: list[Drain] = []
    if services.settings.sf_auth != "none":
        inbox = _InboxDrain(services, worker_id, batch_size)
        drains.append(Drain("webhook inbox", inbox, lambda: inbox.paused_until))
        outbox = _OutboxDrain(services, worker_id, batch_size, lease)
        drains.append(Drain("outbox", outbox, lambda: outbox.paused_until))
    return drains


class Seconds(click.FloatRange):
    """A finite number of seconds within the range (``nan`` passes a plain ``FloatRange``)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


def run_worker(drains: list[Drain], *, once: bool, poll_seconds: float, stop: threading.Event) -> int:
    """Run the drains until ``stop`` (or, with ``once``, until a pass finds nothing). Returns items handled.

    ``poll_seconds`` must be a finite number greater than 0 (``nan`` would never sleep).
    """
    if not (isinstance(poll_seconds, int | float) and math.isfinite(poll_seconds) and poll_seconds > 0):
        raise ValueError(f"poll_seconds must be a finite number of seconds above 0, not {poll_seconds!r}")
    total = 0
    while not stop.is_set():
        handled = 0
        for drain in drains:
            if stop.is_set():
                break
            try:
                handled += drain.run(stop.is_set)
            except Exception:
                if once:
                    raise
                # Keep the process alive (the platform would only restart it): log, wait, try again.
                log.exception("worker: the %s drain failed; trying again in %s s", drain.name, poll_seconds)
        total += handled
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


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain what is queued now, then exit.")
@click.option("--batch-size", type=click.IntRange(1, 20000), default=1000, show_default=True,
              help="Outbox rows claimed per batch.")
@click.option("--poll-seconds", type=Seconds(0.1, 3600), default=None,
              help="Sleep between passes that found nothing (default: PUSH_INTERVAL_SECONDS, at most 5).")
@click.option("--lease-seconds", type=click.IntRange(0, 86400), default=300, show_default=True,
              help="A row in flight longer than this belongs to a dead worker and is claimed again.")
def worker(once: bool, batch_size: int, poll_seconds: float | None, lease_seconds: int) -> None:
    """Drain the webhook inbox and the Salesforce outbox (run any number)."""
    from connector.sync.push import default_worker_id

    services = load_services()
    worker_id = f"worker-{default_worker_id()}"
    drains = drains_for(services, worker_id=worker_id, batch_size=batch_size,
                        lease=timedelta(seconds=lease_seconds))
    if not drains:
        click.echo("worker: nothing to drain (Salesforce is not configured: SF_AUTH=none)")
        return
    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        log.info("worker: signal %s, stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    poll = poll_seconds if poll_seconds is not None else min(5.0, float(services.settings.push_interval_seconds))
    click.echo(f"worker {worker_id}: draining {', '.join(d.name for d in drains)}"
               + (" once" if once else f", polling every {poll:g} s"))
    try:
        total = run_worker(drains, once=once, poll_seconds=poll, stop=stop)
    except SalesforceAuthError as exc:
        raise UserError(f"Salesforce refused billsync: {exc}") from None
    click.echo(f"worker {worker_id}: stopped after {total} items")
