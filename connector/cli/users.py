"""``billsync users create|list|disable``: who may sign in to the web console (docs/console.md)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from connector.cli.support import UserError, load_services, reported_as

ROLES = ("admin", "finance", "viewer")


@click.group("users")
def users() -> None:
    """Users of the web console and their roles.

    Roles: admin and finance act on invoices and payments (finalize, void, credit, record a
    payment); viewer only reads. Passwords are kept as argon2 hashes.
    """


def _read_password(generate: bool) -> tuple[str, bool]:
    from connector.console.users import generate_password

    if generate:
        return generate_password(), True
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("no password on standard input; pipe one, type one at the prompt, or use --generate")
        return line, False
    return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True), False


@users.command("create")
@click.option("--email", required=True, help="The user's e-mail address: what they sign in with.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="admin, finance or viewer.")
@click.option("--name", default=None, help="The name the console shows (default: the e-mail's local part).")
@click.option("--language", "locale", type=click.Choice(("en", "fr")), default=None,
              help="The console's language for this user (default: the browser's).")
@click.option("--generate", is_flag=True,
              help="Generate a password and print it once (else it is read from a prompt or standard input).")
def create(email: str, role: str, name: str | None, locale: str | None, generate: bool) -> None:
    """Create a user. The password comes from a prompt, from standard input, or --generate."""
    from connector.console.users import UserError as ConsoleUserError
    from connector.console.users import create_user

    password, generated = _read_password(generate)
    services = load_services()
    try:
        with reported_as("users create"):
            user = create_user(services.engine, email, role=role, password=password, now=datetime.now(UTC),
                               name=name, locale=locale)
    except ConsoleUserError as exc:
        raise UserError(str(exc)) from None
    if generated:
        click.echo(password)
        click.echo(f"created {user.role} {user.email}; the password above is shown only now", err=True)
    else:
        click.echo(f"created {user.role} {user.email}")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


@users.command("list")
def list_command() -> None:
    """Every user: e-mail, name, role, language, last sign-in, locked until, disabled."""
    from connector.console.users import list_users

    services = load_services()
    with reported_as("users list"):
        found = list_users(services.engine)
    if not found:
        click.echo("no console users; create one with 'billsync users create --email EMAIL --role finance'")
        return
    now = datetime.now(UTC)
    header = ("email", "name", "role", "language", "last sign-in", "locked until", "disabled")
    rows = [(u.email, u.name, u.role, u.locale or "-", _when(u.last_sign_in_at),
             _when(u.locked_until if u.locked_until and u.locked_until > now else None), _when(u.disabled_at))
            for u in found]
    widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(header)]
    for row in (header, *rows):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@users.command("disable")
@click.argument("email")
def disable(email: str) -> None:
    """Disable a user: they cannot sign in any more and their open sessions end."""
    from connector.console.users import UserError as ConsoleUserError
    from connector.console.users import disable_user

    services = load_services()
    try:
        with reported_as("users disable"):
            user, done = disable_user(services.engine, email, now=datetime.now(UTC))
    except ConsoleUserError as exc:
        raise UserError(str(exc)) from None
    if done:
        click.echo(f"disabled {user.email}")
    else:
        click.echo(f"{user.email} was already disabled on {_when(user.disabled_at)}")
