"""``billsync sync pull|push|adopt|status|retry``: move data between Salesforce and billsync."""

from __future__ import annotations

import click

from connector.cli.support import UserError, first_line, load_services
from connector.salesforce.errors import SalesforceAuthError, SalesforceError
from connector.sync.outbox_claims import outbox_counts, outbox_letters, retry_dead_letters

STATUS_LIST_LIMIT = 50
#: Largest row id (outbox and inbox ids are INTEGER columns): a larger one is a bad value, not a query.
ROW_ID_MAX = 2**31 - 1
#: Largest row id (outbox and inbox ids are INTEGER columns): a larger one is a bad value, not a query.
ROW_ID_MAX = 2**31 - 1


@click.group()
def sync() -> None:
    """Move data between Salesforce and billsync."""


@sync.command("pull")
@click.option("--full", is_flag=True, help="Read every record again, not only what changed since the last pull.")
@click.option("--object", "objects", multiple=True, metavar="NAME",
              help="Pull only this Salesforce object (repeatable), e.g. --object Account.")
def pull(full: bool, objects: tuple[str, ...]) -> None:
    """Pull changed records from Salesforce into the engine.

    Per object: fetched, applied, unchanged, failed, deleted and flagged records. Records
    that fail are listed by `billsync sync status` and retried by the next pull; the exit
    code is 0 whenever the pull ran.
    """
    from connector.sync.pull import PullError, pull_changes

    services = load_services()
    try:
        report = pull_changes(services, objects=list(objects) or None, full=full)
    except PullError as exc:
        raise UserError(exc.lines) from None
    except SalesforceAuthError as exc:  # not connected, or the login was refused: the message says which
        raise UserError(exc.message) from None
    for line in (o.line() for o in report.objects):
        click.echo(line)
    if report.paused_until is not None or report.pause_message:
        until = report.paused_until.isoformat(timespec="seconds") if report.paused_until else "later"
        click.echo(f"paused until {until}: {report.pause_message}; the next pull resumes where this one stopped")
    if report.failed_records:
        click.echo(f"{report.failed_records} record(s) not applied: see `billsync sync status`; "
                   "they are retried on the next pull")
    for error in report.object_errors:
        click.echo(f"error: {error}", err=True)
    if report.objects and not any(o.ran for o in report.objects):
        raise SystemExit(1)  # no object could be pulled at all


@sync.command("push")
@click.option("--batch-size", type=click.IntRange(1, 20000), default=1000, show_default=True,
              help="Outbox rows claimed per batch.")
def push(batch_size: int) -> None:
    """Push the engine's pending changes (invoices, lines, payments, refunds, credit notes, account summaries)
    to Salesforce."""
    from connector.sync.binding import OrgBindingError
    from connector.sync.push import default_worker_id, push_outbox

    services = load_services()
    try:
        report = push_outbox(services, worker_id=f"cli-{default_worker_id()}", batch_size=batch_size)
    except SalesforceAuthError as exc:
        raise UserError(f"Salesforce refused billsync: {exc}") from None
    except OrgBindingError as exc:
        raise UserError(str(exc)) from None
    for line in report.lines():
        click.echo(line)


@sync.command("adopt")
@click.option("--org", "org_id", required=True, metavar="00D...",
              help="The id of the org billsync is logged in to (Setup > Company Information).")
def adopt(org_id: str) -> None:
    """Push into this org even though it holds billsync records of another installation, or after
    moving this database to another org.

    The push writes under this installation's own keys, so the other installation's records
    are never overwritten; they stay as they are (and reconcile lists them as not in billsync).
    """
    from datetime import UTC, datetime

    from connector.settings import parse_org_id
    from connector.sync.binding import OrgBindingError, adopt_org

    try:
        org = parse_org_id(org_id)
    except ValueError as exc:
        raise UserError(f"--org: {exc}") from None
    services = load_services()
    if services.settings.sf_auth == "none":
        raise UserError("Salesforce is not configured (SF_AUTH=none): nothing to adopt")
    try:
        state = adopt_org(services, org, now=datetime.now(UTC))
    except SalesforceAuthError as exc:
        raise UserError(f"Salesforce refused billsync: {exc}") from None
    except OrgBindingError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"installation {state.installation_id} adopted Salesforce org {state.org_id}: the next push writes "
               "there, alongside the records other installations wrote")


