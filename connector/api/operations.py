"""``/api/v1`` operations of the sync: its status, dead letters and their retry, review flags and
their resolution, reconciliations (run one for a month, read its result).

The same use cases as ``billsync sync status|retry``, ``billsync review list|resolve`` and
``billsync reconcile``. A reconciliation reads Salesforce while the request waits (a few
queries for a month, one more per 2,000 Accounts) and is kept, so its result can be read
again by its id; ``repair`` puts the drifted records back in the outbox, as ``--repair`` does.
A review is resolved with ``keep``, ``cancel`` or ``reapply``; ``reapply`` reads the deal from
Salesforce again while the request waits, as ``billsync review resolve ID --action reapply`` does.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from connector.api.framework import (
    ApiBlueprint,
    api_state,
    current_key,
    reading,
    record_audit,
    respond,
    write_session,
)
from connector.api.pagination import Absent, Page, PageQuery, decode_cursor, page
from connector.api.problems import ApiProblem, conflict, invalid, not_found
from connector.wiring import services_of

# The sync's modules (the Salesforce client, the pull, the inbox) are imported by the routes that
# use them, not when the web process starts.

log = logging.getLogger("billsync.api")

blueprint = ApiBlueprint("operations", __name__, tag="Operations",
                         description="The sync with Salesforce: status, dead letters and retry, review flags, "
                                     "reconciliations.")

ROW_ID_MAX = 2**31 - 1
SALESFORCE_UNAVAILABLE = "urn:billsync:problem:salesforce-unavailable"
#: Seconds a client is asked to wait before asking again after Salesforce failed.
SALESFORCE_RETRY_AFTER = 60


# ---------------------------------------------------------------- sync status


class SyncStatusQuery(BaseModel):
    refresh: bool = Field(False, description="Ask Salesforce for the org's API usage now (one API call); "
                                             "otherwise the usage this process last saw, if any.")


class InstallationOut(BaseModel):
    id: str = Field(description="This installation's id: the prefix of every external id it writes.")
    org_id: str | None = Field(description="The Salesforce org the push is bound to; null before the first push.")
    bound_at: datetime | None
    adopted_at: datetime | None = Field(description="When an admin accepted other installations' records there.")
    rekey_pending: bool = Field(description="Records pushed under the old keys wait to be re-keyed by the next push.")


class SalesforceOut(BaseModel):
    configured: bool = Field(description="False when SF_AUTH=none: nothing is pulled or pushed.")
    api_used: int | None = Field(description="API calls the org used in its 24-hour allocation, when known.")
    api_max: int | None = Field(description="The org's 24-hour allocation, when known.")
    budget_share: str | None = Field(description="The share of the allocation billsync may use (decimal string, "
                                                 "e.g. \"0.5\"); the sync pauses when it is reached.")
    paused_until: datetime | None = Field(description="The sync is paused until then (the budget is reached).")
    pause_reason: str | None


class OutboxCounts(BaseModel):
    pending: int
    failing: int = Field(description="Pending again after an error, waiting for their retry.")
    in_flight: int
    done: int
    dead: int = Field(description="Dead letters: given up after too many failures, until retried.")


class InboxCounts(BaseModel):
    pending: int
    in_flight: int
    failed: int = Field(description="Failed, waiting for their retry.")
    done: int
    dead: int


class CursorOut(BaseModel):
    object: str = Field(description="The Salesforce object pulled, e.g. `Opportunity`.")
    status: str = Field(description="How its last pull went: never, ok, paused, failed.")
    last_run_at: datetime | None
    pulled_up_to: datetime | None = Field(description="The newest SystemModstamp pulled.")
    message: str | None
    fetched: int
    applied: int
    failed: int


class LastPushOut(BaseModel):
    at: datetime = Field(description="When the last push that delivered outbox rows finished.")
    summary: str


class SyncStatusOut(BaseModel):
    installation: InstallationOut | None = Field(description="Null until the first push creates it.")
    salesforce: SalesforceOut
    outbox: OutboxCounts = Field(description="The push's queue: engine changes on their way to Salesforce.")
    inbox: InboxCounts = Field(description="Salesforce's notifications (Outbound Messages, CDC) on their way in.")
    last_pull_at: datetime | None
    last_push: LastPushOut | None
    cursors: list[CursorOut]
    record_errors: int = Field(description="Salesforce records the pull could not apply (retried by each pull).")
    open_reviews: int = Field(description="Review flags waiting for finance (`/review-flags`).")


def _salesforce(refresh: bool) -> SalesforceOut:
    from connector.salesforce.errors import SalesforceError

    services = services_of(current_app)
    if services.settings.sf_auth == "none":
        return SalesforceOut(configured=False, api_used=None, api_max=None, budget_share=None, paused_until=None,
                             pause_reason=None)
    try:
        client = services.salesforce()
        status = client.refresh_status() if refresh else client.status()
    except SalesforceError as exc:
        log.warning("sync status: Salesforce API usage unknown: %s", exc)
        return SalesforceOut(configured=True, api_used=None, api_max=None, budget_share=None, paused_until=None,
                             pause_reason=None)
    return SalesforceOut(configured=True, api_used=status.used, api_max=status.max,
                         budget_share=format(status.share, "f"), paused_until=status.paused_until,
                         pause_reason=status.pause_reason)


@blueprint.get("/sync/status", scope="read", responses={200: SyncStatusOut})
def get_sync_status(query: SyncStatusQuery):
    """Where the sync stands: the outbox and inbox, the pull's cursors, the last push, the API budget."""
    from connector.sync.status import sync_overview
    from connector.webhooks.processing import inbox_counts

    with reading() as session:
        overview = sync_overview(api_state().reader, session)
        inbox = inbox_counts(session)
    installation = overview.installation
    return respond(SyncStatusOut(
        installation=None if installation is None else InstallationOut(
            id=installation.installation_id, org_id=installation.org_id, bound_at=installation.bound_at,
            adopted_at=installation.adopted_at, rekey_pending=installation.rekey_pending),
        salesforce=_salesforce(query.refresh),
        outbox=OutboxCounts(**{k: overview.outbox.get(k, 0) for k in ("pending", "failing", "in_flight", "done",
                                                                         "dead")}),
        inbox=InboxCounts(**{k: inbox.get(k, 0) for k in ("pending", "in_flight", "failed", "done", "dead")}),
        last_pull_at=overview.last_pull_at,
        last_push=None if overview.last_push is None else LastPushOut(at=overview.last_push.finished_at,
                                                                      summary=overview.last_push.summary),
        cursors=[CursorOut(object=c.object_name, status=c.last_status, last_run_at=c.last_run_at,
                           pulled_up_to=c.last_modstamp, message=c.last_message, fetched=c.fetched,
                           applied=c.applied, failed=c.failed) for c in overview.cursors],
        record_errors=overview.record_errors, open_reviews=overview.open_reviews))


