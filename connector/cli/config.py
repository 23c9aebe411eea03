"""``billsync config``: check the environment and print every setting."""

from __future__ import annotations

import click

from connector.cli.support import load_services
from connector.settings import VARIABLES


@click.command("config")
def config() -> None:
    """Check the environment and print every setting (secrets hidden)."""
    services = load_services()
    for var in VARIABLES:
        value = getattr(services.settings, var.name.lower())
        if var.secret and value:
            value = "********"
        click.echo(f"{var.name}={value if value is not None else ''}")
