"""The clock process: one APScheduler BlockingScheduler per deployment."""

from __future__ import annotations

import click

from connector.cli_support import load_services


@click.command("clock")
def clock() -> None:
    """Run the scheduler that triggers pull, push, bill run and reconciliation (run exactly one)."""
    load_services()
    click.echo("clock: no jobs scheduled yet (sync is not built); exiting")
