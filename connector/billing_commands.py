"""``billsync bill-run`` and ``billsync metrics``: thin wrappers over engine use cases."""

from __future__ import annotations

import click


@click.group()
def metrics() -> None:
    """Revenue metrics (MRR, ARR and movements)."""


@click.command("bill-run")
@click.option("--as-of", required=True, help="Bill everything due up to this date, YYYY-MM-DD.")
def bill_run(as_of: str) -> None:
    """Create (and finalize) the invoices due up to a date."""
    raise click.ClickException("bill-run is not wired yet")
