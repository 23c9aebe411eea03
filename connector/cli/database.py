"""``billsync db upgrade`` and ``billsync db current``: the database's migrations."""

from __future__ import annotations

import sys

import click
from alembic.util import CommandError

from connector.cli.support import DATABASE_UNAVAILABLE, UserError, first_line, load_services
from connector.database import current_revision, head_revision, upgrade


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema (safe to repeat)."""
    services = load_services()
    try:
        upgrade(services.engine, revision)
        current = current_revision(services.engine)
    except CommandError as exc:  # an unknown --revision
        raise UserError(f"--revision: {exc}") from None
    except DATABASE_UNAVAILABLE as exc:  # connection refused, bad credentials, ...
        raise UserError(f"cannot migrate {services.engine.url.render_as_string()}: {first_line(exc)}") from None
    click.echo(f"database at {current} (head {head_revision()})")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision and the code's head."""
    services = load_services()
    try:
        current = current_revision(services.engine)
    except DATABASE_UNAVAILABLE as exc:
        raise UserError(f"cannot read {services.engine.url.render_as_string()}: {first_line(exc)}") from None
    head = head_revision()
    state = "up to date" if current == head else "behind: run 'billsync db upgrade'"
    click.echo(f"current {current or 'none'}  head {head}  ({state})")
    if current != head:
        sys.exit(1)
