"""``billsync bill-run`` and ``billsync metrics``: thin wrappers over engine use cases."""

from __future__ import annotations

import csv
import re
import sys
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import click

from connector.cli.support import UserError, load_services, reported_as

if TYPE_CHECKING:
    from billing_engine.use_cases.billing import BillRunResult

BRIDGE_COLUMNS = ("month", "currency", "opening", "new", "expansion", "reactivation", "contraction", "churn",
                  "closing", "arr", "customers")


def parse_day(option: str, raw: str) -> tuple[date | None, str | None]:
    """``YYYY-MM-DD`` → (date, None) or (None, the problem as one line)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
        return None, f"{option}: {raw!r} is not a date; use YYYY-MM-DD, for example 2026-11-24"
    try:
        return date.fromisoformat(raw.strip()), None
    except ValueError as exc:
        return None, f"{option}: {raw!r} is not a valid date ({exc})"


def parse_month(option: str, raw: str) -> tuple[str | None, str | None]:
    """``YYYY-MM`` → (the month, None) or (None, the problem as one line)."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", raw.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        return None, f"{option}: {raw!r} is not a month; use YYYY-MM, for example 2026-11"
    return raw.strip(), None


@click.command("bill-run")
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD",
              help="Bill everything due up to this date (at most tomorrow, in BILLSYNC_TIMEZONE).")
@click.option("--dry-run", is_flag=True, help="Print what would be invoiced, per customer; write nothing.")
@click.option("--allow-future", is_flag=True, help="Accept an --as-of more than one day after today.")
def bill_run(as_of: str, dry_run: bool, allow_future: bool) -> None:
    """Create (and finalize) the invoices due up to a date.

    Exits 0 when the run completed, even if some customers failed (they are listed
    with the reason and retried by the next run); non-zero when it could not run.
    An invoice covering more than BILL_RUN_MAX_PERIODS recurring periods of one
    subscription stays a draft held for review. Another bill run at the same time
    (the clock, a colleague) is fine: each customer is billed by one of them.
    """
    on, problem = parse_day("--as-of", as_of)
    if problem:
        raise UserError(problem)
    services = load_services()
    from connector.billing_jobs import bill_run_date_problem, cut_over_problem, run_bill_run

    refused = cut_over_problem(services.settings)  # a connected org needs BILLING_STARTS_ON first
    if refused:
        raise UserError(refused)
    problem = bill_run_date_problem(services, on, allow_future=allow_future or dry_run)
    if problem:
        raise UserError(problem)
    with reported_as(f"bill run as of {on} could not run"):
        result = run_bill_run(services, on, dry_run=dry_run)
    if dry_run:
        _print_preview(result)
        return
    held = services.settings.hold_invoices_for_review
    click.echo(f"bill run as of {on}: {result.invoices_created} invoices created, "
               f"{result.invoices_finalized} finalized"
               f"{' (HOLD_INVOICES_FOR_REVIEW: left as drafts)' if held else ''}, "
               f"{result.credit_notes_issued} credit notes issued")
    if result.invoices_held:
        click.echo(f"{result.invoices_held} invoices held for review: covering more than {result.max_periods} "
                   f"periods of a subscription (BILL_RUN_MAX_PERIODS); left as drafts")
    if result.invoices_anomalous:
        guard = services.settings.anomaly_guard
        click.echo(f"{result.invoices_anomalous} invoices far from their customer's history (ANOMALY_GUARD={guard}): "
                   + ("held as drafts; see billsync invoices anomalies" if guard == "hold"
                      else "finalized, the reasons kept on them"))
    click.echo(f"customers: {result.customers_billed} billed, {result.customers_skipped} skipped "
               f"(billed by another run), {len(result.failures)} failed")
    for customer_id, reason in sorted(result.failures.items()):
        click.echo(f"failed: customer {customer_id}: {reason}")


def _print_preview(result: BillRunResult) -> None:
    """What a dry run would invoice: per customer and currency the lines (with how each amount was
    computed) and the totals, then a summary with the totals per currency."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    customers: set[str] = set()
    for preview in result.previews:
        draft, t = preview.draft, preview.draft.totals
        customers.add(preview.customer_id)
        fate = f"held for review: {preview.held}" if preview.held else "finalized"
        click.echo(f"customer {preview.customer_id}: {draft.currency} invoice, would be {fate}")
        for line in draft.lines:
            click.echo(f"  {line.description} {line.starts_on} to {line.ends_before}: {line.net} {draft.currency}")
            if line.explanation:
                click.echo(f"      {line.explanation}")
        credit = f", customer credit applied {draft.credit_applied}" if draft.credit_applied else ""
        note = f", credit note {draft.credit_note.total}" if draft.credit_note is not None else ""
        click.echo(f"  net {t.net} + tax {t.tax} = total {t.total} {draft.currency}{credit}{note}, "
                   f"amount due {draft.amount_due}")
        totals[draft.currency] += t.total
    click.echo(f"dry run as of {result.as_of}, nothing written: {result.invoices_created} invoices would be "
               f"created ({result.invoices_finalized} finalized, "
               f"{result.invoices_created - result.invoices_finalized} held for review), "
               f"{result.credit_notes_issued} credit notes")
    if totals:
        click.echo("totals: " + ", ".join(f"{totals[c]} {c}" for c in sorted(totals)))
    click.echo(f"customers: {len(customers)} would be billed, {len(result.failures)} failed")
    for customer_id, reason in sorted(result.failures.items()):
        click.echo(f"failed: customer {customer_id}: {reason}")


@click.group()
def metrics() -> None:
    """Revenue metrics (MRR, ARR and movements)."""


@metrics.command("mrr")
@click.option("--from", "from_month", required=True, metavar="YYYY-MM", help="First month of the bridge.")
@click.option("--to", "to_month", required=True, metavar="YYYY-MM", help="Last month of the bridge.")
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV on stdout instead of a table.")
def mrr(from_month: str, to_month: str, as_csv: bool) -> None:
    """The MRR bridge per month and currency: opening + movements = closing.

    Movements: new, expansion, reactivation (added), contraction and churn (taken
    away, shown as positive amounts). MRR is measured at each month's end.
    """
    start, p1 = parse_month("--from", from_month)
    end, p2 = parse_month("--to", to_month)
    problems = [p for p in (p1, p2) if p]
    if not problems and start > end:
        problems.append(f"--to: {end} is before --from {start}")
    if problems:
        raise UserError(problems)
    services = load_services()
    from connector.billing_jobs import mrr_bridge_rows

    with reported_as():
        rows = mrr_bridge_rows(services, start, end)
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=BRIDGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    if not rows:
        click.echo(f"no recurring revenue from {start} to {end}")
        return
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in BRIDGE_COLUMNS}
    click.echo("  ".join(c.ljust(widths[c]) if c in ("month", "currency") else c.rjust(widths[c])
                         for c in BRIDGE_COLUMNS))
    for row in rows:
        click.echo("  ".join(row[c].ljust(widths[c]) if c in ("month", "currency") else row[c].rjust(widths[c])
                             for c in BRIDGE_COLUMNS))
