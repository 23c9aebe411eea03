"""Pull: Salesforce records → engine commands, incrementally, one record per transaction.

``pull_changes(services)`` is the use case the clock and ``billsync sync pull`` call. For
each object of the inbound mappings, in dependency order (Account → Product2 →
PricebookEntry → Opportunity, then any other object by name):

1. **changes**: ``SELECT <mapped fields> FROM X WHERE (<filter>) AND SystemModstamp >=
   <cursor − 5 min> ORDER BY SystemModstamp, Id``, paged to the end, deduplicated by Id;
   ``--full`` drops the SystemModstamp condition. Each record is mapped
   (``mappings.apply_inbound``) and applied (``apply.apply_command``) in its own
   transaction: a bad record is stored in ``sync_record_errors`` with its reason and the
   rest go on. A record whose stored SystemModstamp is not older is skipped, and a
   command identical to the last applied one changes nothing: pulling twice is a no-op.
   A record that needs another one not applied yet (a deal's Account, the won deal an
   amendment, renewal or cancellation references through ``Subscription_Reference__c``)
   pulls it by Id first, in the same run, and is applied after it: the order records
   arrive in does not matter (billsync's own write-back moves a won deal's
   SystemModstamp after its amendments').
2. **retries**: records still in ``sync_record_errors`` are read again by Id.
3. **deletions**: ``queryAll ... WHERE IsDeleted = true AND SystemModstamp >= since``.
   **Reverts** (subscription mappings with a filter): records changed since the cursor
   that no longer match the filter (a deal moved away from Closed Won). A deleted or
   reverted deal that produced a subscription (or a deleted Account with a customer) gets
   a review flag; nothing is ever cancelled or undone automatically. A record error on an
   Opportunity or Account is a ``refused`` review, closed when the record applies. Every
   review is shown on its Salesforce record by the push (``connector.sync.review``).
4. the cursor moves to the highest SystemModstamp read (saved after every batch).

``SalesforceLimitError`` (the org's allocation or billsync's budget) stops the pull
cleanly: the report says until when it is paused, and the next pull resumes from the
cursor. ``pull_records(services, object_name, ids)`` applies given records by Id (webhook
processing). ``pull_status(session)`` is what ``billsync sync status`` shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from connector.database import transaction
from connector.queue import utc_now
from connector.salesforce.errors import SalesforceAuthError, SalesforceError, SalesforceLimitError
from connector.salesforce.soql import build_soql
from connector.sync.apply import (
    FLAGGED,
    SUBSCRIPTION_COMMANDS,
    UNCHANGED,
    MissingDependencyError,
    apply_command,
    describe_failure,
    find_synced,
)
from connector.sync.review import (
    clear_refusal,
    deleted_deal_summary,
    note_refusal,
    raise_review_flag,
    reverted_summary,
)
from connector.sync.tables import ReviewFlag, SyncCursor, SyncedRecord, SyncRecordError
from mappings import (
    InboundSpec,
    MappingContext,
    MappingSet,
    apply_inbound,
    load_specs,
    select_line_source,
    soql_for,
    soql_for_lines,
)

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.wiring import Services

log = logging.getLogger("billsync.pull")

OBJECT_ORDER = ("Account", "Product2", "PricebookEntry", "Opportunity")
OVERLAP = timedelta(minutes=5)
BATCH_SIZE = 200  # records applied per batch (and ids per "Id IN (...)" query)
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class PullError(Exception):
    """The pull cannot run at all (mapping files with problems, an unknown object); one line per problem."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


@dataclass
class ObjectReport:
    object_name: str
    fetched: int = 0
    applied: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0
    flagged: int = 0
    error: str | None = None  # the object could not be pulled (or not completely)
    skipped: bool = False  # not reached (the pull was paused before it)
    paused: bool = False  # stopped part-way by a Salesforce limit; resumes from the cursor

    @property
    def ran(self) -> bool:
        return not (self.skipped or self.error)

    def line(self) -> str:
        if self.skipped:
            return f"{self.object_name}: skipped (paused)"
        text = (f"{self.object_name}: fetched {self.fetched}, applied {self.applied}, unchanged {self.unchanged}, "
                f"failed {self.failed}, deleted {self.deleted}, flagged {self.flagged}")
        if self.paused:
            return f"{text} (paused part-way)"
        return f"{text} — failed: {self.error}" if self.error else text


