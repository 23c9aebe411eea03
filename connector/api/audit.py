"""``GET /api/v1/audit-log``: who changed what through the API, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from billing_engine.use_cases import audit
from connector.api.framework import ApiBlueprint, reading, respond
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.values import Absent

blueprint = ApiBlueprint("audit", __name__, tag="Audit log",
                         description="Every change made through the API: who, when, what, before and after.")


class AuditQuery(PageQuery):
    target_type: str | Absent = Field(None, max_length=50, description="e.g. `invoice`, `payment`.")
    target_id: str | Absent = Field(None, max_length=200)
    actor: str | Absent = Field(None, max_length=200, description="e.g. `api-key:finance-bot`.")
    action: str | Absent = Field(None, max_length=100, description="e.g. `payment.record`.")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="Who: `api-key:<name>`, `cli:<user>`.")
    action: str = Field(description="What, as `<subject>.<verb>`.")
    target_type: str
    target_id: str
    before: Any = Field(description="The record before the change (null when it did not exist).")
    after: Any = Field(description="The record after the change (null when it no longer exists).")
    request_id: str | None


class AuditPage(Page[AuditEntryOut]):
    pass


def _entry(entry: audit.AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(id=entry.id, at=entry.at, actor=entry.actor, action=entry.action,
                         target_type=entry.target_type, target_id=entry.target_id, before=entry.before,
                         after=entry.after, request_id=entry.request_id)


@blueprint.get("/audit-log", scope="read", responses={200: AuditPage})
def list_audit_log(query: AuditQuery):
    """The audit log, newest first, filtered by target, actor and action."""
    after = decode_cursor(query.cursor, "audit", (int,))
    with reading() as session:
        rows = audit.list_actions(session, limit=query.limit + 1, before_id=after[0] if after else None,
                                  target_type=query.target_type, target_id=query.target_id, actor=query.actor,
                                  action=query.action)
    return respond(AuditPage(**page(rows, query, "audit", key=lambda e: [e.id], item=_entry)))
