"""``billsync sync pull`` and ``billsync mappings check|preview``."""

from __future__ import annotations

import click


@click.group()
def mappings() -> None:
    """Check and preview the admin's mapping files against the org."""


@click.command("pull")
def pull() -> None:
    """Pull changed records from Salesforce into the engine."""
    raise click.ClickException("sync pull is not built yet")
