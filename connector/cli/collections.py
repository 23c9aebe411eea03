"""``billsync payments ...``: getting paid (docs/payments.md).

| command | what |
|---|---|
| ``payments collections --as-of D`` | the clock's daily collections job: direct debits due booked, unpaid invoices past due marked overdue |

The commands are plain ``click`` commands collected in ``COLLECTION_COMMANDS``;
``add_collection_commands(group)`` adds them to a ``payments`` group (this module's own, or one
holding the other payment commands).
"""

from __future__ import annotations

import click

from connector.cli.billing import parse_day
from connector.cli.support import UserError, load_services, reported_as


@click.group("payments")
def payments() -> None:
    """Payments: collections, SEPA direct debits, bank statements, dunning."""


@click.command("collections")
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD", help="The business date (usually today).")
def collections(as_of: str) -> None:
    """Run the daily collections job for a date: book the direct debits whose collection date has
    come, and mark overdue the open invoices whose due date has passed unpaid (their Accounts
    become past_due). Running it twice changes nothing the second time."""
    on, problem = parse_day("--as-of", as_of)
    if problem:
        raise UserError(problem)
    services = load_services()
    from connector.collection_jobs import run_collections

    with reported_as(f"collections as of {on}"):
        report = run_collections(services, on)
    for line in report.lines():
        click.echo(line)
    for invoice in report.overdue.invoices:
        click.echo(f"overdue: {invoice.number} ({invoice.customer_id}), due {invoice.due_on}, "
                   f"{invoice.balance} {invoice.currency}")


COLLECTION_COMMANDS: tuple[click.Command, ...] = (collections,)


def add_collection_commands(group: click.Group) -> None:
    """Add the collection commands to ``group`` (a ``payments`` group)."""
    for command in COLLECTION_COMMANDS:
        group.add_command(command)