# ---------------------------------------------------------------- dead letters


class DeadLetterQuery(PageQuery):
    queue: str = Field("outbox", pattern="^(outbox|inbox)$",
                       description="`outbox` (engine changes for Salesforce) or `inbox` (Salesforce's notifications).")
    status: str = Field("dead", pattern="^(dead|failing)$",
                        description="`dead` (given up until retried) or `failing` (waiting for their next try).")


class DeadLetterOut(BaseModel):
    id: int = Field(description="The row's id in its queue (what `/sync/dead-letters/retry` takes).")
    queue: str = Field(description="outbox or inbox.")
    status: str = Field(description="dead or failing.")
    event: str = Field(description="An outbox topic (`invoice.finalized`) or a notification's source and action.")
    record: str = Field(description="What it is about: `invoice 42`, `Opportunity 006…`.")
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None


class DeadLetterPage(Page[DeadLetterOut]):
    pass


@blueprint.get("/sync/dead-letters", scope="read", responses={200: DeadLetterPage})
def list_dead_letters(query: DeadLetterQuery):
    """Dead letters (or failing rows) of the outbox or the inbox, oldest first."""
    from connector.sync.outbox_claims import outbox_letters
    from connector.webhooks.processing import inbox_letters

    after = decode_cursor(query.cursor, f"dead-letters-{query.queue}-{query.status}", (int,))
    after_id = after[0] if after else None
    with reading() as session:
        if query.queue == "outbox":
            rows = [DeadLetterOut(id=x.id, queue="outbox", status=query.status, event=x.topic,
                                  record=f"{x.aggregate_type} {x.aggregate_id}", attempts=x.attempts,
                                  last_error=x.last_error, next_attempt_at=x.next_attempt_at,
                                  created_at=x.created_at)
                    for x in outbox_letters(session, status=query.status, limit=query.limit + 1, after_id=after_id)]
        else:
            rows = [DeadLetterOut(id=x.id, queue="inbox", status=query.status, event=f"{x.source} {x.action}",
                                  record=f"{x.object_name} {x.record_id or '(whole object)'}", attempts=x.attempts,
                                  last_error=x.last_error, next_attempt_at=x.next_attempt_at,
                                  created_at=x.received_at)
                    for x in inbox_letters(session, status=query.status, limit=query.limit + 1, after_id=after_id)]
    return respond(DeadLetterPage(**page(rows, query, f"dead-letters-{query.queue}-{query.status}",
                                         key=lambda x: [x.id], item=lambda x: x)))


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outbox_ids: list[int] | None = Field(None, max_length=1000,
                                         description="Only these outbox rows (ids from `/sync/dead-letters`).")
    inbox_ids: list[int] | None = Field(None, max_length=1000, description="Only these inbox rows.")


