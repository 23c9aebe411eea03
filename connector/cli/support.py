"""What every ``billsync`` command shares: the errors a user can fix, and loading the services.

A command catches only billsync's own error types (``KNOWN_ERRORS``) and turns them into
one ``error:`` line with exit code 2 (``UserError``), through ``reported_as``. Anything
else is a bug: the root group (``connector.cli``) logs its traceback and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from billing_engine.errors import BillingError
from connector.database import DatabaseError
from connector.salesforce.errors import SalesforceAuthError, SalesforceError, SalesforceLimitError
from connector.settings import SettingsError
from connector.wiring import Services, build_services
from mappings.errors import MappingsError

EXIT_USAGE = 2  # the user can fix it: bad input, settings, database, Salesforce, files
EXIT_UNEXPECTED = 1  # a bug: the traceback is in the log

#: What the database raises when it is unreachable, or reachable but not migrated
#: (no such table / column): the user fixes DATABASE_URL or runs ``billsync db upgrade``.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (DatabaseError, OperationalError, ProgrammingError,
                                                     InterfaceError)

#: billsync's own failures a person can act on. ``OSError``: files and ports.
KNOWN_ERRORS: tuple[type[Exception], ...] = (SettingsError, BillingError, MappingsError, SalesforceError,
                                             *DATABASE_UNAVAILABLE, OSError)


class UserError(click.ClickException):
    """An error the user can fix; printed as ``error: ...`` lines, exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.lines:
            click.echo(f"error: {line}", err=True)


class UnexpectedFailure(click.ClickException):
    """A failure billsync did not expect (a bug): one line on the terminal, exit code 1."""

    exit_code = EXIT_UNEXPECTED

    def __init__(self, exc: BaseException):
        self.kind = type(exc).__name__
        super().__init__(f"unexpected failure ({self.kind}); see the log (--debug shows the traceback)")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def load_services() -> Services:
    try:
        return build_services()
    except SettingsError as exc:
        raise UserError(exc.problems) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"


def describe(exc: BaseException) -> list[str]:
    """A known error as the lines a person reads (without the ``error:`` prefix)."""
    if isinstance(exc, SettingsError):
        return list(exc.problems)
    if isinstance(exc, SalesforceLimitError):
        until = exc.resume_after.isoformat(timespec="seconds") if exc.resume_after else "later"
        return [f"Salesforce calls are paused until {until}: {exc.message}"]
    if isinstance(exc, SalesforceError):
        return [f"Salesforce: {exc.message if isinstance(exc, SalesforceAuthError) else exc}"]
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return [f"the database is unreachable or not migrated ({first_line(exc)}); "
                "check DATABASE_URL and run 'billsync db upgrade'"]
    if isinstance(exc, OSError):
        return [first_line(exc)]
    lines = str(exc).strip().splitlines()
    return lines or [type(exc).__name__]


@contextmanager
def reported_as(context: str | None = None) -> Iterator[None]:
    """Turn a known error raised inside the block into a ``UserError``, prefixed with ``context``.

    Unknown exceptions pass through untouched: the root group reports them as bugs.
    """
    try:
        yield
    except BrokenPipeError:
        raise  # stdout's reader went away: not a problem to report (see ``connector.cli.main``)
    except KNOWN_ERRORS as exc:
        lines = describe(exc)
        if context:
            lines = [f"{context}: {line}" for line in lines]
        raise UserError(lines) from None
