"""``billsync sandbox ...`` commands."""

from __future__ import annotations

import click


@click.group()
def sandbox() -> None:
    """The local Salesforce sandbox org (HTTPS on loopback)."""