class RetryOut(BaseModel):
    outbox_requeued: int = Field(description="Outbox rows put back in the queue, attempts reset.")
    inbox_requeued: int = Field(description="Notifications put back in the queue, attempts reset.")


def _check_ids(name: str, ids: list[int] | None) -> list[int] | None:
    bad = [{"pointer": f"/{name}/{n}", "detail": f"must be a row id from 1 to {ROW_ID_MAX}"}
           for n, i in enumerate(ids or []) if not 1 <= i <= ROW_ID_MAX]
    if bad:
        raise invalid(bad)
    return sorted(set(ids)) if ids else None


@blueprint.post("/sync/dead-letters/retry", scope="write", responses={200: RetryOut})
def retry_dead_letters_now(body: RetryIn):
    """Re-queue dead letters and failing rows now (all of both queues, or the ids given); the next
    worker pass sends them. Sending it again re-queues only what failed again meanwhile."""
    from connector.sync.outbox_claims import retry_dead_letters
    from connector.webhooks.processing import retry_inbox_letters

    outbox_ids = _check_ids("outbox_ids", body.outbox_ids)
    inbox_ids = _check_ids("inbox_ids", body.inbox_ids)
    everything = outbox_ids is None and inbox_ids is None
    session = write_session()
    outbox = retry_dead_letters(session, outbox_ids) if outbox_ids or everything else 0
    inbox = (retry_inbox_letters(session, now=datetime.now(UTC), ids=inbox_ids)
             if inbox_ids or everything else 0)
    record_audit("sync.retry", "sync_queue", "all" if everything else "rows",
                 before={"outbox_ids": outbox_ids, "inbox_ids": inbox_ids},
                 after={"outbox_requeued": outbox, "inbox_requeued": inbox})
    return respond(RetryOut(outbox_requeued=outbox, inbox_requeued=inbox))


# ---------------------------------------------------------------- review flags


class ReviewFlagOut(BaseModel):
    id: int
    object: str = Field(description="The Salesforce object: Opportunity or Account.")
    record_id: str = Field(description="The Salesforce record the review is about.")
    kind: str = Field(description="deleted, reverted, changed (a won deal) or refused (a record billsync cannot "
                                  "apply).")
    reason: str = Field(description="What a rep reads on the record (Billing_Review_Reason__c).")
    detail: str = Field(description="What billsync saw.")
    engine_id: str | None = Field(description="The subscription or customer it is about, when there is one.")
    since: datetime
    shown_on: str | None = Field(description="The record showing the flag (`Opportunity 006…`), if any.")
    in_salesforce: str = Field(description="Whether Salesforce shows it yet: shown, pending, not shown, "
                                           "retrying: … or failed: ….")


class ReviewFlagPage(Page[ReviewFlagOut]):
    pass