@sync.command("status")
def status() -> None:
    """What billsync holds, API usage, outbox counts, dead letters, and the pull's cursors, record errors
    and review flags."""
    from sqlmodel import Session

    from billing_engine.use_cases.holdings import holdings
    from connector.sync.installation import describe as describe_installation
    from connector.sync.installation import find_installation
    from connector.sync.status import PUSH, last_job_run

    services = load_services()
    with Session(services.engine) as session:
        held = holdings(session)
    click.echo("billsync holds")
    click.echo(f"  {held.describe()}")
    click.echo("Salesforce")
    if services.settings.sf_auth == "none":
        click.echo("  not configured (SF_AUTH=none)")
    else:
        try:
            click.echo("  " + services.salesforce().refresh_status().describe())
        except SalesforceError as exc:
            click.echo(f"  API usage unknown: {first_line(exc)}")
    click.echo("  " + describe_installation(find_installation(services.engine)))
    with Session(services.engine) as session:
        counts = outbox_counts(session)
        dead = outbox_letters(session, status="dead", limit=STATUS_LIST_LIMIT)
        failing = outbox_letters(session, status="failing", limit=STATUS_LIST_LIMIT)
        click.echo("Push (outbox)")
        click.echo(f"  {counts['pending']} pending ({counts['failing']} after an error), {counts['in_flight']} in "
                   f"flight, {counts['done']} done, {counts['dead']} dead")
        last = last_job_run(session, PUSH)
        click.echo(f"  last push {last.finished_at.isoformat(timespec='seconds')}: {last.summary}" if last
                   else "  no push has delivered anything yet")
        _letters("Dead letters ('billsync sync retry' re-queues them)", dead, counts["dead"])
        _letters("Failing, will retry", failing, counts["failing"])
        _inbox_status(session)
        _pull_status(session)


def _letters(title: str, letters: list, total: int) -> None:
    if not letters:
        return
    click.echo(f"{title}: {total}")
    for x in letters:
        when = f", next try {x.next_attempt_at.isoformat(timespec='seconds')}" if x.next_attempt_at else ""
        click.echo(f"  #{x.id} {x.topic} {x.aggregate_type} {x.aggregate_id}: {x.attempts} attempts{when}: "
                   f"{x.last_error or ''}")
    if total > len(letters):
        click.echo(f"  ... and {total - len(letters)} more")


def _inbox_status(session) -> None:
    from connector.webhooks.processing import inbox_status

    state = inbox_status(session, limit=STATUS_LIST_LIMIT)
    c = state.counts
    click.echo("Notifications (webhook inbox)")
    click.echo(f"  {c['pending']} pending, {c['in_flight']} in flight, {c['failed']} failed (will retry), "
               f"{c['done']} done, {c['dead']} dead")
    for title, letters, total in (("Dead notifications ('billsync sync retry' re-queues them)", state.dead, c["dead"]),
                                  ("Failed notifications, will retry", state.failed, c["failed"])):
        if not letters:
            continue
        click.echo(f"{title}: {total}")
        for x in letters:
            record = f"{x.object_name} {x.record_id or '(whole object)'}"
            click.echo(f"  #{x.id} {x.source} {record} {x.action}: {x.attempts} attempts: {x.last_error or ''}")
        if total > len(letters):
            click.echo(f"  ... and {total - len(letters)} more")


def _pull_status(session) -> None:
    from connector.sync.pull import pull_status

    state = pull_status(session, error_limit=STATUS_LIST_LIMIT)
    click.echo("Pull (cursors)")
    if not state.cursors:
        click.echo("  never run")
    for c in state.cursors:
        last = c.last_run_at.isoformat(timespec="seconds") if c.last_run_at else "never"
        mark = c.last_modstamp.isoformat(timespec="seconds") if c.last_modstamp else "-"
        click.echo(f"  {c.object_name}: {c.last_status} at {last}, up to {mark}; fetched {c.fetched}, "
                   f"applied {c.applied}, failed {c.failed}" + (f" ({c.last_message})" if c.last_message else ""))
    if state.errors:
        click.echo(f"Pull record errors: {len(state.errors)}")
        for e in state.errors:
            click.echo(f"  {e.object_name} {e.record_id}: {e.reason} ({e.attempts} attempts)")
    if state.flags:
        click.echo(f"Review flags: {len(state.flags)}")
        for f in state.flags:
            click.echo(f"  #{f.id} {f.object_name} {f.record_id} {f.kind}: {f.reason}")


@sync.command("retry")
@click.option("--id", "ids", type=click.IntRange(1, ROW_ID_MAX), multiple=True,
              help="Only this outbox row (repeatable).")
@click.option("--notification", "notification_ids", type=click.IntRange(1, ROW_ID_MAX), multiple=True,
              help="Only this webhook inbox row (repeatable).")
def retry(ids: tuple[int, ...], notification_ids: tuple[int, ...]) -> None:
    """Re-queue dead letters and failing rows (outbox and notifications), attempts reset."""
    from datetime import UTC, datetime

    from connector.database import transaction
    from connector.webhooks.processing import retry_inbox_letters

    services = load_services()
    everything = not ids and not notification_ids
    with transaction(services.engine) as session:
        count = retry_dead_letters(session, list(ids) or None) if ids or everything else 0
        notes = (retry_inbox_letters(session, now=datetime.now(UTC), ids=list(notification_ids) or None)
                 if notification_ids or everything else 0)
    click.echo(f"re-queued {count} outbox row{'s' if count != 1 else ''} and {notes} "
               f"notification{'s' if notes != 1 else ''}; the next worker pass handles them")
