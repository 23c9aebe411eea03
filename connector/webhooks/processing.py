"""Processing the webhook inbox: claim, coalesce, re-read from Salesforce, apply, settle.

``process_inbox(services, worker_id=...)`` is the worker's use case; ``drain_inbox`` repeats
it until nothing is due. One call handles one batch:

1. **claim** (``claim_inbox``, through ``connector.queue`` with the ``INBOX`` descriptor): due
   rows (``pending`` or ``failed`` with ``next_attempt_at <= now``, or ``in_flight`` whose lease
   ran out because its worker died, which counts an attempt) are marked ``in_flight`` with
   ``next_attempt_at = now + lease`` (the lease) and committed. A record already in flight in
   another worker is left for later, so one record is never processed twice at once.
2. **own changes**: a row whose ``change_origin`` is billsync's own write (CDC
   ``...;client=<SF_CLIENT_ID>``; Outbound Message ``user:<integration user id>`` when that
   user is known) is done at once, without a Salesforce call: push and notification never
   loop.
3. **coalesce and fetch**: the rest are grouped per object (Account, Product2,
   PricebookEntry, Opportunity first: dependencies before dependants). Each object's record
   ids, deduplicated, are re-read by Id (``pull.pull_records``: one SOQL query per 200 ids)
   and applied through the mappings and the engine exactly as the pull applies them. The
   notification's own field values are never used. A ``resync_object`` row (CDC
   ``GAP_OVERFLOW``, or a wildcard record id) runs one full pull of the object instead
   (``pull.pull_changes(full=True)``), which also covers the object's other rows.
   Objects no inbound mapping reads are done with a note.
4. **dependencies**: when a record fails in an object that depends on others (a deal whose
   Account or prices were never pulled), the objects before it are pulled once
   (incrementally, from their cursors) and the failed records are read again.
5. **settle** (``queue.Outcome``): each row is ``done``, or ``failed`` with its reason
   (``attempts + 1``, claimed again after ``queue.backoff(attempts)``) and ``dead`` after
   ``queue.MAX_ATTEMPTS``; ``dead``
   and ``failed`` rows are listed by ``inbox_status`` (``billsync sync status``) and re-queued by
   ``retry_inbox_letters``. A Salesforce limit pause releases the rows untouched until the
   pause ends; an authentication failure releases them and raises.

Order does not matter: processing always reads the record's current state, and applying
it is idempotent, so a notification delivered twice or after a newer one changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from connector import queue
from connector.queue import Outcome, SettleCounts, Settlement, utc, utc_now
from connector.salesforce.errors import SalesforceAuthError, SalesforceError, SalesforceLimitError
from connector.salesforce.soql import build_soql
from connector.sync.pull import (
    OBJECT_ORDER,
    ObjectReport,
    PullError,
    load_inbound_specs,
    ordered_specs,
    pull_changes,
    pull_records,
    record_errors,
)
from connector.webhooks.inbox import WebhookInbox
from mappings.transforms import to_id18

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.webhooks")

DEFAULT_BATCH_SIZE = 200
#: How long to wait when Salesforce says the limit is reached without saying until when.
DEFAULT_LIMIT_PAUSE = timedelta(minutes=15)
OWN_CHANGE_NOTE = "ignored: billsync's own change"
#: Status of a row waiting for its retry after a failure.
FAILED = "failed"

_CLIENT = re.compile(r";\s*client=([^;/\s]+)")
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


# ---------------------------------------------------------------- small pure pieces


def id18(record_id: str) -> str:
    """A Salesforce id in its 18-character form (the suffix encodes the upper-case letters)."""
    return to_id18(record_id) if len(record_id) == 15 else record_id


def is_own_change(change_origin: str | None, *, client_id: str | None, user_id: str | None) -> bool:
    """Whether a notification reports a write billsync made itself.

    CDC's ``changeOrigin`` is ``com/salesforce/api/<api>/<version>;client=<client id>``: ours
    when the client is billsync's (``SF_CLIENT_ID``). An Outbound Message carrying
    ``LastModifiedById`` is stored as ``user:<id>``: ours when that is billsync's integration
    user (compared on the case-sensitive 15-character form).
    """
    if not change_origin:
        return False
    if change_origin.startswith("user:"):
        modified_by = change_origin[5:].strip()
        return bool(user_id) and len(modified_by) >= 15 and modified_by[:15] == str(user_id)[:15]
    match = _CLIENT.search(change_origin)
    return bool(client_id) and match is not None and match.group(1) == client_id


def _rank(object_name: str) -> tuple[int, str]:
    order = {name.lower(): i for i, name in enumerate(OBJECT_ORDER)}
    return order.get(object_name.lower(), len(order)), object_name


# ---------------------------------------------------------------- claiming


@dataclass(frozen=True)
class InboxRow:
    """A claimed inbox row (what processing needs of it; never the payload)."""

    id: int
    source: str
    object_name: str
    record_id: str | None
    action: str
    change_origin: str | None
    attempts: int

    @property
    def record_key(self) -> tuple[str, str]:
        return _record_key(self.object_name, self.record_id)


def _record_key(object_name: str, record_id: str | None) -> tuple[str, str]:
    return object_name.lower(), id18(record_id) if record_id else "*"


def _group(row: Mapping[str, Any]) -> Hashable:
    return _record_key(row["object_name"], row["record_id"])


def _held_back_by(key: Hashable) -> tuple[Hashable, ...]:
    """A record waits while it, or a full resync of its object, is in flight elsewhere."""
    object_name: Any = key[0]  # type: ignore[index]
    return key, (object_name, "*")


#: The inbox as a queue: the lease is the next attempt time while a row is in flight, a
#: failure waits as ``failed``, one record (or a whole object's resync) is in flight in one
#: worker at a time, and a row taken back after its worker died counts an attempt.
INBOX = queue.QueueTable(
    WebhookInbox.__table__,
    columns=("source", "object_name", "record_id", "action", "change_origin"),
    lease=queue.LONG_LEASE,
    failed_status=FAILED,
    order_by=("next_attempt_at", "id"),
    settled_at="processed_at",
    group_columns=("object_name", "record_id"),
    group_key=_group,
    blocked_by=_held_back_by,
    count_lost_lease=True,
)
DEFAULT_LEASE = INBOX.lease


def claim_inbox(engine: Any, *, worker_id: str, limit: int, now: datetime,
                lease: timedelta = DEFAULT_LEASE) -> list[InboxRow]:
    """Claim up to ``limit`` due rows (committed before returning), oldest due first.

    A row taken back from a worker whose lease ran out counts one attempt (a row that kills
    its worker every time ends up ``dead`` instead of looping).
    """
    claimed = [InboxRow(r["id"], r["source"], r["object_name"], r["record_id"], r["action"], r["change_origin"],
                        r["attempts"])
               for r in queue.claim(engine, INBOX, worker_id=worker_id, limit=limit, now=now, lease=lease)]
    if claimed:
        log.debug("inbox: %s claimed %d rows", worker_id, len(claimed))
    return claimed


def settle_inbox(engine: Any, rows: Iterable[InboxRow], settlements: Iterable[Settlement], *,
                 now: datetime) -> SettleCounts:
    """Record what became of claimed rows in one transaction (only rows still ``in_flight``)."""
    return queue.settle(engine, INBOX, settlements, attempts={row.id: row.attempts for row in rows}, now=now)


# ---------------------------------------------------------------- the use case


@dataclass
class ProcessReport:
    """One batch: rows claimed and what became of them."""

    claimed: int = 0
    done: int = 0
    retrying: int = 0  # failed, due again after a backoff (status "failed")
    dead: int = 0
    released: int = 0  # back to pending untouched (a limit pause, an auth failure)
    own_changes: int = 0  # billsync's own writes, ignored
    unmapped: int = 0  # objects no inbound mapping reads
    coalesced: int = 0  # rows answered by a fetch made for another row of the same record
    records: int = 0  # distinct records re-read by Id
    resynced: list[str] = field(default_factory=list)  # objects fully resynced
    dependencies_pulled: list[str] = field(default_factory=list)
    objects: list[ObjectReport] = field(default_factory=list)
    paused_until: datetime | None = None
    pause_message: str | None = None

    def add(self, other: ProcessReport) -> None:
        for name in ("claimed", "done", "retrying", "dead", "released", "own_changes", "unmapped", "coalesced",
                     "records"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.resynced.extend(other.resynced)
        self.dependencies_pulled.extend(other.dependencies_pulled)
        self.objects.extend(other.objects)
        self.paused_until = other.paused_until or self.paused_until
        self.pause_message = other.pause_message or self.pause_message

    def lines(self) -> list[str]:
        lines = [f"inbox: {self.claimed} claimed, {self.done} done ({self.own_changes} billsync's own changes, "
                 f"{self.unmapped} not mapped, {self.coalesced} coalesced), {self.retrying} retrying, "
                 f"{self.dead} dead, {self.released} released; {self.records} records re-read"]
        if self.resynced:
            lines.append("  resynced: " + ", ".join(self.resynced))
        if self.dependencies_pulled:
            lines.append("  dependencies pulled first: " + ", ".join(self.dependencies_pulled))
        lines.extend("  " + o.line() for o in self.objects)
        if self.paused_until or self.pause_message:
            until = self.paused_until.isoformat(timespec="seconds") if self.paused_until else "later"
            lines.append(f"  paused until {until}: {self.pause_message}")
        return lines


class _Paused(Exception):
    def __init__(self, until: datetime | None, message: str | None):
        super().__init__(message)
        self.until = until
        self.message = message


_USER_IDS: dict[tuple[str, str], str | None] = {}


def integration_user_id(services: Services) -> str | None:
    """billsync's integration user (18 characters), or ``None`` when it cannot be known.

    From, in order: the client's ``user_id`` (the token response's identity URL ends with
    ``/<orgId>/<userId>``), or one SOQL query by ``SF_USERNAME`` (cached for the process).
    """
    settings = services.settings
    client = services.salesforce()
    known = getattr(client, "user_id", None)
    if isinstance(known, str) and _SALESFORCE_ID.fullmatch(known):
        return id18(known)
    username = settings.sf_username
    if not username:
        return None
    key = (settings.sf_login_url, username)
    if key not in _USER_IDS:
        rows = list(client.query_all(build_soql("SELECT Id FROM User WHERE Username = {}", username)))
        _USER_IDS[key] = rows[0]["Id"] if rows else None
    return _USER_IDS[key]


def process_inbox(services: Services, *, worker_id: str, batch_size: int = DEFAULT_BATCH_SIZE,
                  now: datetime | None = None, lease: timedelta = DEFAULT_LEASE) -> ProcessReport:
    """Claim one batch of due inbox rows and process it (see the module docstring).

    Raises ``SalesforceAuthError`` (``SalesforceNotConfiguredError`` included) after releasing
    the rows untouched: a person has to fix the connection. Everything else ends in the report.
    """
    now = utc_now(now)
    rows = claim_inbox(services.engine, worker_id=worker_id, limit=batch_size, now=now, lease=lease)
    report = ProcessReport(claimed=len(rows))
    if not rows:
        return report
    outcomes: dict[int, Settlement] = {}
    try:
        _process(services, rows, now, report, outcomes)
    except _Paused as paused:
        report.paused_until = paused.until
        report.pause_message = paused.message
        retry_at = paused.until or now + DEFAULT_LIMIT_PAUSE
        for row in rows:
            outcomes.setdefault(row.id, Settlement(row.id, Outcome.RELEASE, retry_at=retry_at))
    except BaseException:
        for row in rows:
            outcomes.setdefault(row.id, Settlement(row.id, Outcome.RELEASE))
        settle_inbox(services.engine, rows, outcomes.values(), now=now)
        raise
    counts = settle_inbox(services.engine, rows, outcomes.values(), now=now)
    report.done, report.retrying, report.dead, report.released = (counts.done, counts.retrying, counts.dead,
                                                                  counts.released)
    for line in report.lines():
        log.info("%s %s", worker_id, line)
    return report


def drain_inbox(services: Services, *, worker_id: str, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int = 100,
                now: datetime | None = None) -> ProcessReport:
    """``process_inbox`` until nothing is due (or a pause, or ``max_batches``): the worker's drain."""
    total = ProcessReport()
    for _ in range(max_batches):
        report = process_inbox(services, worker_id=worker_id, batch_size=batch_size, now=now)
        total.add(report)
        if report.claimed == 0 or report.paused_until or report.pause_message:
            break
    return total


