"""The sync's health in a few figures, for the dashboard (docs/reporting.md §3 Sync health): when
the pull and the push last ran, what waits in the outbox and the inbox, the dead letters, the review
flags and the pull's record errors, and the Salesforce API budget this process last saw.

It reads both the sync's state (``connector.sync``) and the webhook inbox
(``connector.webhooks``), which do not import each other, so it lives beside them. The org's API
usage is known only from the latest Salesforce response a process received (Salesforce sends it
with every answer; billsync does not store it): the caller passes the client's ``ApiStatus``, or
``None`` when Salesforce is not configured or not called yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlmodel import Session

from connector.salesforce.client import ApiStatus
from connector.sync.status import sync_overview
from connector.webhooks.processing import inbox_counts


@dataclass(frozen=True)
class SyncHealth:
    last_pull_at: datetime | None  # the latest run of any object's pull
    last_push_at: datetime | None  # the last push that delivered outbox rows
    outbox_pending: int  # waiting for their first try or their retry (the failing ones included)
    outbox_failing: int  # pending again after an error
    outbox_dead: int
    inbox_pending: int  # received, not processed yet (failed ones waiting for their retry included)
    inbox_failed: int
    inbox_dead: int
    open_reviews: int  # review flags waiting for finance
    record_errors: int  # Salesforce records the pull could not apply
    api_used: int | None  # calls the org used in its 24-hour allocation, when known
    api_max: int | None
    api_used_percent: Decimal | None  # api_used / api_max in percent, 2 decimals
    api_budget_percent: Decimal | None  # the share of the allocation billsync may use, in percent
    paused_until: datetime | None

    @property
    def dead_letters(self) -> int:
        return self.outbox_dead + self.inbox_dead


def process_api_status(services: Any) -> ApiStatus | None:
    """The API usage this process's Salesforce client last saw (no call made); ``None`` when
    Salesforce is not configured or the client cannot be built."""
    from connector.salesforce.errors import SalesforceError

    if services.settings.sf_auth == "none":
        return None
    try:
        return services.salesforce().status()
    except SalesforceError:
        return None


def sync_health(engine: Any, session: Session, *, api_status: ApiStatus | None = None) -> SyncHealth:
    """The sync's figures as they stand (reads only)."""
    overview = sync_overview(engine, session)
    outbox = overview.outbox
    inbox = inbox_counts(session)
    share = None if api_status is None else api_status.used_share
    return SyncHealth(
        last_pull_at=overview.last_pull_at,
        last_push_at=None if overview.last_push is None else overview.last_push.finished_at,
        outbox_pending=outbox.get("pending", 0), outbox_failing=outbox.get("failing", 0),
        outbox_dead=outbox.get("dead", 0),
        inbox_pending=inbox.get("pending", 0) + inbox.get("failed", 0), inbox_failed=inbox.get("failed", 0),
        inbox_dead=inbox.get("dead", 0), open_reviews=overview.open_reviews, record_errors=overview.record_errors,
        api_used=None if api_status is None else api_status.used,
        api_max=None if api_status is None else api_status.max,
        api_used_percent=None if share is None else (share * 100).quantize(Decimal("0.01"), ROUND_HALF_UP),
        api_budget_percent=None if api_status is None else (api_status.share * 100).quantize(Decimal("0.01")),
        paused_until=None if api_status is None else api_status.paused_until)