def _review_out(item: Any) -> ReviewFlagOut:
    """A ``connector.sync.review.ReviewItem`` for the API."""
    return ReviewFlagOut(id=item.id, object=item.object_name, record_id=item.record_id, kind=item.kind,
                         reason=item.reason, detail=item.detail, engine_id=item.engine_id, since=item.since,
                         shown_on=item.shown_on, in_salesforce=item.in_salesforce)


@blueprint.get("/review-flags", scope="read", responses={200: ReviewFlagPage})
def list_review_flags(query: PageQuery):
    """Open reviews, by id: what billsync will not decide alone, for finance to settle."""
    from connector.sync import review as reviews

    after = decode_cursor(query.cursor, "review-flags", (int,))
    with reading() as session:
        items = sorted(reviews.open_reviews(session), key=lambda i: i.id)
    if after:
        items = [i for i in items if i.id > after[0]]
    return respond(ReviewFlagPage(**page(items[:query.limit + 1], query, "review-flags", key=lambda i: [i.id],
                                         item=_review_out)))


class ReviewPath(BaseModel):
    review_id: int = Field(ge=1, le=ROW_ID_MAX)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern="^(keep|cancel|reapply)$",
                        description="`keep`: billing stays as it is; `cancel`: the subscription ends on `on`; "
                                    "`reapply`: the deal is read from Salesforce again and applied as it "
                                    "stands (the request waits for Salesforce).")
    on: date | None = Field(None, ge=date(1900, 1, 1), le=date(2999, 12, 31),
                            description="With `cancel`: the first day not billed.")
    note: str = Field(min_length=1, max_length=2000, description="Why: kept with the review.")


class ResolutionOut(BaseModel):
    id: int
    action: str
    message: str


@blueprint.post("/review-flags/<int:review_id>/resolve", scope="write", responses={200: ResolutionOut})
def resolve_review_flag(path: ReviewPath, body: ResolveIn):
    """Settle an open review; the next push clears the flag on the Salesforce record."""
    from connector.sync import review as reviews

    problems = []
    if body.action == "cancel" and body.on is None:
        problems.append({"pointer": "/on", "detail": "cancel needs the first day not billed (YYYY-MM-DD)"})
    if body.action != "cancel" and body.on is not None:
        problems.append({"pointer": "/on", "detail": f"only cancel takes a date, not {body.action}"})
    if not body.note.strip():
        problems.append({"pointer": "/note", "detail": "say why (it is kept with the review)"})
    if problems:
        raise invalid(problems)
    if body.action == "reapply":
        return _reapply_review(path.review_id, body.note)
    session = write_session()
    try:
        flag = reviews.open_review(session, path.review_id)
        before = {"open": True, "object": flag.object_name, "record_id": flag.record_id, "kind": flag.kind,
                  "engine_id": flag.engine_id}
        result = reviews.settle_review(session, path.review_id, body.action, on=body.on, note=body.note,
                                       now=datetime.now(UTC))
    except reviews.ReviewNotFoundError as exc:
        raise not_found("; ".join(exc.lines)) from None
    except reviews.ReviewError as exc:
        raise conflict("; ".join(exc.lines)) from None
    record_audit("review.resolve", "review_flag", path.review_id, before=before,
                 after={"open": False, "action": body.action, "on": body.on.isoformat() if body.on else None,
                        "note": body.note.strip()})
    return respond(ResolutionOut(id=result.review_id, action=result.action, message=result.message))


