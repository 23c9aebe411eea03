"""``billsync mappings check|preview``: the admin's mapping files against the org."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from connector.cli.support import UserError, load_services
from connector.salesforce.errors import SalesforceAuthError


def _show_path(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(Path.cwd()))
    except ValueError:
        return file


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


# ------------------------------------------------------------------ mappings


@click.group()
def mappings() -> None:
    """Check and preview the admin's mapping files against the org."""


@mappings.command("check")
def check() -> None:
    """Check every mapping file against the org's describe; one line per problem."""
    from connector.sync.pull import check_mappings

    services = load_services()
    try:
        specs, problems = check_mappings(services)
    except SalesforceAuthError as exc:  # not connected, or the login was refused: the message says which
        raise UserError(exc.message) from None
    if problems:
        for problem in problems:
            click.echo(f"{_show_path(problem.file)}:{problem.line}: {problem.field}: {problem.reason}")
        click.echo(f"{len(problems)} problem(s) in the mapping files", err=True)
        raise SystemExit(1)
    click.echo(f"mappings OK: {len(specs.files)} files, {len(specs.inbound)} inbound and {len(specs.outbound)} "
               "outbound mappings match the org")


@mappings.command("preview")
@click.argument("record_id")
def preview(record_id: str) -> None:
    """Show what a Salesforce record would become, without writing anything."""
    from connector.sync.pull import PullError, preview_record

    services = load_services()
    try:
        previews = preview_record(services, record_id)
    except PullError as exc:
        raise UserError(exc.lines) from None
    except SalesforceAuthError as exc:  # not connected, or the login was refused: the message says which
        raise UserError(exc.message) from None
    failed = False
    for result in previews:
        failed |= _print_preview(result)
    if failed:
        raise SystemExit(1)


def _print_preview(result: Any) -> bool:
    """Print one preview; True when the record could not be mapped or applied."""
    head = f"{result.object_name} {result.record_id} (mapping {result.mapping!r}, {_show_path(result.mapping_file)})"
    if result.skipped:
        click.echo(f"{head}: not pulled: {result.skipped}")
        return False
    if result.errors:
        click.echo(f"{head}: cannot be mapped:")
        for error in result.errors:
            click.echo(f"  {error}")
        return True
    command = result.command
    click.echo(f"{head}")
    if result.note:
        click.echo(result.note)
    click.echo(f"engine command: {command['command']} (key {command['key']})")
    data = dict(command["data"])
    items = data.pop("items", None)
    for key, value in _flatten(data):
        click.echo(f"  {key}: {_text(value)}")
    if items is not None:
        click.echo(f"  items: {len(items)}")
        for item in items:
            click.echo("    - " + ", ".join(f"{k}: {_text(v)}" for k, v in item.items()))
    if result.dependencies:
        click.echo("not pulled yet, read from Salesforce for this preview: " + ", ".join(result.dependencies))
    if result.outcome_error:
        click.echo(f"the engine would refuse it: {result.outcome_error}")
        return True
    if result.outcome:
        click.echo(f"engine (dry run): {result.outcome}")
    if result.invoice_title:
        click.echo(f"{result.invoice_title}, {result.currency}:")
        for line in result.invoice_lines:
            click.echo(f"  {line.kind:<16} {line.product_code:<12} {_text(line.amount):>12}  {line.description}")
            click.echo(f"  {'':<16} {'':<12} {'':>12}  {line.explanation}")
        totals = result.invoice_totals
        tax = f"tax {_text(totals['tax'])} ({_text(totals['tax_percent'])} %"
        tax += f", {totals['tax_reason']})" if totals.get("tax_reason") else ")"
        click.echo(f"  subtotal {_text(totals['subtotal'])}, discount {_text(totals['discount'])}, {tax}, "
                   f"total {_text(totals['total'])}")
        if "credit_note" in totals:
            click.echo(f"  credit note {_text(totals['credit_note'])} (credits exceed the charges)")
        attributes = getattr(result.deal, "attributes", ())
        if attributes:
            click.echo("  invoiced with " + ", ".join(f"{name}: {value}" for name, value in attributes))
        delta = result.mrr_after - result.mrr_before
        click.echo(f"MRR: {_text(result.mrr_before)} → {_text(result.mrr_after)} {result.currency} "
                   f"({'+' if delta >= 0 else ''}{_text(delta)})")
    click.echo("nothing was written")
    return False


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out
