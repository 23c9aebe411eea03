"""``billsync config``: check the environment and print every setting."""

from __future__ import annotations

import click

from connector.cli.support import load_services


@click.command("config")
def config() -> None:
    """Check the environment and print every setting (secrets hidden)."""
    services = load_services()
    for name, shown in services.settings.display_items():
        click.echo(f"{name}={shown}")