def _reapply_review(review_id: int, note: str):
    """Read the deal again and apply it (its own transactions: the pull writes as it reads)."""
    from connector.salesforce.errors import SalesforceError, SalesforceNotConfiguredError
    from connector.sync import review as reviews

    services = services_of(current_app)
    if services.settings.sf_auth == "none":
        raise conflict("Salesforce is not configured (SF_AUTH=none): there is no deal to read again; "
                       "resolve the review with keep or cancel")
    with reading() as session:
        try:
            flag = reviews.open_review(session, review_id)
        except reviews.ReviewNotFoundError as exc:
            raise not_found("; ".join(exc.lines)) from None
        except reviews.ReviewError as exc:
            raise conflict("; ".join(exc.lines)) from None
        before = {"open": True, "object": flag.object_name, "record_id": flag.record_id, "kind": flag.kind,
                  "engine_id": flag.engine_id}
    try:
        result = reviews.resolve_review(services, review_id, "reapply", note=note, now=datetime.now(UTC))
    except reviews.ReviewNotFoundError as exc:
        raise not_found("; ".join(exc.lines)) from None
    except reviews.ReviewError as exc:
        raise conflict("; ".join(exc.lines)) from None
    except SalesforceNotConfiguredError:
        raise conflict("Salesforce is not configured: there is no deal to read again") from None
    except SalesforceError as exc:
        log.warning("review %s: Salesforce could not be read: %s", review_id, exc)
        raise ApiProblem(503, "Service Unavailable", "Salesforce could not be read to re-apply the deal; try "
                         "again later (the web process's log says why)", type=SALESFORCE_UNAVAILABLE,
                         headers={"Retry-After": str(SALESFORCE_RETRY_AFTER)}) from None
    record_audit("review.resolve", "review_flag", review_id, before=before,
                 after={"open": False, "action": "reapply", "on": None, "note": note.strip()})
    return respond(ResolutionOut(id=result.review_id, action=result.action, message=result.message))


