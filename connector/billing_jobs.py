"""The billing use cases as the connector runs them, with the settings applied.

The CLI (``billsync bill-run``, ``billsync metrics mrr``) and the clock call these same
functions; the engine does the work (``use_cases.billing.bill_customers`` and
``use_cases.revenue.mrr_bridge_report`` read their data from the database in batches).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing_engine.periods import add_months
from billing_engine.use_cases.billing import BillRunResult, bill_customers
from billing_engine.use_cases.revenue import mrr_bridge_report
from connector.settings import SettingsError

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.wiring import Services


def today_in(timezone: str, now: datetime | None = None) -> date:
    """The calendar date in ``timezone`` (the org's BILLSYNC_TIMEZONE) at ``now`` (default: now)."""
    now = now or datetime.now(UTC)
    return now.astimezone(ZoneInfo(timezone)).date()


def cut_over_problem(settings: Settings, now: datetime | None = None) -> str | None:
    """Why a bill run must not run yet, as one line, or None.

    On a connected org (SF_AUTH other than none) the first bill run would otherwise invoice every
    won deal from its start date, years back; so until BILLING_STARTS_ON says where billing
    starts, the bill run refuses. Without Salesforce the engine bills as it always did.
    """
    if settings.sf_auth == "none" or settings.billing_starts_on is not None:
        return None
    this_month = today_in(settings.billsync_timezone, now).replace(day=1)
    return (f"set BILLING_STARTS_ON to the first day billsync bills (e.g. {add_months(this_month, 1)}): "
            "without it, every won deal would be billed from its start date")


def require_cut_over(settings: Settings, now: datetime | None = None) -> None:
    """Raise ``SettingsError`` (one line) when the bill run must not run yet (``cut_over_problem``)."""
    problem = cut_over_problem(settings, now)
    if problem:
        raise SettingsError([problem])


def run_bill_run(services: Services, as_of: date, *, now: datetime | None = None) -> BillRunResult:
    """Bill everything due up to ``as_of`` (finalized, or drafts when HOLD_INVOICES_FOR_REVIEW).

    Customers without a tax rate of their own are taxed at DEFAULT_TAX_RATE. Nothing before
    BILLING_STARTS_ON is invoiced; on a connected org without it, the run refuses
    (``require_cut_over``) before touching anything.
    """
    settings = services.settings
    require_cut_over(settings, now)
    return bill_customers(services.engine, as_of, hold_for_review=settings.hold_invoices_for_review, now=now,
                          default_tax_percent=settings.default_tax_rate, bills_from=settings.billing_starts_on)


def mrr_bridge_rows(services: Services, from_month: str, to_month: str) -> list[dict[str, str]]:
    """The MRR bridge per month and currency: rows of exact decimal strings."""
    return mrr_bridge_report(services.engine, from_month, to_month)
