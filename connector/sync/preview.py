"""Open deals: what they would bill, written on the Opportunity; never a subscription.

A subscription mapping with a ``filter`` (the default: ``IsWon = true``) turns won deals
into subscriptions. The open deals it filters out (``IsClosed = false``, in the stages of
``PREVIEW_STAGES`` when it lists some) are read by the same pull, through the **same**
mapping without its filter (``open_deal_spec``), and previewed:

1. **pull** (``preview_open_deals``, called by ``pull.pull_object``): the open deals changed
   since the cursor are mapped like won ones and dry-run through the engine (``pull._dry_run``:
   the command is applied in a transaction that is rolled back, and the engine's
   ``preview_subscription_change`` says what the first invoice and the MRR would be). The
   figures (first invoice total, the MRR and ARR the deal adds, a one-line note, and the
   invoice's lines with how each was computed, as JSON: ``preview_lines``) are kept in
   ``sync_deal_previews``, with a hash; a deal whose figures did not change is left
   alone. A deal with no line is not previewed (unless it was before: its preview is
   cleared). Nothing else is written to the database.
2. **push** (``push_deal_previews``, called at the end of ``push.push_outbox``): the
   previews whose figures differ from the last ones written are sent through the outbound
   mappings of the ``deal_preview`` record (the default updates the Opportunity by Id),
   200 per sObject Collections call. A refused record is retried with a growing delay.

billsync's own write moves the Opportunity's ``SystemModstamp``: the next pull reads the
deal again, finds the same figures and sends nothing, so there is no write loop. A line
change moves it too (Salesforce recalculates the deal's roll-ups), which is how a change
reaches the preview within one pull interval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Text, or_
from sqlmodel import Field, Session, SQLModel, select

from connector.database import transaction
from connector.salesforce.errors import SalesforceAuthError, SalesforceError, SalesforceLimitError
from connector.salesforce.soql import build_soql
from connector.sync.apply import SUBSCRIPTION_COMMANDS, describe_failure, find_synced
from connector.sync.tables import RECORD_ID_LENGTH, UtcDateTime
from mappings import InboundSpec, InvalidRecordError, MappingsError, apply_inbound, apply_outbound, soql_for

if TYPE_CHECKING:
    from connector.settings import PreviewStages
    from connector.sync.pull import _Puller
    from connector.wiring import Services

log = logging.getLogger("billsync.preview")

SOURCE = "deal_preview"
NOTE_LENGTH = 255
LINES_LENGTH = 32768  # Billsync_Preview_Lines__c, a long text area
WRITE_BATCH = 1000  # previews read per push round
COLLECTION_SIZE = 200
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)
OPEN_DEAL_NOTE = ("an open deal: previewed as if it closed as it stands (PREVIEW_STAGES); "
                  "nothing is created until it is won")


class DealPreviewRow(SQLModel, table=True):
    """The last preview of an open deal, and what of it was written to Salesforce."""

    __tablename__ = "sync_deal_previews"

    opportunity_id: str = Field(primary_key=True, max_length=RECORD_ID_LENGTH)
    currency: str | None = Field(default=None, max_length=3)
    total: str | None = Field(default=None, max_length=40)  # exact decimals, as text
    mrr: str | None = Field(default=None, max_length=40)
    arr: str | None = Field(default=None, max_length=40)
    note: str = Field(sa_column=Column(Text, nullable=False))
    lines: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON, see preview_lines
    values_hash: str = Field(max_length=64)
    previewed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))  # when the figures changed
    written_hash: str | None = Field(default=None, max_length=64)  # the figures last written to Salesforce
    written_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    attempts: int = Field(default=0)  # failed writes since the last success
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


@dataclass(frozen=True)
class Figures:
    """What one open deal would bill; the amounts and lines are None when it cannot be previewed."""

    currency: str | None
    total: Decimal | None
    mrr: Decimal | None
    arr: Decimal | None
    note: str
    lines: str | None = None  # the first invoice's lines as JSON (``preview_lines``)

    @property
    def values_hash(self) -> str:
        text = json.dumps([self.currency, _text(self.total), _text(self.mrr), _text(self.arr), self.note,
                           self.lines])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class PreviewReport:
    read: int = 0
    changed: int = 0  # new figures to write
    written: int = 0
    failed: int = 0


# ------------------------------------------------------------------ which deals


def open_deal_spec(spec: InboundSpec, stages: PreviewStages) -> InboundSpec | None:
    """``spec`` reading the open deals its filter leaves out, or None when it previews nothing:
    not an Opportunity subscription mapping, no filter (it reads every deal), or previews off."""
    if (not stages.enabled or spec.object != "Opportunity" or not spec.filter
            or not any(c in SUBSCRIPTION_COMMANDS for c in spec.commands)):
        return None
    condition = f"IsClosed = false AND NOT ({spec.filter})"
    if stages.stages:
        condition += " AND " + build_soql("StageName IN {}", list(stages.stages))
    return dataclasses.replace(spec, filter=condition)


def read_open_deal(puller: _Puller, spec: InboundSpec, record_id: str) -> tuple[InboundSpec, list[dict[str, Any]]]:
    """``record_id`` read as an open deal to preview (for ``billsync mappings preview``): the
    spec that reads it and the record, or ``(spec, [])`` when it is not one."""
    open_spec = open_deal_spec(spec, puller.services.settings.preview_stages)
    if open_spec is None:
        return spec, []
    soql = build_soql(soql_for(open_spec, where="Id = {}", order_by=None), record_id)
    records = list(puller.client.query_all(soql))
    return (open_spec, records) if records else (spec, [])


# ------------------------------------------------------------------ pull: compute and keep


def preview_open_deals(puller: _Puller, spec: InboundSpec, since: datetime | None) -> datetime | None:
    """Preview the open deals changed since ``since`` (all with None); the highest SystemModstamp read."""
    from connector.sync.pull import _chunks, parse_modstamp

    open_spec = open_deal_spec(spec, puller.services.settings.preview_stages)
    if open_spec is None:
        return None
    if since is None:
        soql = build_soql(soql_for(open_spec, order_by="SystemModstamp, Id"))
    else:
        soql = build_soql(soql_for(open_spec, where="SystemModstamp >= {}", order_by="SystemModstamp, Id"), since)
    report = PreviewReport()
    highest: datetime | None = None
    seen: set[str] = set()
    for batch in _chunks(puller.client.query_all(soql)):
        records = [r for r in batch if r.get("Id") not in seen]
        seen.update(r["Id"] for r in records)
        lines = puller.lines_for(open_spec, records)
        for record in records:
            report.read += 1
            try:
                figures = deal_figures(puller, open_spec, record, lines.get(record["Id"]))
                if keep_figures(puller.engine, record["Id"], figures, puller.now):
                    report.changed += 1
            except SalesforceError:
                raise  # a limit pause or an outage stops the pull; the cursor has not moved past the deal
            except Exception:  # one deal never stops the pull
                log.exception("pull: open deal %s cannot be previewed", record["Id"])
            stamp = parse_modstamp(record.get("SystemModstamp"))
            if stamp is not None and (highest is None or stamp > highest):
                highest = stamp
    if report.read:
        log.info("pull: previewed %s open deal(s), %s with new figures", report.read, report.changed)
    return highest


def deal_figures(puller: _Puller, spec: InboundSpec, record: dict[str, Any],
                 lines: list[dict[str, Any]] | None) -> Figures | None:
    """What the deal would bill, from a dry run of its command; ``NOTHING`` when it has no line;
    None when it is not billsync's to preview (a reopened deal that produced a subscription)."""
    from connector.sync.pull import Preview, _dry_run

    with Session(puller.engine, expire_on_commit=False) as session:
        try:
            synced = find_synced(session, spec.object, record["Id"])
            if synced is not None and synced.command in SUBSCRIPTION_COMMANDS:
                return None  # a won deal reopened: its subscription exists; review flags cover it
            try:
                command = apply_inbound(spec, record, puller.context_for(session, spec, record), lines=lines)
            except InvalidRecordError as exc:
                if not _has_lines(spec, record, lines):
                    return NOTHING
                return _cannot("; ".join(f"{e.field}: {e.reason}" for e in exc.errors))
            if not command["data"].get("items"):
                return NOTHING
            preview = Preview(spec.object, record["Id"], spec.name, spec.file)
            try:
                _dry_run(puller, session, spec, command, preview)
            except SalesforceError:
                raise
            except Exception as exc:  # one deal never stops the pull
                log.warning("pull: open deal %s cannot be previewed: %s", record["Id"], describe_failure(exc),
                            exc_info=not isinstance(exc, MappingsError))
                return _cannot(describe_failure(exc))
        finally:
            session.rollback()
    if preview.outcome_error:
        return _cannot(preview.outcome_error)
    deal = preview.deal
    if deal is None:
        return _cannot("the billing engine returned no invoice for it")
    listed, left_out = preview_lines(deal)
    labels = {a.name: a.label("en") for a in spec.attributes}
    attributes = [(labels.get(name, name), value) for name, value in getattr(deal, "attributes", ())]
    return Figures(deal.currency, deal.total, deal.deal_mrr, deal.deal_arr,
                   _note(command["command"], command["data"].get("starts_on"), deal, left_out, attributes), listed)