# ---------------------------------------------------------------- reconciliations


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(pattern=r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$", description="The month, `YYYY-MM`.")
    repair: bool = Field(False, description="Put every drifted record back in the outbox: the next push writes it "
                                            "again (records only Salesforce has are left for a person).")


class TotalOut(BaseModel):
    object: str = Field(description="invoice, payment, credit_note, refund or account.")
    currency: str
    status: str
    billsync_count: int
    billsync_sum: str = Field(description="Decimal string in `currency`: totals, amounts, or an Account's MRR.")
    salesforce_count: int
    salesforce_sum: str
    agrees: bool


class MismatchOut(BaseModel):
    object: str
    external_id: str = Field(description="The record's key (`Billsync_…_Id__c`; a customer id for an Account).")
    label: str = Field(description="Its number or name, for people.")
    kind: str = Field(description="missing_in_salesforce, missing_in_engine, amount, status or name.")
    field: str | None = Field(description="The Salesforce field that differs.")
    billsync_value: str | None
    salesforce_value: str | None
    description: str = Field(description="One line, as `billsync reconcile` prints it.")


class NotRepairableOut(BaseModel):
    object: str
    label: str
    reason: str


class RepairOut(BaseModel):
    requeued: list[str] = Field(description="Records put back in the outbox (`invoice INV-2026-000001`).")
    not_repairable: list[NotRepairableOut]


class ReconciliationOut(BaseModel):
    id: int
    period: str
    starts_on: date
    ends_before: date = Field(description="The first day after the month.")
    accounts_as_of: date | None = Field(description="The day the Account summaries were compared as of.")
    requested_at: datetime
    requested_by: str
    agrees: bool = Field(description="Both sides agree to the cent (`billsync reconcile` exits 0).")
    billsync_records: int
    salesforce_records: int
    not_compared: list[str] = Field(description="What was left out, and why.")
    totals: list[TotalOut]
    mismatches: list[MismatchOut]
    repair: RepairOut | None = Field(description="What `repair` re-queued; null without it.")


def _reconciliation_out(run: Any) -> ReconciliationOut:
    """A ``connector.sync.reconcile.SavedRun`` for the API."""
    r = run.result
    repair = r.get("repair")
    return ReconciliationOut(
        id=run.id, period=run.period, starts_on=date.fromisoformat(r["starts_on"]),
        ends_before=date.fromisoformat(r["ends_before"]),
        accounts_as_of=date.fromisoformat(r["accounts_as_of"]) if r.get("accounts_as_of") else None,
        requested_at=run.requested_at, requested_by=run.requested_by, agrees=run.agrees,
        billsync_records=r["engine_records"], salesforce_records=r["salesforce_records"],
        not_compared=r["not_compared"],
        totals=[TotalOut(object=t["object"], currency=t["currency"], status=t["status"],
                         billsync_count=t["engine_count"], billsync_sum=t["engine_sum"],
                         salesforce_count=t["salesforce_count"], salesforce_sum=t["salesforce_sum"],
                         agrees=t["agrees"]) for t in r["totals"]],
        mismatches=[MismatchOut(object=m["object"], external_id=m["external_id"], label=m["label"], kind=m["kind"],
                                field=m["field"], billsync_value=m["engine_value"],
                                salesforce_value=m["salesforce_value"], description=m["description"])
                    for m in r["mismatches"]],
        repair=None if repair is None else RepairOut(
            requeued=repair["requeued"], not_repairable=[NotRepairableOut(**x) for x in repair["not_repairable"]]))


@blueprint.post("/reconciliations", scope="write", responses={201: ReconciliationOut})
def run_reconciliation(body: ReconcileIn):
    """Compare billsync and Salesforce for a month, and every Account summary (as `billsync reconcile`);
    the result is kept and can be read again by its id."""
    from connector.salesforce.errors import SalesforceError, SalesforceNotConfiguredError
    from connector.sync import reconcile as reconciliation
    from connector.sync.installation import ensure_installation, find_installation

    services = services_of(current_app)
    if services.settings.sf_auth == "none":
        raise conflict("Salesforce is not configured (SF_AUTH=none): there is nothing to reconcile with")
    now = datetime.now(UTC)
    installation = find_installation(api_state().reader)  # read first: a write here would hold SQLite's lock
    keys = (installation or ensure_installation(write_session(), now=now)).keys
    try:
        report = reconciliation.reconcile_period(services, body.period, keys=keys)
    except SalesforceNotConfiguredError:
        raise conflict("Salesforce is not configured: there is nothing to reconcile with") from None
    except SalesforceError as exc:
        log.warning("reconcile %s: Salesforce could not be read: %s", body.period, exc)
        raise ApiProblem(503, "Service Unavailable", "Salesforce could not be read for the reconciliation; "
                         "try again later (the web process's log says why)", type=SALESFORCE_UNAVAILABLE,
                         headers={"Retry-After": str(SALESFORCE_RETRY_AFTER)}) from None
    session = write_session()
    repair = None
    if body.repair and not report.agrees:
        repair = reconciliation.requeue_drift(services, report, session=session, keys=keys, now=now)
    elif body.repair:
        repair = reconciliation.RepairResult()
    run = reconciliation.save_run(session, report, requested_by=current_key().actor, requested_at=now,
                                  repair=repair)
    record_audit("reconcile.run", "reconciliation", run.id, before=None,
                 after={"period": run.period, "agrees": run.agrees, "mismatches": len(report.mismatches),
                        "repair": body.repair, "requeued": len(repair.requeued) if repair else 0})
    return respond(_reconciliation_out(run), 201, headers={"Location": f"/api/v1/reconciliations/{run.id}"})


class ReconciliationPath(BaseModel):
    run_id: int = Field(ge=1, le=ROW_ID_MAX)


@blueprint.get("/reconciliations/<int:run_id>", scope="read", responses={200: ReconciliationOut})
def get_reconciliation(path: ReconciliationPath):
    """A reconciliation's result, as it was when it ran."""
    from connector.sync import reconcile as reconciliation

    with reading() as session:
        run = reconciliation.find_run(session, path.run_id)
    if run is None:
        raise not_found(f"reconciliation {path.run_id} not found")
    return respond(_reconciliation_out(run))


class ReconciliationQuery(PageQuery):
    period: str | Absent = Field(None, pattern=r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$",
                               description="Only this month's, `YYYY-MM`.")


class ReconciliationSummary(BaseModel):
    id: int
    period: str
    requested_at: datetime
    requested_by: str
    agrees: bool
    mismatches: int


class ReconciliationPage(Page[ReconciliationSummary]):
    pass


@blueprint.get("/reconciliations", scope="read", responses={200: ReconciliationPage})
def list_reconciliations(query: ReconciliationQuery):
    """Reconciliations run through the API, newest first."""
    from connector.sync import reconcile as reconciliation

    after = decode_cursor(query.cursor, "reconciliations", (int,))
    with reading() as session:
        runs = reconciliation.list_runs(session, limit=query.limit + 1, before_id=after[0] if after else None,
                                        period=query.period)
    return respond(ReconciliationPage(**page(
        runs, query, "reconciliations", key=lambda r: [r.id],
        item=lambda r: ReconciliationSummary(id=r.id, period=r.period, requested_at=r.requested_at,
                                             requested_by=r.requested_by, agrees=r.agrees,
                                             mismatches=r.mismatches))))
