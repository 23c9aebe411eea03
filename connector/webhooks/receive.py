"""The two receiving use cases: verify, parse, store once. Acknowledging is the
caller's job, and only after the transaction has committed.

Each raises a ``WebhookError`` (nothing stored) or returns a ``Receipt``. Neither
touches the database before the notification is verified and fully parsed, so a
refused request costs no transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from connector.webhooks.cdc import ChangeEvent, parse_change_events
from connector.webhooks.config import WebhookConfig
from connector.webhooks.inbox import add_to_inbox
from connector.webhooks.outbound_message import OutboundNotification, parse_outbound_message
from connector.webhooks.verification import (
    SIGNATURE_HEADER,
    check_organization,
    check_outbound_credentials,
    verify_cdc_signature,
)


@dataclass(frozen=True)
class Receipt:
    stored: int  # new inbox rows
    duplicates: int  # rows already in the inbox (a redelivery)


def receive_outbound_message(session: Session, raw: bytes, config: WebhookConfig, now: datetime, *,
                             path_token: str | None = None, authorization: str | None = None) -> Receipt:
    """Store every Notification of one Outbound Message, deduplicated by Notification/Id."""
    check_outbound_credentials(config, path_token, authorization)
    message = parse_outbound_message(raw)
    check_organization(config, message.organization_id)
    rows = [_outbound_row(notification, now) for notification in message.notifications]
    return _store(session, rows)


def receive_cdc_events(session: Session, raw: bytes, headers: Mapping[str, str], config: WebhookConfig,
                       now: datetime) -> Receipt:
    """Store signed change events, one inbox row per record, deduplicated by
    (transactionKey, sequenceNumber, recordId)."""
    verify_cdc_signature(config, headers.get(SIGNATURE_HEADER), raw, now)
    events = parse_change_events(raw)
    rows = [row for event in events for row in _cdc_rows(event, now)]
    return _store(session, rows)


def _store(session: Session, rows: list[dict[str, Any]]) -> Receipt:
    stored = add_to_inbox(session, rows)
    return Receipt(stored=stored, duplicates=len(rows) - stored)


def _row(now: datetime, **values: Any) -> dict[str, Any]:
    return {**values, "received_at": now, "status": "pending", "attempts": 0, "next_attempt_at": now}


def _outbound_row(notification: OutboundNotification, now: datetime) -> dict[str, Any]:
    origin = f"user:{notification.last_modified_by_id}" if notification.last_modified_by_id else None
    return _row(now, source="outbound_message", dedup_key=f"om:{notification.notification_id}",
                object_name=notification.object_name, record_id=notification.record_id,
                action="upsert", change_origin=origin, payload=notification.fragment)


def _cdc_rows(event: ChangeEvent, now: datetime) -> list[dict[str, Any]]:
    key = f"cdc:{event.transaction_key}:{event.sequence_number}"
    common = {"source": "cdc", "object_name": event.entity_name, "change_origin": event.change_origin,
              "payload": event.document}
    if not event.record_ids:  # GAP_OVERFLOW: resync the whole object
        return [_row(now, dedup_key=key, record_id=None, action=event.action, **common)]
    rows = []
    for record_id in event.record_ids:
        wildcard = record_id.endswith("*")  # every record with this key prefix: resync the object
        rows.append(_row(now, dedup_key=f"{key}:{record_id}", record_id=None if wildcard else record_id,
                         action="resync_object" if wildcard else event.action, **common))
    return rows
