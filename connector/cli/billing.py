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


@metrics.command("rebuild-mrr")
def rebuild_mrr() -> None:
    """Recompute every customer's MRR and ARR at month ends, and its standing, from the subscriptions.

    The MRR bridge, the dashboard and their drill-downs sum these rows (the standings give the
    customers by status); they are kept up to date
    by every subscription change. Run it after an upgrade that asks for it, or when
    ``billsync metrics check-mrr`` reports a difference. Safe to run at any time.
    """
    services = load_services()
    from connector.billing_jobs import rebuild_mrr_month_ends

    with reported_as():
        written = rebuild_mrr_month_ends(services)
    click.echo(f"MRR at month ends rebuilt: {written} rows")


@metrics.command("check-mrr")
def check_mrr() -> None:
    """Compare the MRR kept at month ends and the standings with a computation from the subscriptions.

    Exits 0 when they agree; otherwise prints one line per difference and exits non-zero
    (``billsync metrics rebuild-mrr`` repairs them).
    """
    services = load_services()
    from connector.billing_jobs import check_mrr_month_ends

    with reported_as():
        problems = check_mrr_month_ends(services)
    if problems:
        raise UserError(problems)
    click.echo("MRR at month ends agrees with the subscriptions")


@metrics.command("dashboard")
@click.option("--month", required=True, metavar="YYYY-MM", help="The month.")
@click.option("--currency", default=None, metavar="CODE",
              help="The reporting currency (default: the REPORTING_CURRENCY setting).")
@click.option("--months", default=12, show_default=True, type=click.IntRange(12, 24),
              help="Months of the MRR and ARR series, ending with --month.")
@click.option("--as-of", "as_of_text", default=None, metavar="YYYY-MM-DD",
              help="Date of receivables and statuses (default: today, or the month's end if earlier).")
@click.option("--figure", default=None, metavar="FIGURE",
              help="List the customers behind a figure instead: movement:<kind>, aging:<bucket>, status:<status>.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (decimal strings).")
def dashboard_command(month: str, currency: str | None, months: int, as_of_text: str | None, figure: str | None,
                      as_json: bool) -> None:
    """A month's dashboard: MRR and ARR, waterfall, retention, churn, ARPA, receivables aging and
    customers by status, per currency and in the reporting currency (docs/reporting.md)."""
    from billing_engine.use_cases import dashboard
    from connector.cli.output import echo_json

    problems: list[str] = []
    chosen, problem = parse_month("--month", month)
    if problem:
        problems.append(problem)
    as_of = None
    if as_of_text is not None:
        as_of, problem = parse_day("--as-of", as_of_text)
        if problem:
            problems.append(problem)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(f"--currency: {currency!r} is not an ISO 4217 code such as EUR")
    if figure is not None and figure not in dashboard.FIGURES:
        problems.append(f"--figure: {figure!r} is not a figure; use one of {', '.join(dashboard.FIGURES)}")
    if problems:
        raise UserError(problems)
    services = load_services()
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from sqlmodel import Session

    from billing_engine.revenue import month_end
    from billing_engine.revenue import parse_month as month_parts

    if as_of is None:
        today = datetime.now(ZoneInfo(services.settings.billsync_timezone)).date()
        as_of = min(today, month_end(*month_parts(chosen)))
    reporting = currency or services.settings.reporting_currency
    from connector.database import READ_ONLY

    reader = services.engine.execution_options(**{READ_ONLY: True})  # never takes SQLite's write lock
    with reported_as(), Session(reader) as session:
        if figure is not None:
            rows = dashboard.figure_customers(session, chosen, figure, as_of=as_of, limit=1000)
        else:
            from connector.sync_health import sync_health

            board = dashboard.dashboard(session, chosen, as_of=as_of, reporting_currency=reporting, months=months)
            health = sync_health(reader, session)
    if figure is not None:
        if as_json:
            echo_json(rows)
        elif not rows:
            click.echo(f"no customer behind {figure} in {chosen}")
        else:
            _print_figure_customers(rows)
        return
    if as_json:
        from connector.cli.output import plain

        echo_json({**plain(board), "sync": {**plain(health), "dead_letters": health.dead_letters}})
        return
    _print_dashboard(board)
    click.echo("")
    click.echo(f"sync: last pull {_text(health.last_pull_at)}, last push {_text(health.last_push_at)}; "
               f"outbox {health.outbox_pending} pending ({health.outbox_failing} failing), "
               f"inbox {health.inbox_pending} pending; {health.dead_letters} dead letters, "
               f"{health.open_reviews} open reviews, {health.record_errors} record errors")


def _text(value: object, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value.isoformat(timespec='seconds')}{suffix}" if hasattr(value, "isoformat") else f"{value}{suffix}"


def _print_dashboard(board) -> None:
    from connector.cli.output import echo_table

    click.echo(f"dashboard {board.month} (receivables and statuses on {board.as_of}); "
               f"reporting currency {board.reporting_currency}")
    figures = [*board.currencies, board.reporting]
    header = ["", *(f.currency if f is not board.reporting else f"{f.currency} (all)" for f in figures)]
    parts = ("opening", "new", "expansion", "reactivation", "contraction", "churn", "rounding", "closing")
    rows = [[f"MRR {name}", *(_text(getattr(f.waterfall, name)) if f.waterfall else "-" for f in figures)]
            for name in parts]
    rows.append(["ARR", *(_text(f.series[-1].arr) for f in figures)])
    rows.append(["customers (closing)", *(str(f.closing_customers) for f in figures)])
    for label, attr in (("net revenue retention", "net_revenue_retention"),
                        ("gross revenue retention", "gross_revenue_retention"),
                        ("logo churn rate", "logo_churn_rate"), ("revenue churn rate", "revenue_churn_rate")):
        rows.append([label, *(_text(getattr(f, attr), " %") for f in figures)])
    rows.append(["ARPA", *(_text(f.arpa) for f in figures)])
    from billing_engine.payments import AGING_BUCKETS

    for bucket in AGING_BUCKETS:
        rows.append([f"receivables {bucket}",
                     *(_text(f.receivables[bucket]) if f.receivables else "-" for f in figures)])
    rows.append(["receivables total", *(_text(f.receivables_total) for f in figures)])
    echo_table(header, rows, right=header[1:])
    click.echo("")
    click.echo("customers by status: " + ", ".join(f"{k} {v}" for k, v in board.customers_by_status.items()))
    click.echo("")
    echo_table(["MRR by month", *header[1:]],
               [[point.month, *(_text(f.series[i].mrr) for f in figures)]
                for i, point in enumerate(board.reporting.series)], right=header[1:])
    if board.rates:
        click.echo("")
        click.echo("rates used (1 EUR =): " + "; ".join(f"{r.month} {r.currency} {r.rate} ({r.rate_on})"
                                                       for r in board.rates))
    if board.missing_rates:
        click.echo("missing rates (figures left out of the reporting currency): "
                   + ", ".join(f"{m.month} {m.currency}" for m in board.missing_rates))


def _print_figure_customers(rows) -> None:
    from connector.cli.output import echo_table

    echo_table(("customer", "name", "currency", "amount", "invoices"),
               [(r.customer_id, r.name, r.currency, _text(r.amount), "" if r.invoices is None else str(r.invoices))
                for r in rows], right=("amount", "invoices"))