def _process(services: Services, rows: list[InboxRow], now: datetime, report: ProcessReport,
             outcomes: dict[int, Settlement]) -> None:
    client_id = services.settings.sf_client_id
    user_id = None
    if any((row.change_origin or "").startswith("user:") for row in rows):
        user_id = _guard(lambda: integration_user_id(services), default=None,
                         what="finding billsync's integration user")
    work: list[InboxRow] = []
    for row in rows:
        if is_own_change(row.change_origin, client_id=client_id, user_id=user_id):
            outcomes[row.id] = Settlement(row.id, Outcome.DONE, f"{OWN_CHANGE_NOTE} ({row.change_origin})")
            report.own_changes += 1
        else:
            work.append(row)
    if not work:
        return
    try:
        specs = load_inbound_specs(services.settings)
    except PullError as exc:
        for row in work:
            outcomes[row.id] = Settlement(row.id, Outcome.FAILED, str(exc))
        return
    mapped = {spec.object.lower(): spec.object for spec in ordered_specs(specs)}
    groups: dict[str, list[InboxRow]] = defaultdict(list)
    for row in work:
        name = mapped.get(row.object_name.lower())
        if name is None:
            outcomes[row.id] = Settlement(row.id, Outcome.DONE, f"no mapping reads {row.object_name}")
            report.unmapped += 1
        else:
            groups[name].append(row)
    state = _BatchState(mapped=list(dict.fromkeys(mapped.values())))
    for object_name in sorted(groups, key=_rank):
        group = groups[object_name]
        try:
            _process_object(services, object_name, group, now, report, outcomes, state)
        except (_Paused, SalesforceAuthError):
            raise
        except SalesforceLimitError as exc:
            raise _Paused(exc.resume_after, exc.message) from exc
        except Exception as exc:  # one object's failure never stops the others
            reason = _describe(exc)
            log.warning("inbox: %s rows of %s not processed: %s", len(group), object_name, reason,
                        exc_info=not isinstance(exc, SalesforceError | PullError))
            for row in group:
                outcomes.setdefault(row.id, Settlement(row.id, Outcome.FAILED, reason))


