"""The collection use cases as the CLI and the clock run them, with the settings applied
(docs/payments.md).

- ``run_collections`` (the clock's daily ``collections`` job, ``billsync payments collections``):
  open invoices whose due date has passed unpaid become overdue, with the event that makes the
  push show ``overdue`` on ``Invoice__c`` and ``past_due`` on the Account the same day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from billing_engine.use_cases.collections import OverdueResult, mark_overdue_invoices
from connector.database import transaction

if TYPE_CHECKING:
    from connector.wiring import Services


@dataclass(frozen=True)
class CollectionsReport:
    as_of: date
    overdue: OverdueResult

    def lines(self) -> list[str]:
        invoices = self.overdue.invoices
        return [f"collections as of {self.as_of}: {len(invoices)} invoices became overdue "
                f"({len(self.overdue.customers)} customers past due)"]


def run_collections(services: Services, as_of: date, *, now: datetime | None = None) -> CollectionsReport:
    """Mark overdue the open invoices due before ``as_of`` (idempotent: a second run marks nothing)."""
    with transaction(services.engine) as session:
        overdue = mark_overdue_invoices(session, as_of, now=now)
    return CollectionsReport(as_of, overdue)
