"""The ``billsync`` command line. Commands are thin: parse, call one use case, print.

Errors a user can fix (bad settings, bad input) print one line per problem on
stderr and exit with a non-zero code, never a traceback.
"""

from __future__ import annotations

import sys

import click

from connector.cli_support import UserError, first_line, load_services
from connector.database import DatabaseError, current_revision, head_revision, upgrade


class BillsyncGroup(click.Group):
    """Turns the failures a user can act on into one ``error:`` line and exit code 2.

    Commands handle the errors they expect; this is the safety net for the rest (a
    database that is down or not migrated, Salesforce refusing, a port in use), so no
    command ever ends in a traceback for them.
    """

    def invoke(self, ctx: click.Context):
        from sqlalchemy.exc import SQLAlchemyError

        from connector.salesforce.errors import SalesforceError

        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            raise UserError(f"the database is unreachable or not migrated ({first_line(exc)}); "
                            "check DATABASE_URL and run 'billsync db upgrade'") from None
        except SalesforceError as exc:
            raise UserError(f"Salesforce: {first_line(exc)}") from None
        except OSError as exc:
            raise UserError(first_line(exc)) from None


@click.group(cls=BillsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """billsync: Salesforce deals in, correct invoices out."""


# ---------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema (safe to repeat)."""
    services = load_services()
    try:
        upgrade(services.engine, revision)
    except DatabaseError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # connection refused, bad credentials, ...
        raise UserError(f"cannot migrate {services.engine.url.render_as_string()}: {first_line(exc)}") from None
    click.echo(f"database at {current_revision(services.engine)} (head {head_revision()})")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision and the code's head."""
    services = load_services()
    try:
        current = current_revision(services.engine)
    except Exception as exc:
        raise UserError(f"cannot read {services.engine.url.render_as_string()}: {first_line(exc)}") from None
    head = head_revision()
    state = "up to date" if current == head else "behind: run 'billsync db upgrade'"
    click.echo(f"current {current or 'none'}  head {head}  ({state})")
    if current != head:
        sys.exit(1)


# ---------------------------------------------------------------- processes


@cli.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=None, help="Port (default: $PORT).")
def web(host: str, port: int | None) -> None:
    """Serve the web process with Flask's development server (production: gunicorn)."""
    services = load_services()
    from connector.wiring import build_app

    app = build_app(services.settings)
    app.run(host=host, port=port or services.settings.port, debug=False, use_reloader=False)


@cli.command("config")
def config() -> None:
    """Check the environment and print every setting (secrets hidden)."""
    services = load_services()
    for name, shown in services.settings.display_items():
        click.echo(f"{name}={shown}")


def _register_commands() -> None:
    """Each area keeps its commands in its own module; they are all registered here."""
    from connector.billing_commands import bill_run, metrics
    from connector.sandbox.cli import sandbox
    from connector.scheduler import clock
    from connector.status_commands import retry, status
    from connector.sync.commands import reconcile, sync
    from connector.sync.pull_commands import mappings, pull
    from connector.worker import worker

    for subcommand in (status, retry, pull):
        sync.add_command(subcommand)
    for command in (sandbox, sync, mappings, bill_run, metrics, reconcile, worker, clock):
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="billsync")


if __name__ == "__main__":  # pragma: no cover
    main()
