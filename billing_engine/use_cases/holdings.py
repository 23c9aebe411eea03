"""What the engine holds, in counts: for status reports (``billsync sync status``)."""

from __future__ import annotations

from dataclasses import dataclass

from billing_engine.storage.catalog import count_customers
from billing_engine.storage.database import Session
from billing_engine.storage.subscriptions import subscription_counts


@dataclass(frozen=True)
class Holdings:
    customers: int
    subscriptions: int
    cancelled_subscriptions: int  # cancelled, or with a cancellation scheduled

    def describe(self) -> str:
        cancelled = f" ({self.cancelled_subscriptions} cancelled)" if self.cancelled_subscriptions else ""
        return f"{self.customers} customers, {self.subscriptions} subscriptions{cancelled}"


def holdings(session: Session) -> Holdings:
    """How many customers and subscriptions the engine holds."""
    by_status = subscription_counts(session)
    return Holdings(customers=count_customers(session), subscriptions=sum(by_status.values()),
                    cancelled_subscriptions=by_status.get("cancelled", 0))