@dataclass
class _BatchState:
    mapped: list[str]
    dependencies_pulled: bool = False


def _process_object(services: Services, object_name: str, rows: list[InboxRow], now: datetime, report: ProcessReport,
                    outcomes: dict[int, Settlement], state: _BatchState) -> None:
    resync = [row for row in rows if row.action == "resync_object" or not row.record_id]
    records = [row for row in rows if row.action != "resync_object" and row.record_id]
    ids = sorted({id18(row.record_id) for row in records if row.record_id})
    if resync:
        pulled = _pull_changes(services, [object_name], full=True, now=now)
        object_report = pulled.objects[0]
        report.objects.append(object_report)
        report.resynced.append(object_name)
        if object_report.error:
            for row in rows:
                outcomes[row.id] = Settlement(row.id, Outcome.FAILED, f"full resync of {object_name} failed: "
                                                             f"{object_report.error}")
            return
        for row in resync:
            outcomes[row.id] = Settlement(row.id, Outcome.DONE, f"resynced {object_name}: {object_report.line()}")
        report.coalesced += len(records)  # the full resync read these records too
    elif ids:
        report.objects.append(pull_records(services, object_name, ids, now=now))
        report.records += len(ids)
        report.coalesced += len(records) - len(ids)
    errors = _record_errors(services.engine, object_name, ids)
    dependencies = [name for name in state.mapped if _rank(name) < _rank(object_name)]
    if errors and dependencies and not state.dependencies_pulled:
        # A deal whose Account or prices billsync has never seen: catch those objects up once
        # (from their cursors), then read the failed records again.
        state.dependencies_pulled = True
        pulled = _pull_changes(services, dependencies, full=False, now=now)
        report.dependencies_pulled.extend(dependencies)
        report.objects.extend(pulled.objects)
        report.objects.append(pull_records(services, object_name, sorted(errors), now=now))
        errors = _record_errors(services.engine, object_name, ids)
    for row in records:
        reason = errors.get(id18(row.record_id)) if row.record_id else None
        outcomes[row.id] = Settlement(row.id, Outcome.FAILED, reason) if reason else Settlement(row.id, Outcome.DONE)


