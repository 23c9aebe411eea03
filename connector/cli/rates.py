"""``billsync rates``: the exchange rates figures in the reporting currency are converted with
(docs/reporting.md §2 Exchange rates and conversion). Every rate is ``1 EUR = RATE CURRENCY``.

- ``rates set CURRENCY RATE --on DATE``: one day's rate (setting the same rate again changes nothing);
- ``rates import FILE``: an ECB reference-rates CSV (``eurofxref.csv``, ``eurofxref-hist.csv``),
  whole or not at all: a bad line is one ``error:`` line with its number, and nothing is written;
- ``rates list``: the stored rates.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime
from pathlib import Path

import click

from connector.cli.invoices import check_day
from connector.cli.output import echo_json, echo_table
from connector.cli.support import UserError, load_services, reported_as


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group()
def rates() -> None:
    """Exchange rates (1 EUR = RATE CURRENCY) for figures in the reporting currency."""


@rates.command("set")
@click.argument("currency")
@click.argument("rate")
@click.option("--on", "on_text", required=True, metavar="YYYY-MM-DD", help="The rate's date.")
@click.option("--json", "as_json", is_flag=True, help="Print the rate as JSON.")
def set_rate(currency: str, rate: str, on_text: str, as_json: bool) -> None:
    """Set CURRENCY's rate on a day: RATE units of CURRENCY for 1 EUR (e.g. USD 1.0834)."""
    problems: list[str] = []
    day = check_day("--on", on_text, problems)
    if not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(f"CURRENCY: {currency!r} is not an ISO 4217 code such as USD")
    if problems:
        raise UserError(problems)
    services = load_services()
    from billing_engine.use_cases.exchange_rates import set_rate as set_one
    from connector.database import transaction

    with reported_as("rate not set"), transaction(services.engine) as session:
        change = set_one(session, day, currency, rate, entered_by=_actor(), now=datetime.now(UTC))
    if as_json:
        echo_json({"changed": change.changed, "rate": change.rate, "before": change.before})
        return
    r = change.rate
    if not change.changed:
        click.echo(f"1 EUR = {r.rate} {r.quote} on {r.on} was already stored; nothing changed")
    elif change.before is None:
        click.echo(f"1 EUR = {r.rate} {r.quote} on {r.on} stored")
    else:
        click.echo(f"1 EUR = {r.rate} {r.quote} on {r.on} stored (was {change.before.rate})")


@rates.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_rates(file: Path) -> None:
    """Import an ECB reference-rates CSV (eurofxref.csv or eurofxref-hist.csv): all its lines or none."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    services = load_services()
    from billing_engine.use_cases.exchange_rates import RateFileError, import_ecb_rates
    from connector.database import transaction

    with reported_as(f"{file}"):
        try:
            with transaction(services.engine) as session:
                result = import_ecb_rates(session, text, entered_by=_actor(), now=datetime.now(UTC))
        except RateFileError as exc:
            raise UserError([f"{file}: {problem}" for problem in exc.problems]) from None
    click.echo(f"{result.rates} rates of {len(result.currencies)} currencies over {result.days} days "
               f"({result.first_on} to {result.last_on}) imported from {file}")


@rates.command("list")
@click.option("--currency", default=None, help="Only this currency.")
@click.option("--from", "from_text", default=None, metavar="YYYY-MM-DD", help="First date.")
@click.option("--to", "to_text", default=None, metavar="YYYY-MM-DD", help="Last date.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000), help="Most rates shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_rates(currency: str | None, from_text: str | None, to_text: str | None, limit: int, as_json: bool) -> None:
    """The stored rates by date and currency."""
    problems: list[str] = []
    first = check_day("--from", from_text, problems)
    last = check_day("--to", to_text, problems)
    if problems:
        raise UserError(problems)
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.exchange_rates import list_rates as listing

    with reported_as(), Session(services.engine) as session:
        found = listing(session, limit=limit, currency=currency, first=first, last=last)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no exchange rate stored")
        return
    echo_table(("date", "currency", "rate", "source", "entered by"),
               [(r.on.isoformat(), r.quote, format(r.rate, "f"), r.source, r.entered_by) for r in found],
               right=("rate",))