def keep_figures(engine: Any, opportunity_id: str, figures: Figures | None, now: datetime) -> bool:
    """Store the deal's figures; True when they differ from the stored ones (to be written).
    A deal without lines is only stored when it had a preview before (which it clears)."""
    if figures is None:
        return False
    with transaction(engine) as session:
        row = session.get(DealPreviewRow, opportunity_id)
        if figures is NOTHING and row is None:
            return False
        digest = figures.values_hash
        if row is not None and row.values_hash == digest:
            return False
        row = row or DealPreviewRow(opportunity_id=opportunity_id, note="", values_hash="", previewed_at=now)
        row.currency, row.note, row.values_hash, row.previewed_at = figures.currency, figures.note, digest, now
        row.total, row.mrr, row.arr = _text(figures.total), _text(figures.mrr), _text(figures.arr)
        row.lines = figures.lines
        row.attempts, row.last_error, row.next_attempt_at = 0, None, None
        session.add(row)
        return True


NOTHING = Figures(None, None, None, None, "No billsync preview: the deal has no products.")


def _has_lines(spec: InboundSpec, record: dict[str, Any], lines: list[dict[str, Any]] | None) -> bool:
    if lines:
        return True
    for source in spec.lines.sources if spec.lines else []:
        if source.relationship:
            child = record.get(source.relationship)
            if isinstance(child, dict) and child.get("records"):
                return True
    return False


