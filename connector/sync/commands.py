"""``billsync sync push`` and ``billsync reconcile`` (``sync status`` and ``sync retry``, which read
the webhook inbox too, are in ``connector.status_commands``)."""

from __future__ import annotations

import click

from connector.cli_support import UserError, load_services
from connector.salesforce.errors import SalesforceAuthError


@click.group()
def sync() -> None:
    """Move data between Salesforce and billsync."""


@sync.command("push")
@click.option("--batch-size", type=click.IntRange(1, 20000), default=1000, show_default=True,
              help="Outbox rows claimed per batch.")
def push(batch_size: int) -> None:
    """Push the engine's pending changes (invoices, lines, payments, account summaries) to Salesforce."""
    from connector.sync.push import default_worker_id, push_outbox

    services = load_services()
    try:
        report = push_outbox(services, worker_id=f"cli-{default_worker_id()}", batch_size=batch_size)
    except SalesforceAuthError as exc:
        raise UserError(f"Salesforce refused billsync: {exc}") from None
    for line in report.lines():
        click.echo(line)


@click.command("reconcile")
@click.option("--period", required=True, metavar="YYYY-MM", help="Month to compare.")
@click.option("--repair", is_flag=True, help="Re-queue the pushes that fix the drift (the next push sends them).")
def reconcile(period: str, repair: bool) -> None:
    """Compare engine and Salesforce invoices and payments for a month.

    Invoices by issue date, payments by payment date: counts and sums per currency and
    status, then one line per mismatch. Exits 0 only when both sides agree, 1 when they
    differ (also with --repair: the fix lands with the next push; run it again after).
    """
    from connector.sync.reconcile import run_command

    raise SystemExit(run_command(period, repair))

