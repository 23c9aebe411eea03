"""The worker process: drains the webhook inbox and the Salesforce outbox."""

from __future__ import annotations

import click

from connector.cli_support import load_services


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain what is queued now, then exit.")
def worker(once: bool) -> None:
    """Drain the webhook inbox and the Salesforce outbox (run any number)."""
    load_services()
    click.echo("worker: no queues to drain yet (sync and webhooks are not built); exiting")
