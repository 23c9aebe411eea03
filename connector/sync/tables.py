"""Tables of the pull (Salesforce → engine): cursors, applied records, record errors, review flags.

- ``sync_cursors``: one row per Salesforce object: the highest ``SystemModstamp`` pulled
  (the next incremental pull reads from it minus an overlap window) and the last run's
  counts and outcome, for ``billsync sync status``.
- ``sync_records``: one row per (object, record Id) billsync applied: the record's
  ``SystemModstamp`` and a hash of the engine command it became, so pulling the same
  data twice changes nothing; ``engine_id`` names what it produced (customer, product,
  price or subscription id), ``command_json`` keeps the command (a price is derived from
  its product's command), ``parent_id`` the related record (a price's Product2 Id);
  ``state`` is ``deleted`` or ``reverted`` once a pull saw that happen in Salesforce, so
  a deletion is counted (and flagged) once.
- ``sync_record_errors``: one row per record that could not be applied, with the
  reason; the next pull tries it again by Id, and a success deletes the row.
- ``sync_review_flags``: a won deal that already produced a subscription and was then
  deleted, reverted or changed in Salesforce, or an Opportunity or Account billsync
  refuses to apply (``refused``, open while its record error lasts). billsync never
  undoes a subscription on its own; a person decides (``billsync review``). ``summary``
  is the plain-language reason a rep reads on ``target_object``/``target_id`` (the
  record itself, the Account of a deleted deal, or nothing for a deleted Account);
  ``noted_in_salesforce_at`` is set by the push once the flag is shown there;
  ``resolved_at``, ``resolution`` (keep, cancel, reapply, applied) and
  ``resolution_note`` when it is settled.
- ``sync_review_marks``: what one Salesforce record should show (``Billing_Review_Flag__c``
  and ``Billing_Review_Reason__c``): one row per record, worked as a queue
  (``connector.queue``) by the push. A change of what it should show puts the row back
  to pending; the push writes the absolute values by Id, so sending twice is harmless.

And of the push and the reconciliation:

- ``sync_job_runs``: one row per job (``push``): when it last finished delivering something,
  and what it did, for the sync status.
- ``reconcile_runs``: a reconciliation asked through the API: its month, who asked and when,
  whether both sides agreed, and its full result (totals, mismatches, repair) as JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

OBJECT_NAME_LENGTH = 80
RECORD_ID_LENGTH = 18
REVIEW_KINDS = ("deleted", "reverted", "changed", "refused")
REVIEW_RESOLUTIONS = ("keep", "cancel", "reapply", "applied")


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both backends (SQLite otherwise returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store naive datetime {value.isoformat()}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _at(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable))


def _text(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(Text, nullable=nullable))


class SyncCursor(SQLModel, table=True):
    """Where the incremental pull of one Salesforce object stands, and how its last run went."""

    __tablename__ = "sync_cursors"

    object_name: str = Field(primary_key=True, max_length=OBJECT_NAME_LENGTH)
    last_modstamp: datetime | None = _at()
    last_run_at: datetime | None = _at()
    last_status: str = Field(default="never", max_length=16)  # ok, paused, failed
    last_message: str | None = _text()
    fetched: int = Field(default=0)
    applied: int = Field(default=0)
    unchanged: int = Field(default=0)
    failed: int = Field(default=0)
    deleted: int = Field(default=0)
    flagged: int = Field(default=0)


class SyncedRecord(SQLModel, table=True):
    """A Salesforce record billsync applied, and what it became."""

    __tablename__ = "sync_records"

    object_name: str = Field(primary_key=True, max_length=OBJECT_NAME_LENGTH)
    record_id: str = Field(primary_key=True, max_length=RECORD_ID_LENGTH)
    command: str = Field(max_length=40)
    command_hash: str = Field(max_length=64)
    command_json: str = Field(sa_column=Column(Text, nullable=False))
    engine_id: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=RECORD_ID_LENGTH, index=True)
    modstamp: datetime | None = _at()
    state: str = Field(default="applied", max_length=16)  # applied, deleted, reverted (in Salesforce)
    applied_at: datetime = _at(nullable=False)


class SyncRecordError(SQLModel, table=True):
    """A record that could not be applied; retried by Id on every pull until it succeeds."""

    __tablename__ = "sync_record_errors"
    __table_args__ = (UniqueConstraint("object_name", "record_id", name="uq_sync_record_errors_record"),)

    id: int | None = Field(default=None, primary_key=True)
    object_name: str = Field(max_length=OBJECT_NAME_LENGTH)
    record_id: str = Field(max_length=RECORD_ID_LENGTH)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = Field(default=1)
    first_failed_at: datetime = _at(nullable=False)
    last_failed_at: datetime = _at(nullable=False)


class ReviewFlag(SQLModel, table=True):
    """A won deal whose subscription a person must look at (billsync never undoes it alone)."""

    __tablename__ = "sync_review_flags"
    __table_args__ = (UniqueConstraint("object_name", "record_id", "kind", name="uq_sync_review_flags_record_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    object_name: str = Field(max_length=OBJECT_NAME_LENGTH)
    record_id: str = Field(max_length=RECORD_ID_LENGTH)
    kind: str = Field(max_length=16)  # REVIEW_KINDS
    reason: str = Field(sa_column=Column(Text, nullable=False))
    engine_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = _at(nullable=False)
    noted_in_salesforce_at: datetime | None = _at()
    resolved_at: datetime | None = _at()
    summary: str | None = _text()  # what a rep reads in Salesforce
    target_object: str | None = Field(default=None, max_length=OBJECT_NAME_LENGTH)
    target_id: str | None = Field(default=None, max_length=RECORD_ID_LENGTH, index=True)
    resolution: str | None = Field(default=None, max_length=16)  # REVIEW_RESOLUTIONS
    resolution_note: str | None = _text()


class ReviewMark(SQLModel, table=True):
    """What one Salesforce record should show about billsync's reviews, and its delivery (a queue row)."""

    __tablename__ = "sync_review_marks"
    __table_args__ = (UniqueConstraint("object_name", "record_id", name="uq_sync_review_marks_record"),)

    id: int | None = Field(default=None, primary_key=True)
    object_name: str = Field(max_length=OBJECT_NAME_LENGTH)
    record_id: str = Field(max_length=RECORD_ID_LENGTH)
    flagged: bool = Field(sa_column=Column(Boolean, nullable=False))
    reason: str | None = _text()
    changed_at: datetime = _at(nullable=False)
    status: str = Field(default="pending", max_length=16, index=True)  # pending, in_flight, done, dead
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = _at()
    last_error: str | None = _text()
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_at: datetime | None = _at()
    settled_at: datetime | None = _at()


class SyncJobRun(SQLModel, table=True):
    """The last run of a sync job that delivered something: when it finished, and what it did."""

    __tablename__ = "sync_job_runs"

    job: str = Field(primary_key=True, max_length=40)
    finished_at: datetime = _at(nullable=False)
    summary: str = Field(sa_column=Column(Text, nullable=False))


class ReconcileRun(SQLModel, table=True):
    """One reconciliation of a month (with every Account summary), as it was when it ran."""

    __tablename__ = "reconcile_runs"

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=7)  # YYYY-MM
    requested_at: datetime = _at(nullable=False)
    requested_by: str = Field(max_length=200)
    agrees: bool = Field(sa_column=Column(Boolean, nullable=False))
    engine_records: int = Field(default=0)
    salesforce_records: int = Field(default=0)
    mismatches: int = Field(default=0)
    result_json: str = Field(sa_column=Column(Text, nullable=False))