def _cannot(reason: str) -> Figures:
    return Figures(None, None, None, None, _cut(f"No billsync preview: {reason}"))


def preview_lines(deal: Any) -> tuple[str, int]:
    """The invoice's lines as ``Billsync_Preview_Lines__c`` holds them, and how many were left out.

    A JSON list with one object per line, in the invoice's order::

        [{"description": "Licences", "quantity": "12", "amount": "1950.00", "currency": "EUR",
          "explanation": "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100"}]

    ``amount`` is the line's net amount before tax (negative for a credit) and ``quantity``
    a decimal, both as strings, never JSON numbers. The text fits ``LINES_LENGTH``
    characters (counted in UTF-16 code units, never fewer than Salesforce counts): when the
    lines do not fit, the last whole lines are left out, and the note says how many.
    """
    entries = [json.dumps({"description": line.description, "quantity": _quantity(line.quantity),
                           "amount": format(line.amount, "f"), "currency": deal.currency,
                           "explanation": line.explanation}, ensure_ascii=False, separators=(",", ":"))
               for line in deal.lines]
    kept: list[str] = []
    size = 2  # the brackets
    for entry in entries:
        grown = size + _utf16_length(entry) + (1 if kept else 0)
        if grown > LINES_LENGTH:
            break
        kept.append(entry)
        size = grown
    return "[" + ",".join(kept) + "]", len(entries) - len(kept)


