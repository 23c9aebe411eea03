"""The ``billsync`` command line: the root group, its error handling and the command groups.

One module per command group; commands are thin: parse, call one use case, print.

| module | commands |
|---|---|
| ``database`` | ``db upgrade``, ``db current`` |
| ``config`` | ``config`` |
| ``processes`` | ``web``, ``worker``, ``clock`` |
| ``billing`` | ``bill-run``, ``metrics mrr`` |
| ``forecast`` | added to the ``metrics`` group: ``forecast``, ``forecast-accuracy`` |
| ``invoices`` | ``invoices list``, ``show``, ``finalize``, ``void``, ``mark-uncollectible``, ``credit`` |
| ``payments`` | ``payments record``, ``refund``, ``show`` |
| ``sync`` | ``sync pull``, ``sync push``, ``sync status``, ``sync retry`` |
| ``reconcile`` | ``reconcile`` |
| ``review`` | ``review list``, ``review resolve`` |
| ``mappings`` | ``mappings check``, ``mappings preview`` |
| ``api_keys`` | ``api-key create``, ``api-key list``, ``api-key revoke`` |
| ``collections`` | added to the ``payments`` group: ``collections``, ``sepa-export``, ``sepa-return``, ``mandate ...``, ``import-statement``, ``unmatched``, ``match``, ``set-aside``, ``dunning``, ``dunning-profile``, ``late-charges`` |
| ``usage`` | ``usage import``, ``usage partitions`` |
| ``assistant`` | ``mcp`` (the MCP server of AI assistants' read-only tools) |
| (the sandbox) | ``sandbox ...``, when the sandbox is installed |

Pipes: when the reader of stdout goes away (``billsync metrics mrr ... | head -2``), the
command stops quietly with exit code 141, as a Unix tool killed by SIGPIPE does: no error
line, no traceback (``main``).

Errors: a user-fixable problem (``support.KNOWN_ERRORS``: settings, input, database,
Salesforce, files) prints one ``error:`` line per problem and exits 2. Anything else is a
bug: its traceback goes to the log (logger ``billsync.cli``), the terminal gets one
``error: unexpected failure (<type>)`` line and the exit code is 1. ``--debug`` (or
``LOG_LEVEL=debug``) also prints the traceback on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click

from connector.cli.support import KNOWN_ERRORS, UnexpectedFailure, UserError, describe

log = logging.getLogger("billsync.cli")
log.addHandler(logging.NullHandler())  # before settings are loaded, no last-resort traceback on stderr


#: The shell's exit status of a process killed by SIGPIPE (128 + 13).
EXIT_PIPE_CLOSED = 141


class PipeClosed(Exception):
    """stdout's reader went away. Not an OSError, so that click lets it through to ``main``."""


class BillsyncGroup(click.Group):
    """Turns known failures into one ``error:`` line (exit 2) and bugs into a logged traceback (exit 1).

    Commands add context to the errors they expect (``support.reported_as``); this is the
    net for the rest, so no command ever ends in a traceback on the terminal unless asked.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            raise PipeClosed() from None
        except KNOWN_ERRORS as exc:
            raise UserError(describe(exc)) from None
        except Exception as exc:
            show = bool(ctx.params.get("debug")) or logging.getLogger("billsync").isEnabledFor(logging.DEBUG)
            # Text logs go to the terminal, where the traceback appears only when asked for
            # (``terminal``: see ``connector.logs``); JSON logs and other handlers keep it.
            log.error("unexpected failure in 'billsync %s'", ctx.invoked_subcommand or "", exc_info=exc,
                      extra={"terminal": False})
            if show:
                click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            raise UnexpectedFailure(exc) from None


@click.group(cls=BillsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Print the traceback of an unexpected failure on the terminal.")
def cli(debug: bool) -> None:
    """billsync: Salesforce deals in, correct invoices out."""


def _register_commands() -> None:
    """Each command group lives in its own module; they are all registered here."""
    from connector.cli.api_keys import api_key
    from connector.cli.assistant import mcp
    from connector.cli.billing import bill_run, metrics
    from connector.cli.churn import churn
    from connector.cli.collections import add_collection_commands
    from connector.cli.config import config
    from connector.cli.database import db
    from connector.cli.documents import documents
    from connector.cli.forecast import add_forecast_commands
    from connector.cli.invoices import invoices
    from connector.cli.mappings import mappings
    from connector.cli.payments import payments
    from connector.cli.portal import portal
    from connector.cli.processes import clock, web, worker
    from connector.cli.rates import rates
    from connector.cli.reconcile import reconcile
    from connector.cli.review import review
    from connector.cli.sync import sync
    from connector.cli.usage import usage
    from connector.cli.users import users

    for command in (db, config, web, sync, review, mappings, bill_run, metrics, rates, reconcile, worker, clock,
                    usage):
        cli.add_command(command)
    cli.add_command(api_key)
    cli.add_command(users)
    add_forecast_commands(metrics)  # the MRR forecast and its accuracy
    add_collection_commands(payments)  # collections: mandates, SEPA, statements, dunning, late charges
    for command in (invoices, payments):
        cli.add_command(command)
    cli.add_command(documents)
    cli.add_command(mcp)
    cli.add_command(churn)
    cli.add_command(portal)
    _register_sandbox()


def _register_sandbox() -> None:
    """The local Salesforce sandbox brings its own ``sandbox`` group when the ``sandbox`` extra is
    installed; without it, ``billsync sandbox`` says how to install it."""
    try:
        from sfsandbox.cli import sandbox as group

        sandbox: click.Command = group
    except ImportError as exc:
        if exc.name != "sfsandbox":
            raise
        hint = "not installed: pip install 'billsync[sandbox]'"

        def sandbox_missing() -> None:
            raise UserError(f"the local Salesforce sandbox is {hint}")

        sandbox = click.Command(
            "sandbox", callback=sandbox_missing, add_help_option=False, short_help=f"Local Salesforce org ({hint}).",
            help=f"The local Salesforce sandbox org ({hint}).",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    cli.add_command(sandbox)


_register_commands()


def main() -> None:
    """The ``billsync`` command. A closed stdout pipe ends it quietly with exit code 141."""
    try:
        try:
            cli(prog_name="billsync")
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not at interpreter exit
    except (PipeClosed, BrokenPipeError):
        # Nothing more can reach the reader: point stdout at /dev/null so that the
        # interpreter's own flush at exit has nowhere to fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise SystemExit(EXIT_PIPE_CLOSED) from None