@dataclass
class PullReport:
    started_at: datetime
    full: bool
    objects: list[ObjectReport] = field(default_factory=list)
    paused_until: datetime | None = None
    pause_message: str | None = None

    @property
    def failed_records(self) -> int:
        return sum(o.failed for o in self.objects)

    @property
    def object_errors(self) -> list[str]:
        return [f"{o.object_name}: {o.error}" for o in self.objects if o.error]


# ------------------------------------------------------------------ helpers


def parse_modstamp(value: Any) -> datetime | None:
    """Salesforce's ``2026-01-31T23:30:00.000+0000`` as an aware UTC datetime."""
    if not value or not isinstance(value, str):
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value.replace("Z", "+0000"), pattern).astimezone(UTC)
        except ValueError:
            continue
    return None


def _chunks(items: Iterable[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ordered_specs(specs: MappingSet) -> list[InboundSpec]:
    rank = {name.lower(): i for i, name in enumerate(OBJECT_ORDER)}
    return sorted(specs.inbound, key=lambda s: (rank.get(s.object.lower(), len(rank)), s.object, s.name))


def load_inbound_specs(settings: Settings) -> MappingSet:
    specs = load_specs(settings.mappings_dir)
    if specs.problems:
        shown = [str(p) for p in specs.problems[:10]]
        more = len(specs.problems) - len(shown)
        raise PullError(["the mapping files have problems; run `billsync mappings check`", *shown,
                         *([f"... and {more} more"] if more > 0 else [])])
    return specs


def _is_subscription_spec(spec: InboundSpec) -> bool:
    return any(c in SUBSCRIPTION_COMMANDS for c in spec.commands)


# ------------------------------------------------------------------ the puller


class _Puller:
    def __init__(self, services: Services, specs: MappingSet, now: datetime, full: bool):
        self.services = services
        self.engine = services.engine
        self.client = services.salesforce()
        self.specs = specs
        self.now = now
        self.full = full
        self.org_timezone = services.settings.billsync_timezone
        self.seller_country = services.settings.seller_country
        self.dependencies: set[tuple[str, str]] = set()  # (object, Id) asked for by a record that needs it
        self.pulled_ahead: set[tuple[str, str]] = set()  # ... and pulled: skipped when their turn comes

    # ---------------------------------------------------------- one object

    def pull_object(self, spec: InboundSpec, report: ObjectReport) -> None:
        with transaction(self.engine) as session:
            cursor = session.get(SyncCursor, spec.object)
            start = cursor.last_modstamp if cursor else None
            retry_ids = set(session.exec(select(SyncRecordError.record_id)
                                         .where(SyncRecordError.object_name == spec.object)).all())
        since = None if self.full or start is None else start - OVERLAP
        highest = start
        seen: set[str] = set()
        if since is None:
            soql = build_soql(soql_for(spec, order_by="SystemModstamp, Id"))
        else:
            soql = build_soql(soql_for(spec, where="SystemModstamp >= {}", order_by="SystemModstamp, Id"), since)
        for batch in _chunks(self.client.query_all(soql)):
            records = [r for r in batch if r.get("Id") not in seen]
            seen.update(r["Id"] for r in records)
            self.apply_batch(spec, records, report)
            stamps = [s for s in (parse_modstamp(r.get("SystemModstamp")) for r in records) if s is not None]
            if stamps and (highest is None or max(stamps) > highest):
                highest = max(stamps)
                self.save_cursor(spec.object, highest)
        if _is_subscription_spec(spec):  # the open deals the filter leaves out are previewed, never applied
            from connector.sync.preview import preview_open_deals

            stamp = preview_open_deals(self, spec, since)
            if stamp is not None and (highest is None or stamp > highest):
                highest = stamp
                self.save_cursor(spec.object, highest)
        self.pull_by_id(spec, sorted(retry_ids - seen), report)
        self.deletions(spec, since, report)
        if _is_subscription_spec(spec) and spec.filter:
            self.reverts(spec, since, report)

    def pull_by_id(self, spec: InboundSpec, ids: Sequence[str], report: ObjectReport) -> None:
        for chunk in _chunks(ids):
            soql = build_soql(soql_for(spec, where="Id IN {}", order_by="Id"), list(chunk))
            records = list(self.client.query_all(soql))
            self.apply_batch(spec, records, report)
            found = {r["Id"] for r in records}
            missing = [i for i in chunk if i not in found]
            if missing:
                self.vanished(spec, missing, report)

    def vanished(self, spec: InboundSpec, ids: list[str], report: ObjectReport) -> None:
        """Records asked for by Id that the mapping's query no longer returns: deleted, or filtered out."""
        fields = "Id, IsDeleted, SystemModstamp" + (", StageName" if spec.object == "Opportunity" else "")
        soql = build_soql("SELECT {:literal} FROM {:literal} WHERE Id IN {}", fields, spec.object, ids)
        rows = {r["Id"]: r for r in self.client.query_all(soql, include_deleted=True)}
        for record_id in ids:
            row = rows.get(record_id)
            if row is not None and row.get("IsDeleted"):
                self.record_deleted(spec, row, report)
            elif row is not None and _is_subscription_spec(spec):
                self.record_reverted(spec, row, report)
            else:
                self.forget_error(spec.object, record_id)

    # ---------------------------------------------------------- applying

    def lines_for(self, spec: InboundSpec, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Line items of ``match`` sources (the synced quote's lines), read in one query per batch."""
        wanted: dict[Any, list[str]] = {}
        sources = {}
        for record in records:
            source = select_line_source(spec, record)
            if source is not None and source.match and source.when:
                wanted.setdefault(source.object, []).append(record.get(source.when))
                sources[source.object] = source
        grouped: dict[str, list[dict[str, Any]]] = {}
        for object_name, values in wanted.items():
            source = sources[object_name]
            for chunk in _chunks(sorted({v for v in values if v})):
                soql = build_soql(soql_for_lines(spec, source, many=True), chunk)
                for line in self.client.query_all(soql):
                    grouped.setdefault(line.get(source.match), []).append(line)
        result: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            source = select_line_source(spec, record)
            if source is not None and source.match and source.when:
                result[record["Id"]] = grouped.get(record.get(source.when), [])
        return result

    def context_for(self, session: Session, spec: InboundSpec, record: dict[str, Any]) -> MappingContext:
        customer_timezone = None
        account_id = record.get("AccountId")
        if _is_subscription_spec(spec) and isinstance(account_id, str) and account_id:
            from billing_engine.use_cases.customers import find_customer_by_salesforce_id

            customer = find_customer_by_salesforce_id(session, account_id)
            customer_timezone = customer.timezone if customer else None
        return MappingContext(org_timezone=self.org_timezone, customer_timezone=customer_timezone)

    def apply_batch(self, spec: InboundSpec, records: list[dict[str, Any]], report: ObjectReport) -> None:
        records = [r for r in records if (spec.object, r.get("Id")) not in self.pulled_ahead]
        if not records:
            return
        lines = self.lines_for(spec, records)
        for record in records:
            if (spec.object, record["Id"]) in self.pulled_ahead:  # pulled ahead by a record before it
                continue
            report.fetched += 1
            self.apply_record(spec, record, lines.get(record["Id"]), report)

    def apply_record(self, spec: InboundSpec, record: dict[str, Any], lines: list[dict[str, Any]] | None,
                     report: ObjectReport) -> None:
        record_id = record["Id"]
        try:
            try:
                result = self._apply_once(spec, record, lines)
            except MissingDependencyError as missing:
                if not self.pull_dependency(spec, missing, report):
                    raise
                result = self._apply_once(spec, record, lines)
        except SalesforceError:
            raise
        except Exception as exc:  # one bad record never stops the others
            reason = describe_failure(exc)
            log.warning("pull: %s %s not applied: %s", spec.object, record_id, reason,
                        exc_info=not _is_expected(exc))
            # Waiting for a record the pull could not fetch ahead (a price "LIC in EUR") is not
            # yet a refusal: it may come with the next notification or pull.
            waiting = (isinstance(exc, MissingDependencyError)
                       and (exc.object_name, exc.reference) not in self.dependencies)
            self.record_error(spec.object, record_id, reason, waiting=waiting)
            report.failed += 1
            return
        if result.status == UNCHANGED:
            report.unchanged += 1
        elif result.status == FLAGGED:
            report.flagged += 1
        else:
            report.applied += 1

    def _apply_once(self, spec: InboundSpec, record: dict[str, Any], lines: list[dict[str, Any]] | None) -> Any:
        record_id = record["Id"]
        modstamp = parse_modstamp(record.get("SystemModstamp"))
        with transaction(self.engine) as session:
            error = _error_row(session, spec.object, record_id)
            command = apply_inbound(spec, record, self.context_for(session, spec, record), lines=lines)
            result = apply_command(session, command, object_name=spec.object, modstamp=modstamp, now=self.now,
                                   seller_country=self.seller_country)
            if error is not None:
                session.delete(error)
            clear_refusal(session, spec.object, record_id, self.now)
        return result

    def pull_dependency(self, spec: InboundSpec, missing: MissingDependencyError, report: ObjectReport) -> bool:
        """Pull, ahead of its turn, the record another one needs (a deal's Account, the deal an
        amendment references); True when it was read, so the record is worth applying again.

        Each record is pulled ahead at most once per run, and the pull skips it when its turn
        comes. This is what makes the order of a first full pull irrelevant: billsync's own
        write-back moves a won deal's SystemModstamp after its amendments'.
        """
        key = (missing.object_name, missing.reference)
        if key in self.dependencies or not _RECORD_ID.fullmatch(missing.reference or ""):
            return False
        specs = [s for s in ordered_specs(self.specs) if s.object == missing.object_name]
        if not specs:
            return False
        self.dependencies.add(key)
        for dependency in specs:
            # Counted with the object being pulled when it is the same object (an amendment's deal).
            target = report if dependency.object == spec.object else ObjectReport(dependency.object)
            self.pull_by_id(dependency, [missing.reference], target)
        self.pulled_ahead.add(key)
        return True

    # ---------------------------------------------------------- errors, deletions, reverts

    def record_error(self, object_name: str, record_id: str, reason: str, *, waiting: bool = False) -> None:
        """Keep the reason a record failed; it is a ``refused`` review (shown on the record) unless it
        only waits for another record, the first time."""
        with transaction(self.engine) as session:
            row = _error_row(session, object_name, record_id)
            if row is None:
                row = SyncRecordError(object_name=object_name, record_id=record_id, reason=reason, attempts=0,
                                      first_failed_at=self.now, last_failed_at=self.now)
            row.reason = reason
            row.attempts += 1
            row.last_failed_at = self.now
            session.add(row)
            if not waiting or row.attempts > 1:
                note_refusal(session, object_name, record_id, reason, self.now)

    def forget_error(self, object_name: str, record_id: str) -> None:
        with transaction(self.engine) as session:
            row = _error_row(session, object_name, record_id)
            if row is not None:
                session.delete(row)
            clear_refusal(session, object_name, record_id, self.now)

    def deletions(self, spec: InboundSpec, since: datetime | None, report: ObjectReport) -> None:
        template = "SELECT Id, IsDeleted, SystemModstamp FROM {:literal} WHERE IsDeleted = true"
        soql = build_soql(template + " AND SystemModstamp >= {} ORDER BY SystemModstamp, Id", spec.object, since) \
            if since is not None else build_soql(template + " ORDER BY SystemModstamp, Id", spec.object)
        for row in self.client.query_all(soql, include_deleted=True):
            self.record_deleted(spec, row, report)

    def reverts(self, spec: InboundSpec, since: datetime | None, report: ObjectReport) -> None:
        fields = "Id, SystemModstamp" + (", StageName" if spec.object == "Opportunity" else "")
        template = "SELECT {:literal} FROM {:literal} WHERE NOT ({:literal})"
        names = (fields, spec.object, spec.filter)
        soql = build_soql(template + " AND SystemModstamp >= {} ORDER BY SystemModstamp, Id", *names, since) \
            if since is not None else build_soql(template + " ORDER BY SystemModstamp, Id", *names)
        for row in self.client.query_all(soql):
            self.record_reverted(spec, row, report)

    def _mark_seen(self, session: Session, synced: SyncedRecord, state: str, modstamp: datetime | None) -> bool:
        """True the first time a pull sees this deletion or revert (pulling twice counts nothing twice)."""
        if synced.state == state or (modstamp is not None and synced.modstamp is not None
                                     and synced.modstamp > modstamp):
            return False
        synced.state = state
        if modstamp is not None:
            synced.modstamp = modstamp
        session.add(synced)
        return True

    def record_deleted(self, spec: InboundSpec, row: dict[str, Any], report: ObjectReport) -> None:
        record_id = row["Id"]
        self.forget_error(spec.object, record_id)
        with transaction(self.engine) as session:
            synced = find_synced(session, spec.object, record_id)
            if synced is None or not self._mark_seen(session, synced, "deleted",
                                                      parse_modstamp(row.get("SystemModstamp"))):
                return
            report.deleted += 1
            if synced.command in SUBSCRIPTION_COMMANDS:
                reason = (f"{spec.object} {record_id} was deleted in Salesforce after billsync applied it "
                          f"({synced.command} → subscription {synced.engine_id}); billsync keeps the "
                          "subscription: cancel or correct it by hand if the deal is really gone")
                summary = deleted_deal_summary(record_id, synced.engine_id)
            elif synced.command == "upsert_customer":
                reason = (f"Account {record_id} was deleted in Salesforce; billsync keeps customer "
                          f"{synced.engine_id} and its subscriptions and invoices")
                summary = None
            else:
                return
            if raise_review_flag(session, spec.object, record_id, "deleted", reason, synced.engine_id, self.now,
                                 summary=summary):
                report.flagged += 1

    def record_reverted(self, spec: InboundSpec, row: dict[str, Any], report: ObjectReport) -> None:
        record_id = row["Id"]
        self.forget_error(spec.object, record_id)
        with transaction(self.engine) as session:
            synced = find_synced(session, spec.object, record_id)
            if synced is None or synced.command not in SUBSCRIPTION_COMMANDS:
                return
            if not self._mark_seen(session, synced, "reverted", parse_modstamp(row.get("SystemModstamp"))):
                return
            now_is = f" (StageName is now {row['StageName']!r})" if row.get("StageName") else ""
            reason = (f"{spec.object} {record_id} no longer matches the mapping's filter ({spec.filter}){now_is}, "
                      f"but billsync already applied it ({synced.command} → subscription {synced.engine_id}); "
                      "billsync keeps the subscription: cancel or correct it by hand if the deal is off")
            if raise_review_flag(session, spec.object, record_id, "reverted", reason, synced.engine_id, self.now,
                                 summary=reverted_summary(row.get("StageName"), synced.engine_id)):
                report.flagged += 1

    # ---------------------------------------------------------- cursor

    def save_cursor(self, object_name: str, modstamp: datetime | None) -> None:
        with transaction(self.engine) as session:
            cursor = session.get(SyncCursor, object_name) or SyncCursor(object_name=object_name)
            if modstamp is not None and (cursor.last_modstamp is None or modstamp > cursor.last_modstamp):
                cursor.last_modstamp = modstamp
            session.add(cursor)

    def finish_cursor(self, report: ObjectReport, status: str, message: str | None) -> None:
        with transaction(self.engine) as session:
            cursor = session.get(SyncCursor, report.object_name) or SyncCursor(object_name=report.object_name)
            cursor.last_run_at = self.now
            cursor.last_status = status
            cursor.last_message = message
            for name in ("fetched", "applied", "unchanged", "failed", "deleted", "flagged"):
                setattr(cursor, name, getattr(report, name))
            session.add(cursor)


def _error_row(session: Session, object_name: str, record_id: str) -> SyncRecordError | None:
    return session.exec(select(SyncRecordError).where(SyncRecordError.object_name == object_name,
                                                      SyncRecordError.record_id == record_id)).first()


def _is_expected(exc: BaseException) -> bool:
    from billing_engine.errors import BillingError
    from connector.sync.apply import ApplyError
    from mappings import MappingsError

    return isinstance(exc, BillingError | ApplyError | MappingsError)


def _select_specs(specs: MappingSet, objects: Sequence[str] | None) -> list[InboundSpec]:
    ordered = ordered_specs(specs)
    if not objects:
        return ordered
    known = {s.object.lower(): s.object for s in ordered}
    unknown = [o for o in objects if o.lower() not in known]
    if unknown:
        raise PullError([f"--object {o}: no inbound mapping reads {o}; known: {', '.join(sorted(known.values()))}"
                         for o in unknown])
    wanted = {o.lower() for o in objects}
    return [s for s in ordered if s.object.lower() in wanted]


# ------------------------------------------------------------------ use cases


def pull_changes(services: Services, *, objects: Sequence[str] | None = None, full: bool = False,
                 now: datetime | None = None) -> PullReport:
    """Pull what changed in Salesforce since each object's cursor (everything with ``full``).

    Raises ``PullError`` when it cannot run (mapping problems, unknown object) and
    ``SalesforceNotConfiguredError`` / ``SalesforceAuthError`` when Salesforce refuses us.
    Record errors never raise: they are counted and kept for ``sync status``.
    """
    now = utc_now(now)
    specs = load_inbound_specs(services.settings)
    chosen = _select_specs(specs, objects)
    puller = _Puller(services, specs, now, full)
    report = PullReport(started_at=now, full=full)
    for index, spec in enumerate(chosen):
        object_report = ObjectReport(spec.object)
        report.objects.append(object_report)
        try:
            puller.pull_object(spec, object_report)
        except SalesforceLimitError as exc:
            report.paused_until = exc.resume_after
            report.pause_message = exc.message
            object_report.paused = True
            puller.finish_cursor(object_report, "paused", exc.message)
            report.objects.extend(ObjectReport(s.object, skipped=True) for s in chosen[index + 1:])
            return report
        except SalesforceAuthError:
            raise
        except SalesforceError as exc:
            object_report.error = str(exc)
            puller.finish_cursor(object_report, "failed", str(exc))
            log.warning("pull of %s failed: %s", spec.object, exc)
            continue
        puller.finish_cursor(object_report, "ok", None)
    return report


def pull_records(services: Services, object_name: str, ids: Iterable[str], *,
                 now: datetime | None = None) -> ObjectReport:
    """Apply these records of ``object_name`` by Id (one query per 200 ids), as the pull would.

    A record the mapping no longer returns is handled as deleted or reverted. Raises
    ``PullError`` for an object no inbound mapping reads, and Salesforce errors (a limit
    pause included) to the caller, who retries later.
    """
    now = utc_now(now)
    specs = load_inbound_specs(services.settings)
    matching = [s for s in ordered_specs(specs) if s.object.lower() == object_name.lower()]
    if not matching:
        raise PullError(f"no inbound mapping reads {object_name}")
    puller = _Puller(services, specs, now, full=False)
    wanted = sorted({i for i in ids if i})
    report = ObjectReport(matching[0].object)
    for spec in matching:
        puller.pull_by_id(spec, wanted, report)
    return report


# ------------------------------------------------------------------ status


@dataclass(frozen=True)
class CursorStatus:
    object_name: str
    last_modstamp: datetime | None
    last_run_at: datetime | None
    last_status: str  # never, ok, paused, failed
    last_message: str | None
    fetched: int
    applied: int
    unchanged: int
    failed: int
    deleted: int
    flagged: int


@dataclass(frozen=True)
class RecordErrorStatus:
    object_name: str
    record_id: str
    reason: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime


@dataclass(frozen=True)
class ReviewFlagStatus:
    id: int
    object_name: str
    record_id: str
    kind: str  # deleted, reverted, changed
    reason: str
    engine_id: str | None
    created_at: datetime
    noted_in_salesforce_at: datetime | None


@dataclass(frozen=True)
class PullStatus:
    cursors: list[CursorStatus]
    errors: list[RecordErrorStatus]
    flags: list[ReviewFlagStatus]  # open (unresolved) flags only


def pull_status(session: Session, *, error_limit: int | None = None) -> PullStatus:
    """Cursors per object with their last run, record errors (oldest first) and open review flags."""
    cursors = [CursorStatus(c.object_name, c.last_modstamp, c.last_run_at, c.last_status, c.last_message, c.fetched,
                            c.applied, c.unchanged, c.failed, c.deleted, c.flagged)
               for c in session.exec(select(SyncCursor)).all()]
    rank = {name: i for i, name in enumerate(OBJECT_ORDER)}
    cursors.sort(key=lambda c: (rank.get(c.object_name, len(rank)), c.object_name))
    query = select(SyncRecordError).order_by(SyncRecordError.first_failed_at, SyncRecordError.id)
    if error_limit is not None:
        query = query.limit(error_limit)
    errors = [RecordErrorStatus(e.object_name, e.record_id, e.reason, e.attempts, e.first_failed_at,
                                e.last_failed_at) for e in session.exec(query).all()]
    flags = [ReviewFlagStatus(f.id, f.object_name, f.record_id, f.kind, f.reason, f.engine_id, f.created_at,
                              f.noted_in_salesforce_at)
             for f in session.exec(select(ReviewFlag).where(ReviewFlag.resolved_at.is_(None))
                                   .order_by(ReviewFlag.created_at, ReviewFlag.id)).all()]
    return PullStatus(cursors, errors, flags)


def record_errors(session: Session, object_name: str, ids: Iterable[str]) -> dict[str, str]:
    """The current reason each of these records of ``object_name`` could not be applied (failing ones only)."""
    found: dict[str, str] = {}
    for chunk in _chunks(ids):
        found.update(session.exec(select(SyncRecordError.record_id, SyncRecordError.reason).where(
            SyncRecordError.object_name == object_name, SyncRecordError.record_id.in_(chunk))).all())
    return found


# ------------------------------------------------------------------ mappings check and preview


def check_mappings(services: Services) -> tuple[MappingSet, list[Any]]:
    """Every problem of the mapping files against the org's describe (``mappings.Problem``s, sorted)."""
    from mappings import check_specs

    specs = load_specs(services.settings.mappings_dir)
    client = services.salesforce()
    names = {o["name"] for o in client.describe_global().get("sobjects", [])}
    cache: dict[str, dict[str, Any] | None] = {}

    def describe(name: str) -> dict[str, Any] | None:
        if name not in cache:
            cache[name] = client.describe(name) if name in names else None
        return cache[name]

    return specs, check_specs(specs, describe)


@dataclass
class PreviewLine:
    kind: str
    product_code: str
    description: str
    explanation: str
    quantity: Any
    unit_price: Any
    amount: Any


@dataclass
class Preview:
    """What one Salesforce record would become; nothing is written to find out."""

    object_name: str
    record_id: str
    mapping: str = ""
    mapping_file: str = ""
    command: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)  # bad values in the record
    skipped: str | None = None  # why the mapping would not read it (filter, deleted)
    outcome: str | None = None  # what the engine would do
    outcome_error: str | None = None  # why the engine would refuse it
    dependencies: list[str] = field(default_factory=list)  # records read to preview (not pulled yet)
    invoice_title: str = ""
    invoice_lines: list[PreviewLine] = field(default_factory=list)
    invoice_totals: dict[str, Any] = field(default_factory=dict)
    currency: str | None = None
    mrr_before: Any = None
    mrr_after: Any = None
    deal: Any = None  # the engine's DealPreview
    note: str | None = None  # how the record was read (an open deal)


def _object_for_id(client: Any, record_id: str) -> str:
    prefixes = {o.get("keyPrefix"): o["name"] for o in client.describe_global().get("sobjects", [])
                if o.get("keyPrefix")}
    name = prefixes.get(record_id[:3])
    if name is None:
        raise PullError(f"{record_id}: no object in the org has the Id prefix {record_id[:3]!r}")
    return name


def preview_record(services: Services, record_id: str, *, now: datetime | None = None) -> list[Preview]:
    """What ``record_id`` would become through each inbound mapping of its object.

    Runs the engine command in a transaction that is always rolled back, so the preview
    shows exactly what a pull would do (with the invoice lines and MRR change of a deal)
    and writes nothing. Records it depends on that are not pulled yet (the Account, the
    products and prices) are read from Salesforce and applied inside the same rolled-back
    transaction.
    """
    import re

    now = utc_now(now)
    record_id = record_id.strip()
    if not re.fullmatch(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?", record_id):
        raise PullError(f"{record_id!r} is not a Salesforce record id (15 or 18 letters and digits)")
    specs = load_inbound_specs(services.settings)
    client = services.salesforce()
    object_name = _object_for_id(client, record_id)
    matching = [s for s in ordered_specs(specs) if s.object.lower() == object_name.lower()]
    if not matching:
        known = ", ".join(sorted({s.object for s in specs.inbound}))
        raise PullError(f"{record_id} is a {object_name}; no inbound mapping reads {object_name} (they read {known})")
    puller = _Puller(services, specs, now, full=True)
    return [_preview_one(puller, spec, record_id) for spec in matching]


def _preview_one(puller: _Puller, spec: InboundSpec, record_id: str) -> Preview:
    from mappings import InvalidRecordError

    client = puller.client
    preview = Preview(spec.object, record_id, spec.name, spec.file)
    records = list(client.query_all(build_soql(soql_for(spec, where="Id = {}", order_by=None), record_id)))
    if not records:  # an open deal the filter leaves out is previewed as it stands
        from connector.sync.preview import OPEN_DEAL_NOTE, read_open_deal

        spec, records = read_open_deal(puller, spec, record_id)
        preview.note = OPEN_DEAL_NOTE if records else None
    if not records:
        rows = list(client.query_all(build_soql("SELECT Id, IsDeleted FROM {:literal} WHERE Id = {}",
                                                spec.object, record_id), include_deleted=True))
        if not rows:
            raise PullError(f"no {spec.object} with Id {record_id}")
        preview.skipped = ("it is deleted" if rows[0].get("IsDeleted")
                           else f"it does not match the mapping's filter ({spec.filter})")
        return preview
    record = records[0]
    preview.record_id = record["Id"]
    lines = puller.lines_for(spec, records).get(record["Id"])
    with Session(puller.engine, expire_on_commit=False) as session:
        try:
            try:
                command = apply_inbound(spec, record, puller.context_for(session, spec, record), lines=lines)
            except InvalidRecordError as exc:
                preview.errors = [str(e) for e in exc.errors]
                return preview
            preview.command = command
            _dry_run(puller, session, spec, command, preview)
        finally:
            session.rollback()
    return preview


def _dry_run(puller: _Puller, session: Session, spec: InboundSpec, command: dict[str, Any],
             preview: Preview) -> None:
    from billing_engine.errors import BillingError
    from billing_engine.use_cases.preview import preview_subscription_change
    from connector.sync.apply import ApplyError, MissingDependencyError

    is_subscription = command["command"] in SUBSCRIPTION_COMMANDS
    for _attempt in range(30):
        try:
            with session.begin_nested():
                before = _customer_subscriptions(session, command) if is_subscription else []
                result = apply_command(session, command, object_name=spec.object, now=puller.now,
                                       seller_country=puller.seller_country)
                break
        except MissingDependencyError as missing:
            try:
                _apply_dependency(puller, session, missing, preview)
            except (ApplyError, BillingError, PullError) as exc:
                preview.outcome_error = f"{missing} — and it cannot be read for the preview: {describe_failure(exc)}"
                return
        except (ApplyError, BillingError) as exc:
            preview.outcome_error = describe_failure(exc)
            return
    else:  # pragma: no cover - a dependency chain this long means a bug
        preview.outcome_error = "too many missing records to preview"
        return
    preview.outcome = result.message
    if not is_subscription or result.engine_id is None:
        return
    day = command["data"].get("starts_on")
    if day is None:
        return
    first = command["command"] == "start_subscription"
    deal = preview_subscription_change(session, result.engine_id, before, day, first_invoice=first,
                                       default_tax_percent=puller.services.settings.default_tax_rate,
                                       seller_country=puller.seller_country)
    if deal is None:
        return
    preview.currency = deal.currency
    preview.invoice_title = ("First invoice" if first else "Charges from this change") + f" (on {day.isoformat()})"
    preview.invoice_lines.extend(PreviewLine(ln.kind, ln.product_code, ln.description, ln.explanation, ln.quantity,
                                             ln.unit_price, ln.amount) for ln in deal.lines)
    preview.invoice_totals = {"subtotal": deal.subtotal, "discount": deal.discount, "tax": deal.tax,
                              "total": deal.total, "tax_percent": deal.tax_percent, "tax_reason": deal.tax_reason}
    if deal.credit_note_total is not None:
        preview.invoice_totals["credit_note"] = deal.credit_note_total
    preview.mrr_before, preview.mrr_after = deal.mrr_before, deal.mrr_after
    preview.deal = deal


def _customer_subscriptions(session: Session, command: dict[str, Any]) -> list[Any]:
    from billing_engine.use_cases.subscriptions import subscriptions_of_account

    account_id = command["data"].get("salesforce_account_id")
    return subscriptions_of_account(session, account_id) if account_id else []


def _apply_dependency(puller: _Puller, session: Session, missing: Any, preview: Preview) -> None:
    """Read a record the preview needs from Salesforce and apply it in the (rolled-back) session."""
    from mappings import InvalidRecordError

    object_name = missing.object_name
    specs = [s for s in ordered_specs(puller.specs) if s.object == object_name]
    if not specs:
        raise PullError(f"no inbound mapping reads {object_name}")
    spec = specs[0]
    values: tuple[str, ...]
    if object_name == "PricebookEntry":
        code, _, currency = missing.reference.partition(" in ")
        where, values = "Product2.ProductCode = {} AND CurrencyIsoCode = {}", (code, currency)
    else:
        where, values = "Id = {}", (missing.reference,)
    records = list(puller.client.query_all(build_soql(soql_for(spec, where=where, order_by=None), *values)))
    if not records:
        raise PullError(f"{object_name} {missing.reference} is not in Salesforce (or not read by mapping "
                        f"{spec.name!r})")
    record = records[0]
    lines = puller.lines_for(spec, records).get(record["Id"])
    try:
        dependency = apply_inbound(spec, record, puller.context_for(session, spec, record), lines=lines)
    except InvalidRecordError as exc:
        raise PullError(f"{object_name} {record['Id']}: " + "; ".join(str(e) for e in exc.errors)) from None
    try:
        with session.begin_nested():
            apply_command(session, dependency, object_name=spec.object, now=puller.now,
                          seller_country=puller.seller_country)
    except Exception as exc:
        from connector.sync.apply import MissingDependencyError

        if isinstance(exc, MissingDependencyError):
            _apply_dependency(puller, session, exc, preview)
            with session.begin_nested():
                apply_command(session, dependency, object_name=spec.object, now=puller.now,
                              seller_country=puller.seller_country)
        else:
            raise
    preview.dependencies.append(f"{object_name} {record['Id']}")
