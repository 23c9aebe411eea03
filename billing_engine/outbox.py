"""Events for the outside world: the outbox contract (pure part).

Every engine change Salesforce must hear about is written as one row of the
``outbox`` table (``billing_engine.storage.outbox``, written by ``add_events`` only)
**in the same transaction as the change**: the engine use cases take a session and
the caller commits, so a row exists if and only if its change does. An event is
built by ``new_event`` (topic, aggregate, payload, when it happened).

Row contract (read by the connector's push, docs/architecture.md §4 How data flows):

- ``topic``: one of ``TOPICS`` (``invoice.finalized``, ``invoice.status_changed``,
  ``invoice.overdue``, ``invoice.reminded``, ``credit_note.issued``, ``payment.recorded``, ``payment.refunded``,
  ``customer.summary_changed``, ``subscription.created``, ``subscription.changed``,
  ``document.stored``: an invoice's or credit note's PDF was stored, to attach it in Salesforce;
  ``subscription.self_service_changed``: a customer changed or cancelled a subscription in the
  portal, recorded in Salesforce as a won deal; ``customer.sales_requested``: a customer wrote to
  sales from the portal, a task for the Account's owner; ``customer.billing_details_changed``: a
  customer edited their billing address or VAT number in the portal, written to the Account);
- ``aggregate_type`` / ``aggregate_id``: what the row is about (``invoice`` 42);
  the push upserts by an external id derived from them, so re-sending is safe;
- ``payload``: JSON text; exact decimals are **strings** ("1234.50"), dates ISO
  ``YYYY-MM-DD``, datetimes ISO with offset; never a float;
- ``created_at``: when the change happened (from the injected clock);
- delivery columns, owned by the connector: ``status`` (pending → in_flight →
  done | dead; back to pending to retry), ``attempts``, ``next_attempt_at``,
  ``last_error``, ``salesforce_id``, ``locked_by``/``locked_at``. Workers claim
  rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, oldest id first.

Ordering: rows of one aggregate are delivered in id order.

One fact, one event: ``customer.summary_changed`` is the only event that makes the
push write a customer's Account summary (MRR, ARR, balance, credit, status), and with it
the status of the customer's subscriptions on their deals; every change that moves one
of those figures writes it (a new subscription, an amendment, an invoice, a payment, an
MRR change the bill run sees take effect, such as a cancellation reaching its end date).

Coalescing: ``customer.summary_changed`` is a snapshot (the push reads the current
figures), so one *pending* row per customer is enough: a new change rewrites the
payload of the pending row instead of adding one (``coalesce_key``). ``subscription.created`` happens once per
subscription, so it is keyed the same way: a second write of it while the first is
pending (the engine writes it in ``start_subscription``; a caller may write it too)
merges into one row. All other topics are one row per event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from billing_engine.errors import InvalidInputError

INVOICE_FINALIZED = "invoice.finalized"
INVOICE_STATUS_CHANGED = "invoice.status_changed"
#: An open invoice passed its due date unpaid (its payment status is now ``overdue``).
INVOICE_OVERDUE = "invoice.overdue"
#: A dunning step (a reminder) was sent for an invoice.
INVOICE_REMINDED = "invoice.reminded"
CREDIT_NOTE_ISSUED = "credit_note.issued"
PAYMENT_RECORDED = "payment.recorded"
PAYMENT_REFUNDED = "payment.refunded"
CUSTOMER_SUMMARY_CHANGED = "customer.summary_changed"
SUBSCRIPTION_CREATED = "subscription.created"
SUBSCRIPTION_CHANGED = "subscription.changed"
DOCUMENT_STORED = "document.stored"
#: A buyer ordered a subscription on the self-service checkout: its Account, Closed Won Opportunity
#: and lines are to be written in Salesforce (docs/self-service.md).
SUBSCRIPTION_SOLD_ONLINE = "subscription.sold_online"
SUBSCRIPTION_SELF_SERVICE_CHANGED = "subscription.self_service_changed"
CUSTOMER_SALES_REQUESTED = "customer.sales_requested"
CUSTOMER_BILLING_DETAILS_CHANGED = "customer.billing_details_changed"

TOPICS = frozenset({
    INVOICE_FINALIZED, INVOICE_STATUS_CHANGED, CREDIT_NOTE_ISSUED, PAYMENT_RECORDED, PAYMENT_REFUNDED,
    CUSTOMER_SUMMARY_CHANGED, INVOICE_OVERDUE, INVOICE_REMINDED, SUBSCRIPTION_CREATED, SUBSCRIPTION_CHANGED,
    DOCUMENT_STORED, SUBSCRIPTION_SOLD_ONLINE, SUBSCRIPTION_SELF_SERVICE_CHANGED, CUSTOMER_SALES_REQUESTED,
    CUSTOMER_BILLING_DETAILS_CHANGED,
})
COALESCED_TOPICS = frozenset({CUSTOMER_SUMMARY_CHANGED})
#: Written by earlier versions next to ``customer.summary_changed`` for the same change; no
#: longer written, still read by the push so rows left in an outbox drain as summaries.
LEGACY_CUSTOMER_MRR_CHANGED = "customer.mrr_changed"
ONCE_PER_AGGREGATE_TOPICS = frozenset({SUBSCRIPTION_CREATED, SUBSCRIPTION_SOLD_ONLINE})

STATUS_PENDING = "pending"
STATUS_IN_FLIGHT = "in_flight"
STATUS_DONE = "done"
STATUS_DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    topic: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    created_at: datetime | None = None  # when the change happened; required to be written

    def __post_init__(self) -> None:
        if self.topic not in TOPICS:
            raise ValueError(f"unknown outbox topic {self.topic!r}")

    @property
    def coalesce_key(self) -> str | None:
        """Rows sharing this key while pending are merged into one (snapshot topics)."""
        if self.topic in COALESCED_TOPICS or self.topic in ONCE_PER_AGGREGATE_TOPICS:
            return f"{self.topic}:{self.aggregate_type}:{self.aggregate_id}"
        return None

    def payload_json(self) -> str:
        return encode_payload(self.payload)


def new_event(topic: str, aggregate_type: str, aggregate_id: object, payload: dict[str, Any],
              created_at: datetime) -> OutboxEvent:
    """The one way an event is built: ``aggregate_id`` as text, ``created_at`` timezone-aware."""
    if created_at.tzinfo is None:
        raise ValueError("an outbox event's created_at must be timezone-aware")
    return OutboxEvent(topic, aggregate_type, str(aggregate_id), payload, created_at)


def customer_summary_event(customer_id: str, created_at: datetime) -> OutboxEvent:
    """``customer.summary_changed``: the customer's Account summary (MRR, ARR, balance, credit,
    status) is to be pushed again. A snapshot, coalesced per customer: the push reads the
    current figures (``use_cases.exports.account_summaries``)."""
    return new_event(CUSTOMER_SUMMARY_CHANGED, "customer", customer_id, {"customer_id": customer_id}, created_at)


def changed_at(now: datetime | None, on: date) -> datetime:
    """When a change happened: ``now`` (timezone-aware) if given, else midnight UTC of its business date."""
    if now is None:
        return datetime.combine(on, time(), UTC)
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    return now


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("outbox datetimes must be timezone-aware")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} in an outbox payload")


def _plain(value: Any) -> Any:
    """``value`` with Decimals, dates and datetimes as their strings (one pass; floats refused)."""
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is Decimal:
        return format(value, "f")
    if cls is dict:
        return {k: _plain(v) for k, v in value.items()}
    if cls is list or cls is tuple:
        return [_plain(v) for v in value]
    if isinstance(value, float):
        raise TypeError("floats never go in an outbox payload; use Decimal")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int):
        return value
    return _default(value)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def encode_payload(payload: dict[str, Any]) -> str:
    """Canonical JSON: sorted keys, Decimal as plain-notation strings, ISO dates."""
    return _ENCODER.encode(_plain(payload))
