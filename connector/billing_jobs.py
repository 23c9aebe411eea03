"""The billing use cases as the connector runs them, with the settings applied.

The CLI (``billsync bill-run``, ``billsync metrics mrr``, ``billsync metrics forecast --store``,
``billsync usage partitions``) and the
clock call these same functions; the engine does the work (``use_cases.billing.bill_customers`` and
``use_cases.revenue.mrr_bridge_report`` read their data from the database in batches).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from billing_engine.periods import add_months
from billing_engine.use_cases.anomalies import AnomalyGuard, GuardRules
from billing_engine.use_cases.billing import LATEST_BILL_RUN_DATE, BillRunResult, bill_customers
from billing_engine.use_cases.revenue import mrr_bridge_report
from billing_engine.use_cases.usage import PartitionsPrepared
from billing_engine.use_cases.usage import prepare_usage_partitions as prepare_partitions
from connector.database import transaction
from connector.settings import SettingsError

if TYPE_CHECKING:
    from billing_engine.use_cases.forecast import StoredForecast
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


#: How far after today (BILLSYNC_TIMEZONE) a bill run may be dated without ``--allow-future``:
#: one day, so a person in a time zone ahead of the org's can still bill "today".
FUTURE_DAYS_ALLOWED = 1


def bill_run_date_problem(services: Services, as_of: date, *, allow_future: bool = False,
                          now: datetime | None = None) -> str | None:
    """Why a bill run may not be dated ``as_of`` (one line), or None.

    Past ``LATEST_BILL_RUN_DATE`` never (the periods would end past year 9999); more than
    ``FUTURE_DAYS_ALLOWED`` after today in BILLSYNC_TIMEZONE only with ``allow_future``: a typo
    there would finalize (and number) invoices for periods that have not begun.
    """
    if as_of > LATEST_BILL_RUN_DATE:
        return f"--as-of: {as_of} is after {LATEST_BILL_RUN_DATE}, the latest date a bill run accepts"
    timezone = services.settings.billsync_timezone
    today = today_in(timezone, now)
    if as_of > today + timedelta(days=FUTURE_DAYS_ALLOWED) and not allow_future:
        return (f"--as-of: {as_of} is {(as_of - today).days} days after today ({today} in {timezone}); "
                f"pass --allow-future to bill ahead on purpose, or --dry-run to see what it would bill")
    return None


def run_bill_run(services: Services, as_of: date, *, now: datetime | None = None,
                 dry_run: bool = False, progress: Callable[[int, int], None] | None = None) -> BillRunResult:
    """Bill everything due up to ``as_of`` (finalized, or drafts when HOLD_INVOICES_FOR_REVIEW).

    Customers without a tax rate of their own are taxed at DEFAULT_TAX_RATE, each line by its product's
    tax category and, with SELLER_COUNTRY, the countries (docs/billing-rules.md §14 Tax); an invoice covering
    more than BILL_RUN_MAX_PERIODS recurring periods of one subscription stays a draft held for
    review. Nothing before BILLING_STARTS_ON is invoiced; on a connected org without it, the run
    refuses (``require_cut_over``) before touching anything. ``dry_run``: compute the run and
    write nothing (the invoices are in ``previews``). ``progress(done, total)``: customers looked
    at so far, after each batch.
    """
    settings = services.settings
    require_cut_over(settings, now)
    return bill_customers(services.engine, as_of, hold_for_review=settings.hold_invoices_for_review, now=now,
                          default_tax_percent=settings.default_tax_rate, bills_from=settings.billing_starts_on,
                          max_periods=settings.bill_run_max_periods, dry_run=dry_run,
                          seller_country=settings.seller_country, guard=anomaly_guard(settings),
                          progress=progress)


def anomaly_guard(settings: Settings) -> AnomalyGuard | None:
    """The anomaly guard ANOMALY_GUARD and its thresholds ask for (None when off)."""
    if settings.anomaly_guard == "off":
        return None
    return AnomalyGuard(settings.anomaly_guard, GuardRules(
        z_threshold=settings.anomaly_z_threshold, min_factor=settings.anomaly_min_factor,
        price_tolerance_percent=settings.anomaly_price_tolerance_percent, min_history=settings.anomaly_min_history,
        history_months=settings.anomaly_history_months, backbill_days=settings.anomaly_backbill_days))


def mrr_bridge_rows(services: Services, from_month: str, to_month: str) -> list[dict[str, str]]:
    """The MRR bridge per month and currency: rows of exact decimal strings."""
    return mrr_bridge_report(services.engine, from_month, to_month)


def rebuild_mrr_month_ends(services: Services) -> int:
    """Recompute every customer's MRR at month ends in one transaction: rows written."""
    from billing_engine.use_cases.revenue import rebuild_mrr_month_ends as rebuild

    with transaction(services.engine) as session:
        return rebuild(session)


def check_mrr_month_ends(services: Services) -> list[str]:
    """The differences between the MRR kept at month ends and a computation from the subscriptions."""
    from billing_engine.use_cases.revenue import check_mrr_month_ends as check

    with transaction(services.engine) as session:
        return check(session)


def store_month_forecast(services: Services, today: date) -> StoredForecast:
    """Store the MRR forecast made in ``today``'s month, once (``billsync metrics forecast --store``
    and the clock on the 1st of each month)."""
    from billing_engine.use_cases.forecast import month_of, store_forecast

    with transaction(services.engine) as session:
        return store_forecast(session, month_of(today), history_months=services.settings.forecast_history_months)


def prepare_usage_partitions(services: Services, through: date) -> PartitionsPrepared:
    """The monthly partitions of usage events through ``through``'s month, and the events of the
    default partition moved into theirs (PostgreSQL; nothing on SQLite): ``billsync usage
    partitions`` and the clock."""
    with transaction(services.engine) as session:
        return prepare_partitions(session, through)
