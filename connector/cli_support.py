"""What every ``billsync`` command shares: user errors and loading the services."""

from __future__ import annotations

import click

from connector.settings import SettingsError
from connector.wiring import Services, build_services

EXIT_USAGE = 2


class UserError(click.ClickException):
    """An error the user can fix; printed as ``error: ...`` lines, exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))

    def show(self, file=None) -> None:
        for line in self.lines:
            click.echo(f"error: {line}", err=True)


def load_services() -> Services:
    try:
        return build_services()
    except SettingsError as exc:
        raise UserError(exc.problems) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"
