"""``billsync reconcile``: compare engine and Salesforce invoices, payments, credit notes and refunds for a
month, and every Account summary."""

from __future__ import annotations

import click

from connector.cli.support import UserError, load_services, reported_as
from connector.sync.reconcile import ReconcileError, ReconcileReport, parse_period


@click.command("reconcile")
@click.option("--period", required=True, metavar="YYYY-MM", help="Month to compare.")
@click.option("--repair", is_flag=True, help="Re-queue the pushes that fix the drift (the next push sends them).")
def reconcile(period: str, repair: bool) -> None:
    """Compare engine and Salesforce for a month, and every Account summary.

    Invoices and credit notes by issue date, payments by payment date, refunds by refund
    date; Accounts (MRR, ARR, balance, billing status) as of today: counts and sums per
    currency and status, then one line per mismatch. Exits 0 only when both sides agree, 1
    when they differ (also with --repair: the fix lands with the next push; run it again after).
    """
    # Looked up when the command runs, so a test can replace the use cases.
    from connector.sync import reconcile as use_cases

    try:
        parse_period(period)
    except ReconcileError as exc:
        raise UserError(f"--period: {exc}") from None
    services = load_services()
    with reported_as(f"reconcile {period}"):
        report = use_cases.reconcile_period(services, period)
    for line in format_report(report):
        click.echo(line)
    if report.agrees:
        return
    if repair:
        with reported_as("reconcile --repair could not re-queue"):
            result = use_cases.requeue_drift(services, report)
        for name in result.requeued:
            click.echo(f"re-queued: {name}")
        for mismatch in result.not_repairable:
            reason = ("exists only in Salesforce: a person must decide" if mismatch.kind == "missing_in_engine"
                      else "has no outbox row to replay")
            click.echo(f"not repaired: {mismatch.object_name.replace('_', ' ')} {mismatch.label}: {reason}")
        if result.requeued:
            click.echo("the next push sends them ('billsync sync push', or the clock within PUSH_INTERVAL_SECONDS); "
                       "run reconcile again after it")
    raise SystemExit(1)


def format_report(report: ReconcileReport) -> list[str]:
    """The table of counts and sums per object, currency and status, then one line per mismatch."""
    lines = [f"reconcile {report.period} ({report.starts_on} to {report.ends_before}, end excluded): "
             f"{report.engine_records} records in billsync, {report.salesforce_records} in Salesforce"
             + (f"; Accounts as of {report.accounts_as_of} (sum: MRR)" if report.accounts_as_of else "")]
    lines.extend(f"not compared: {reason}" for reason in report.not_compared)
    header = ("object", "currency", "status", "billsync #", "billsync sum", "Salesforce #", "Salesforce sum", "")
    rows = [(t.object_name, t.currency, t.status, str(t.engine_count), str(t.engine_sum), str(t.salesforce_count),
             str(t.salesforce_sum), "ok" if t.agrees else "DIFFERS") for t in report.totals]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for row in (header, *rows):
        lines.append("  ".join(v.rjust(w) if 3 <= i <= 6 else v.ljust(w)
                               for i, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    lines.extend(f"mismatch: {m.describe()}" for m in report.mismatches)
    if report.agrees:
        lines.append(f"billsync and Salesforce agree for {report.period}")
    else:
        lines.append(f"{len(report.mismatches)} mismatches for {report.period}")
    return lines