def _pull_changes(services: Services, objects: list[str], *, full: bool, now: datetime) -> Any:
    pulled = pull_changes(services, objects=objects, full=full, now=now)
    if pulled.paused_until is not None or pulled.pause_message:
        raise _Paused(pulled.paused_until, pulled.pause_message)
    return pulled


def _record_errors(engine: Any, object_name: str, ids: list[str]) -> dict[str, str]:
    """The pull's current error per record (``sync_record_errors``), for these ids."""
    with Session(engine) as session:
        return record_errors(session, object_name, ids)


def _guard(call: Any, *, default: Any, what: str) -> Any:
    try:
        return call()
    except SalesforceLimitError as exc:
        raise _Paused(exc.resume_after, exc.message) from exc
    except SalesforceAuthError:
        raise
    except SalesforceError as exc:
        log.warning("inbox: %s failed: %s", what, exc)
        return default


def _describe(exc: BaseException) -> str:
    text_value = " ".join(str(exc).split())
    if isinstance(exc, SalesforceError | PullError):
        return text_value or type(exc).__name__
    return f"{type(exc).__name__}: {text_value}" if text_value else type(exc).__name__


# ---------------------------------------------------------------- status and retry


@dataclass(frozen=True)
class InboxLetter:
    """A row ``billsync sync status`` lists: dead, or failed and waiting for its retry."""

    id: int
    source: str
    object_name: str
    record_id: str | None
    action: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    received_at: datetime | None


