"""The outbox as a queue: the delivery side of ``billing_engine.outbox``.

The claim, lease, settle and backoff rules are ``connector.queue``'s; this module says
which outbox columns play which part (``OUTBOX``) and adds what only the outbox has.
A push works in two short transactions around the Salesforce calls:

1. ``claim_rows``: due rows (``pending`` with ``next_attempt_at`` empty or past, or
   ``in_flight`` whose lease ran out because its worker died), oldest id first, are
   marked ``in_flight`` with ``locked_by``/``locked_at`` and committed.
2. ``settle_rows``: each row becomes ``done`` (with the Salesforce id of its main record),
   goes back to ``pending`` with a backoff (``attempts`` counted for record errors), or
   ``dead`` after ``queue.MAX_ATTEMPTS``; in the same transaction, the Salesforce ids of the
   invoices, payments, credit notes and refunds the push wrote are kept on the engine's
   records. Nothing is deleted.

Rows of one customer are never in flight in two workers at once (``ordering_key``, the
queue's group key): a push reads the engine's current state, so two workers pushing the
same customer could land an older read after a newer one. Snapshot rows coalesce on
``coalesce_key``: one that would go back to pending while a newer one of the same key
is pending is done as superseded.

A row in flight in a worker that was killed is simply claimed again after the lease,
without counting an attempt: every push is an upsert by external id or an update by Id
with absolute values, so sending it twice is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import Session

from billing_engine.use_cases.exports import PUSHED_KINDS, outbox_table, record_salesforce_ids
from connector import queue
from connector.queue import PENDING, SettleCounts, utc


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    topic: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    attempts: int
    coalesce_key: str | None


@dataclass(frozen=True)
class Settlement(queue.Settlement):
    """What became of one claimed row (``queue.Outcome``); ``result`` is the Salesforce id of
    its main record when done."""

    @property
    def salesforce_id(self) -> str | None:
        return self.result


@dataclass(frozen=True)
class OutboxLetter:
    """A row shown by ``billsync sync status``: dead, or failed and waiting for its retry."""

    id: int
    topic: str
    aggregate_type: str
    aggregate_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None


def ordering_key(aggregate_type: str, aggregate_id: str, payload: dict[str, Any]) -> str:
    """Rows sharing this key are pushed by one worker at a time: the customer, else the aggregate."""
    customer = payload.get("customer_id") if isinstance(payload, dict) else None
    if customer:
        return f"customer:{customer}"
    if aggregate_type == "customer":
        return f"customer:{aggregate_id}"
    return f"{aggregate_type}:{aggregate_id}"


def _payload(text_value: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text_value or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _group(row: Mapping[str, Any]) -> str:
    return ordering_key(row["aggregate_type"], row["aggregate_id"], _payload(row["payload"]))


OUTBOX = queue.QueueTable(
    outbox_table(),
    columns=("topic", "aggregate_type", "aggregate_id", "payload", "coalesce_key"),
    lease=queue.DEFAULT_LEASE,
    claimed_by="locked_by",
    claimed_at="locked_at",
    result="salesforce_id",
    coalesce_key="coalesce_key",
    group_columns=("aggregate_type", "aggregate_id", "payload"),
    group_key=_group,
)
_T = OUTBOX.table


def claim_rows(engine: Any, *, worker_id: str, limit: int, now: datetime,
               lease: timedelta = OUTBOX.lease) -> list[ClaimedRow]:
    """Claim up to ``limit`` due rows for ``worker_id`` (committed before returning)."""
    return [ClaimedRow(r["id"], r["topic"], r["aggregate_type"], r["aggregate_id"], _payload(r["payload"]),
                       r["attempts"], r["coalesce_key"])
            for r in queue.claim(engine, OUTBOX, worker_id=worker_id, limit=limit, now=now, lease=lease)]


def settle_rows(engine: Any, settlements: Sequence[queue.Settlement], *, worker_id: str, now: datetime,
                claimed: dict[int, ClaimedRow],
                salesforce_ids: Mapping[str, Mapping[int, str]] | None = None) -> SettleCounts:
    """Record what became of claimed rows, in one transaction, with the Salesforce ids of the records
    pushed (``salesforce_ids``: kind → engine id → Salesforce id, kinds of ``PUSHED_KINDS``) kept."""
    return queue.settle(engine, OUTBOX, settlements, attempts={i: r.attempts for i, r in claimed.items()},
                        coalesce_keys={i: r.coalesce_key for i, r in claimed.items()}, now=now,
                        worker_id=worker_id,
                        alongside=lambda session: _write_back_salesforce_ids(session, salesforce_ids or {}))


def _write_back_salesforce_ids(session: Session, salesforce_ids: Mapping[str, Mapping[int, str]]) -> None:
    """Store on the engine's invoices, payments, credit notes and refunds the Salesforce ids their push returned."""
    for kind in PUSHED_KINDS:
        if salesforce_ids.get(kind):
            record_salesforce_ids(session, kind, dict(salesforce_ids[kind]))


# ---------------------------------------------------------------- dead letters and status


def retry_dead_letters(session: Session, ids: Sequence[int] | None = None) -> int:
    """Re-queue dead rows, and pending rows backing off after record errors, now (attempts reset;
    the last error stays visible until the row is delivered).

    ``ids`` limits it to those rows. A snapshot row whose customer already has a newer
    pending row is marked done as superseded instead (that row pushes the current state).
    The caller commits. Returns how many rows were re-queued.
    """
    return queue.requeue(session, OUTBOX, ids=ids)


def outbox_counts(session: Session) -> dict[str, int]:
    """Rows per status (every status present, zeros included), plus ``failing``: pending after an error."""
    counts = queue.count_by_status(session, OUTBOX)
    counts["failing"] = session.execute(select(func.count()).select_from(_T).where(
        _T.c.status == PENDING, _T.c.last_error.is_not(None))).scalar_one()
    return counts


def outbox_letters(session: Session, *, status: str, limit: int | None = 50,
                   after_id: int | None = None) -> list[OutboxLetter]:
    """Dead rows (``status="dead"``) or failing ones (``status="failing"``), oldest first, after
    ``after_id`` (a page of at most ``limit``)."""
    if status == "failing":
        where = and_(_T.c.status == PENDING, _T.c.last_error.is_not(None))
    else:
        where = _T.c.status == status
    if after_id is not None:
        where = and_(where, _T.c.id > after_id)
    query = select(_T).where(where).order_by(_T.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [OutboxLetter(r.id, r.topic, r.aggregate_type, r.aggregate_id, r.status, r.attempts, r.last_error,
                         utc(r.next_attempt_at), utc(r.created_at)) for r in session.execute(query).all()]


def unsent(row: ClaimedRow, stop: Any, now: datetime) -> Settlement:
    """What becomes of a claimed row the push did not send because Salesforce stopped it (``stop``,
    a ``SalesforceError``; None: the push stopped for another reason): released until a limit
    pause ends, released at once after an auth failure, else retried soon."""
    from connector.queue import TRANSIENT_DELAY, Outcome
    from connector.salesforce.errors import SalesforceAuthError, SalesforceLimitError

    if isinstance(stop, SalesforceLimitError):
        return Settlement(row.id, Outcome.RELEASE, retry_at=stop.resume_after)
    if isinstance(stop, SalesforceAuthError) or stop is None:
        return Settlement(row.id, Outcome.RELEASE)
    return Settlement(row.id, Outcome.TRANSIENT, f"Salesforce unavailable: {stop}", retry_at=now + TRANSIENT_DELAY)
