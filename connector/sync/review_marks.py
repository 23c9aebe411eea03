"""Delivering review marks: ``Billing_Review_Flag__c`` and ``Billing_Review_Reason__c`` on the record.

``sync_review_marks`` holds, per Salesforce record, what it should show about billsync's
open reviews (``connector.sync.review.refresh_mark`` keeps it current). It is worked as a
queue through ``connector.queue`` (``MARKS``): ``push_review_marks`` claims due rows,
maps each through the outbound mappings of the source ``opportunity_review`` or
``account_review`` (``mappings/defaults/opportunity.yaml``, ``account.yaml``), updates the
records by Id with sObject Collections (200 a call) and settles each row: done, retried
with the queue's backoff, or dead after ``queue.MAX_ATTEMPTS``. A record deleted in
Salesforce has nothing left to show: its row is done with a note.

The values are absolute (checked with its reason, or cleared), so a row sent twice, or
claimed again after its worker died, writes the same thing. A row whose content changes
while in flight goes back to pending, and the old send's settlement no longer applies to
it, so the newest content is always sent last. The push (``push_outbox``) delivers the
marks after the outbox, so the worker, the clock and ``billsync sync push`` all do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import Session, select

from connector import queue
from connector.queue import Outcome, QueueTable, Settlement
from connector.salesforce.errors import (
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceRetryableError,
)
from connector.sync.tables import ReviewFlag, ReviewMark
from mappings import InvalidRecordError, MappingsError, apply_outbound

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.push")

MARKS = QueueTable(ReviewMark.__table__,  # type: ignore[attr-defined]
                   columns=("object_name", "record_id", "flagged", "reason"),
                   claimed_by="claimed_by", claimed_at="claimed_at", settled_at="settled_at")
#: The outbound source of each object that shows reviews, and the key its engine record carries.
SOURCES = {"Opportunity": ("opportunity_review", "salesforce_opportunity_id"),
           "Account": ("account_review", "salesforce_account_id")}
COLLECTION_SIZE = 200
#: Salesforce's answers for a record that is gone: nothing is left to show the review on.
GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "INVALID_ID_FIELD", "NOT_FOUND"})


@dataclass
class MarksReport:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0
    stop_reason: str | None = None

    def line(self) -> str:
        text = (f"review marks: {self.claimed} claimed, {self.done} written, {self.retrying} to retry, "
                f"{self.dead} dead, {self.released} released")
        return f"{text} ({self.stop_reason})" if self.stop_reason else text


def review_mark_record(object_name: str, record_id: str, flagged: bool, reason: str | None) -> dict[str, Any]:
    """The engine record of the ``opportunity_review`` / ``account_review`` source."""
    _, key = SOURCES[object_name]
    return {key: record_id, "flagged": bool(flagged), "reason": reason or None}


def push_review_marks(services: Services, *, client: Any = None, specs: Any = None, worker_id: str,
                      now: datetime | None = None, batch_size: int = COLLECTION_SIZE,
                      max_batches: int | None = None) -> MarksReport:
    """Write every due review mark to Salesforce; stops at a limit pause or when Salesforce is away.

    Raises ``SalesforceAuthError`` (the claimed rows released first).
    """
    from mappings import load_specs

    client = client or services.salesforce()
    specs = specs or load_specs(services.settings.mappings_dir)
    report = MarksReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        at = now or datetime.now(UTC)
        rows = queue.claim(services.engine, MARKS, worker_id=worker_id, limit=batch_size, now=at)
        if not rows:
            break
        batches += 1
        report.claimed += len(rows)
        settlements, stop = _deliver(client, specs, rows, at)

        def noted(session: Session, settlements: list[Settlement] = settlements, rows: list[dict[str, Any]] = rows,
                  at: datetime = at) -> None:
            _noted(session, settlements, rows, at)

        counts = queue.settle(services.engine, MARKS, settlements, attempts={r["id"]: r["attempts"] for r in rows},
                              now=at, worker_id=worker_id, alongside=noted)
        report.done += counts.done
        report.retrying += counts.retrying
        report.dead += counts.dead
        report.released += counts.released
        if isinstance(stop, SalesforceAuthError):
            raise stop
        if stop is not None:
            report.stop_reason = str(stop)
            break
    return report


def _deliver(client: Any, specs: Any, rows: list[dict[str, Any]],
             now: datetime) -> tuple[list[Settlement], SalesforceError | None]:
    settlements: list[Settlement] = []
    records: list[tuple[int, dict[str, Any]]] = []  # (row id, Salesforce record)
    for row in rows:
        source, _ = SOURCES.get(row["object_name"], (None, None))
        if source is None:
            settlements.append(Settlement(row["id"], Outcome.DONE, f"{row['object_name']} does not show reviews"))
            continue
        mapped = []
        try:
            for spec in specs.outbound_for(source):
                mapped.append(apply_outbound(spec, review_mark_record(row["object_name"], row["record_id"],
                                                                      row["flagged"], row["reason"])))
        except (InvalidRecordError, MappingsError) as exc:
            settlements.append(Settlement(row["id"], Outcome.FAILED, f"mapping of {source}: {exc}"))
            continue
        if not mapped:
            settlements.append(Settlement(row["id"], Outcome.DONE, f"no outbound mapping reads {source}: not shown"))
            continue
        records.extend((row["id"], record) for record in mapped)
    errors: dict[int, list[tuple[str, bool]]] = {}
    gone: set[int] = set()
    sent: set[int] = set()
    stop: SalesforceError | None = None
    for start in range(0, len(records), COLLECTION_SIZE):
        chunk = records[start:start + COLLECTION_SIZE]
        try:
            results = client.collections_update([record for _, record in chunk], all_or_none=False)
        except (SalesforceLimitError, SalesforceRetryableError, SalesforceAuthError) as exc:
            stop = exc
            break
        except SalesforceError as exc:  # the call was refused as a whole
            for row_id, _ in chunk:
                errors.setdefault(row_id, []).append((str(exc), False))
                sent.add(row_id)
            continue
        for index, (row_id, record) in enumerate(chunk):
            sent.add(row_id)
            result = results[index] if index < len(results) else None
            if result is None:
                errors.setdefault(row_id, []).append(("no result for this record", True))
            elif not result.success:
                first = result.errors[0] if result.errors else None
                if first is not None and first.code in GONE:
                    gone.add(row_id)
                    continue
                text = (f"{record['attributes']['type']} {record.get('Id')}: {first.code}: {first.message}"
                        if first else "rejected without a reason")
                errors.setdefault(row_id, []).append((text, all(e.is_transient for e in result.errors)))
    for row in rows:
        row_id = row["id"]
        if any(s.row_id == row_id for s in settlements):
            continue
        if row_id not in sent:
            if isinstance(stop, SalesforceLimitError):
                settlements.append(Settlement(row_id, Outcome.RELEASE, retry_at=stop.resume_after))
            elif stop is None or isinstance(stop, SalesforceAuthError):
                settlements.append(Settlement(row_id, Outcome.RELEASE))
            else:
                settlements.append(Settlement(row_id, Outcome.TRANSIENT, f"Salesforce unavailable: {stop}"))
        elif row_id in errors:
            failures = errors[row_id]
            transient = all(t for _, t in failures)
            settlements.append(Settlement(row_id, Outcome.TRANSIENT if transient else Outcome.FAILED,
                                          "; ".join(m for m, _ in failures)))
        elif row_id in gone:
            settlements.append(Settlement(row_id, Outcome.DONE, "the record is gone from Salesforce: not shown"))
        else:
            settlements.append(Settlement(row_id, Outcome.DONE))
    if stop is not None and not isinstance(stop, SalesforceAuthError):
        log.warning("review marks: stopped: %s", stop)
    return settlements, stop


def _noted(session: Session, settlements: list[Settlement], rows: list[dict[str, Any]], now: datetime) -> None:
    """The open reviews of records now showing their flag are noted in Salesforce."""
    shown = {s.row_id for s in settlements if s.outcome is Outcome.DONE and not s.error}
    for row in rows:
        if row["id"] in shown and row["flagged"]:
            session.execute(update(ReviewFlag).where(
                ReviewFlag.target_object == row["object_name"], ReviewFlag.target_id == row["record_id"],
                ReviewFlag.resolved_at.is_(None), ReviewFlag.noted_in_salesforce_at.is_(None))
                .values(noted_in_salesforce_at=now))


def marks_by_status(session: Session) -> dict[str, int]:
    """Review marks per queue status (for status pages)."""
    return queue.count_by_status(session, MARKS)


def pending_marks(session: Session) -> list[ReviewMark]:
    return list(session.exec(select(ReviewMark).where(ReviewMark.status != "done").order_by(ReviewMark.id)).all())


__all__ = ["MARKS", "SOURCES", "MarksReport", "marks_by_status", "pending_marks", "push_review_marks",
           "review_mark_record"]
