"""The billing use cases as the connector runs them, with the settings applied.

The CLI (``billsync bill-run``, ``billsync metrics mrr``) and the clock call these same
functions; the engine does the work (``use_cases.billing.bill_customers`` and
``use_cases.revenue.mrr_bridge_report`` read their data from the database in batches).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing_engine.use_cases.billing import BillRunResult, bill_customers
from billing_engine.use_cases.revenue import mrr_bridge_report

if TYPE_CHECKING:
    from connector.wiring import Services


def today_in(timezone: str, now: datetime | None = None) -> date:
    """The calendar date in ``timezone`` (the org's BILLSYNC_TIMEZONE) at ``now`` (default: now)."""
    now = now or datetime.now(UTC)
    return now.astimezone(ZoneInfo(timezone)).date()


def run_bill_run(services: Services, as_of: date, *, now: datetime | None = None) -> BillRunResult:
    """Bill everything due up to ``as_of`` (finalized, or drafts when HOLD_INVOICES_FOR_REVIEW).

    Customers without a tax rate of their own are taxed at DEFAULT_TAX_RATE.
    """
    settings = services.settings
    return bill_customers(services.engine, as_of, hold_for_review=settings.hold_invoices_for_review, now=now,
                          default_tax_percent=settings.default_tax_rate)


def mrr_bridge_rows(services: Services, from_month: str, to_month: str) -> list[dict[str, str]]:
    """The MRR bridge per month and currency: rows of exact decimal strings."""
    return mrr_bridge_report(services.engine, from_month, to_month)
