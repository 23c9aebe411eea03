"""The long-running processes: ``billsync web``, ``billsync worker`` and ``billsync clock``.

Each command builds the process from ``connector.wiring`` and hands over to the code that
runs it: the Flask app, the worker loop (``connector.worker``), the scheduler
(``connector.scheduler``).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from datetime import timedelta
from typing import Any

import click

from connector.cli.support import load_services, reported_as
from connector.scheduler import USE_CASES, Clock, build_scheduler, describe_trigger, is_connected, run_clock
from connector.worker import drains_for, run_worker

log = logging.getLogger("billsync.worker")


class Seconds(click.FloatRange):
    """A finite number of seconds within the range (``nan`` passes a plain ``FloatRange``)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=None, help="Port (default: $PORT).")
def web(host: str, port: int | None) -> None:
    """Serve the web process with Flask's development server (production: gunicorn)."""
    services = load_services()
    from connector.wiring import build_app

    app = build_app(services.settings)
    app.run(host=host, port=port or services.settings.port, debug=False, use_reloader=False)


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain what is queued now, then exit.")
@click.option("--batch-size", type=click.IntRange(1, 20000), default=1000, show_default=True,
              help="Outbox rows claimed per batch.")
@click.option("--poll-seconds", type=Seconds(0.1, 3600), default=None,
              help="Sleep between passes that found nothing (default: PUSH_INTERVAL_SECONDS, at most 5).")
@click.option("--lease-seconds", type=click.IntRange(0, 86400), default=300, show_default=True,
              help="A row in flight longer than this belongs to a dead worker and is claimed again.")
def worker(once: bool, batch_size: int, poll_seconds: float | None, lease_seconds: int) -> None:
    """Run the console's jobs and drain the webhook inbox and the Salesforce outbox (run any number)."""
    from connector.sync.push import default_worker_id

    services = load_services()
    worker_id = f"worker-{default_worker_id()}"
    drains = drains_for(services, worker_id=worker_id, batch_size=batch_size,
                        lease=timedelta(seconds=lease_seconds))
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker: signal %s, stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    poll = poll_seconds if poll_seconds is not None else min(5.0, float(services.settings.push_interval_seconds))
    click.echo(f"worker {worker_id}: draining {', '.join(d.name for d in drains)}"
               + (" once" if once else f", polling every {poll:g} s"))
    if services.settings.sf_auth == "none":
        click.echo("  Salesforce is not configured (SF_AUTH=none): no inbox or outbox to drain")
    with reported_as("worker"):
        total = run_worker(drains, once=once, poll_seconds=poll, stop=stop)
    click.echo(f"worker {worker_id}: stopped after {total} items")


@click.command("clock")
@click.option("--list", "list_only", is_flag=True, help="Print the schedule and exit.")
def clock(list_only: bool) -> None:
    """Run the scheduler that triggers pull, push, bill run and reconciliation.

    Any number may run: one leads and runs the jobs, the others wait as standbys and take
    over when it stops.
    """
    from connector.clock_lock import clock_lock_for

    services = load_services()
    settings = services.settings
    if settings.log_level != "debug":  # APScheduler logs every run at info: keep the clock's own lines
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    jobs = build_scheduler(services).get_jobs()
    click.echo(f"clock: {len(jobs)} jobs (time zone {settings.billsync_timezone})")
    for job in jobs:
        click.echo(f"  {job.id:<10} {describe_trigger(job.id, settings):<28} → {USE_CASES[job.id]}")
    if not is_connected(settings):
        click.echo("  Salesforce is not configured (SF_AUTH=none): pull, push and reconcile are not scheduled")
    if list_only:
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        click.echo(f"clock: {signal.Signals(signum).name} received, stopping")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with reported_as("clock"):
        stopped = run_clock(Clock(services, clock_lock_for(services.engine)), stop)
    if not stopped:
        click.echo("clock: lost the lead; exiting (restarted, it waits as a standby)", err=True)
        raise SystemExit(1)
    click.echo("clock: stopped")