def _quantity(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")  # 12, 12.5: no exponent, no trailing zeros


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _note(command: str, day: Any, deal: Any, left_out: int = 0,
          attributes: list[tuple[str, str]] | None = None) -> str:
    """One line a rep can read, e.g. "First invoice on 2026-06-01: 3,174.00 EUR (2,645.00 + tax 529.00).
    Adds MRR 2,645.00 EUR, ARR 31,740.00 EUR. By billsync; billed once won. Cost centre: CC-42." """
    what = "First invoice" if command == "start_subscription" else "Charges of this change"
    on = f" on {day.isoformat()}" if day is not None else ""
    money = f"{_amount(deal.total)} {deal.currency}"
    if deal.tax:
        money += f" ({_amount(deal.total - deal.tax)} + tax {_amount(deal.tax)})"
    if deal.credit_note_total is not None:
        money += f", credit note {_amount(deal.credit_note_total)}"
    sign = "+" if deal.deal_mrr >= 0 else ""
    text = (f"{what}{on}: {money}. MRR {sign}{_amount(deal.deal_mrr)} {deal.currency}, "
            f"ARR {sign}{_amount(deal.deal_arr)} {deal.currency}. By billsync; billed once won.")
    for label, value in attributes or ():
        text += f" {label}: {value}."
    if left_out:
        listed = len(deal.lines) - left_out
        text = f"Only {listed} of {len(deal.lines)} lines listed (the lines field is full). " + text
    return _cut(text)


def _amount(value: Decimal) -> str:
    return f"{value:,}"


def _cut(text: str) -> str:
    return text if len(text) <= NOTE_LENGTH else text[:NOTE_LENGTH - 1] + "…"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# ------------------------------------------------------------------ push: write what changed


def push_deal_previews(services: Services, client: Any, specs: Any, now: datetime) -> PreviewReport:
    """Write every preview whose figures changed since the last write (failed ones when due).

    Raises ``SalesforceAuthError``; a limit or an unavailable Salesforce stops quietly (the
    rows stay to write, and the next push tries again).
    """
    report = PreviewReport()
    outbound = list(specs.outbound_for(SOURCE))
    with Session(services.engine) as session:
        rows = session.exec(select(DealPreviewRow).where(
            or_(DealPreviewRow.written_hash.is_(None), DealPreviewRow.written_hash != DealPreviewRow.values_hash),
            or_(DealPreviewRow.next_attempt_at.is_(None), DealPreviewRow.next_attempt_at <= now))
            .order_by(DealPreviewRow.previewed_at, DealPreviewRow.opportunity_id).limit(WRITE_BATCH)).all()
        session.expunge_all()
    if not rows:
        return report
    report.read = len(rows)
    outcomes: dict[str, str | None] = {}  # opportunity id → None (written) or the reason it was not
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for row in rows:
        record = engine_record(row)
        for spec in outbound:
            try:
                sf_record = apply_outbound(spec, record)
            except MappingsError as exc:
                outcomes[row.opportunity_id] = f"mapping {spec.name!r}: {exc}"
                break
            groups.setdefault((spec.object, spec.key.name), []).append((row.opportunity_id, sf_record))
    try:
        for (object_name, key_field), members in groups.items():
            for start in range(0, len(members), COLLECTION_SIZE):
                chunk = members[start:start + COLLECTION_SIZE]
                _send(client, object_name, key_field, chunk, outcomes)
    except SalesforceAuthError:
        raise
    except (SalesforceLimitError, SalesforceError) as exc:
        log.warning("push: deal previews stopped: %s", exc)
    sent = {row.opportunity_id: row.values_hash for row in rows}
    with transaction(services.engine) as session:
        for opportunity_id, error in outcomes.items():
            row = session.get(DealPreviewRow, opportunity_id)
            if row is None:
                continue
            if error is None:
                row.written_hash, row.written_at = sent[opportunity_id], now
                row.attempts, row.last_error, row.next_attempt_at = 0, None, None
                report.written += 1
            else:
                row.attempts += 1
                row.last_error = error
                row.next_attempt_at = now + min(RETRY_FIRST * 2 ** (row.attempts - 1), RETRY_MAX)
                report.failed += 1
            session.add(row)
        if not outbound:  # previews switched off in the mappings: nothing to deliver
            for row in rows:
                kept = session.get(DealPreviewRow, row.opportunity_id)
                if kept is not None:
                    kept.written_hash, kept.written_at = row.values_hash, now
                    session.add(kept)
    if report.written or report.failed:
        log.info("push: %s deal preview(s) written, %s failed", report.written, report.failed)
    return report


def engine_record(row: DealPreviewRow) -> dict[str, Any]:
    """The ``deal_preview`` record the outbound mappings read (docs/mappings.md, "Engine records")."""
    return {
        "salesforce_opportunity_id": row.opportunity_id,
        "currency": row.currency,
        "total": None if row.total is None else Decimal(row.total),
        "mrr": None if row.mrr is None else Decimal(row.mrr),
        "arr": None if row.arr is None else Decimal(row.arr),
        "note": row.note,
        "lines": row.lines,
        "previewed_at": row.previewed_at,
    }


def _send(client: Any, object_name: str, key_field: str, chunk: list[tuple[str, dict[str, Any]]],
          outcomes: dict[str, str | None]) -> None:
    records = [record for _, record in chunk]
    if key_field == "Id":
        results = client.collections_update(records)
    else:
        results = client.collections_upsert(object_name, key_field, records)
    for index, (opportunity_id, _) in enumerate(chunk):
        result = results[index] if index < len(results) else None
        if outcomes.get(opportunity_id, None) is not None:
            continue  # an earlier mapping of this preview failed already
        if result is not None and result.success:
            outcomes[opportunity_id] = None
        elif result is not None and result.errors:
            first = result.errors[0]
            outcomes[opportunity_id] = f"{object_name} {opportunity_id}: {first.code}: {first.message}"
        else:
            outcomes[opportunity_id] = f"{object_name} {opportunity_id}: no result for this record"
