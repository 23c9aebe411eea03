"""``billsync sync push|status|retry`` and ``billsync reconcile``."""

from __future__ import annotations

import click


@click.group()
def sync() -> None:
    """Move data between Salesforce and billsync."""


@click.command("reconcile")
@click.option("--period", required=True, help="Month to compare, YYYY-MM.")
def reconcile(period: str) -> None:
    """Compare engine and Salesforce invoices and payments for a month."""
    raise click.ClickException("reconcile is not built yet")