@dataclass(frozen=True)
class InboxStatus:
    counts: dict[str, int]  # rows per status, every status present (zeros included)
    dead: list[InboxLetter]  # parked after queue.MAX_ATTEMPTS failures
    failed: list[InboxLetter]  # failed, retried at next_attempt_at


def inbox_status(session: Session, *, limit: int | None = 50) -> InboxStatus:
    """Rows per status, and the dead and failed rows (oldest first, at most ``limit`` each)."""
    table = INBOX.table

    def letters(status: str) -> list[InboxLetter]:
        query = select(table).where(table.c.status == status).order_by(table.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [InboxLetter(r.id, r.source, r.object_name, r.record_id, r.action, r.status, r.attempts,
                            r.last_error, utc(r.next_attempt_at), utc(r.received_at))
                for r in session.execute(query).all()]

    return InboxStatus(queue.count_by_status(session, INBOX), letters(queue.DEAD), letters(FAILED))


def inbox_counts(session: Session) -> dict[str, int]:
    """Rows per status (every status present, zeros included)."""
    return queue.count_by_status(session, INBOX)


def inbox_letters(session: Session, *, status: str, limit: int | None = 50,
                  after_id: int | None = None) -> list[InboxLetter]:
    """Dead (``status="dead"``) or failed rows, by id, after ``after_id`` (a page of at most ``limit``)."""
    table = INBOX.table
    query = select(table).where(table.c.status == (queue.DEAD if status == "dead" else FAILED)).order_by(table.c.id)
    if after_id is not None:
        query = query.where(table.c.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return [InboxLetter(r.id, r.source, r.object_name, r.record_id, r.action, r.status, r.attempts, r.last_error,
                        utc(r.next_attempt_at), utc(r.received_at)) for r in session.execute(query).all()]


def retry_inbox_letters(session: Session, *, now: datetime, ids: Iterable[int] | None = None) -> int:
    """Re-queue dead and failed rows now, with their attempts reset (the caller commits)."""
    return queue.requeue(session, INBOX, ids=ids, now=now)


__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_LEASE", "INBOX", "InboxLetter", "InboxRow", "InboxStatus", "ProcessReport",
    "claim_inbox", "drain_inbox", "id18", "inbox_counts", "inbox_letters", "inbox_status", "integration_user_id",
    "is_own_change",
    "process_inbox", "retry_inbox_letters", "settle_inbox",
]
