"""``/api/v1/metrics``: the MRR/ARR bridge by month with its movements and totals per currency,
and the customers behind a month's movements (docs/billing-rules.md §17 Revenue metrics); the
dashboard of a month and the customers behind each of its figures (docs/reporting.md)."""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from pydantic import BaseModel, Field

from billing_engine.revenue import BridgeRow, Movement, month_end, parse_month
from billing_engine.use_cases import dashboard, revenue
from connector.api.framework import ApiBlueprint, api_state, business_date, reading, respond
from connector.api.money import CURRENCY_PATTERN, Money
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.problems import invalid
from connector.api.values import Absent, IsoDate
from connector.wiring import services_of

# The sync's modules are imported by the route that uses them, not when the web process starts.

blueprint = ApiBlueprint("metrics", __name__, tag="Metrics",
                         description="MRR and ARR: the monthly bridge, its totals, the customers behind it; "
                                     "the dashboard of a month.")

MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


class BridgeQuery(BaseModel):
    from_month: str = Field(alias="from", pattern=MONTH_PATTERN, description="First month, YYYY-MM.")
    to_month: str = Field(alias="to", pattern=MONTH_PATTERN, description="Last month, YYYY-MM (at most 120 months).")
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")


class BridgeRowOut(BaseModel):
    month: str = Field(description="YYYY-MM, or FROM..TO for totals.")
    currency: str
    opening: Money = Field(description="MRR at the end of the previous month.")
    new: Money
    expansion: Money
    reactivation: Money
    contraction: Money = Field(description="A positive amount, subtracted.")
    churn: Money = Field(description="A positive amount, subtracted.")
    closing: Money = Field(description="opening + new + expansion + reactivation - contraction - churn.")
    arr: Money = Field(description="ARR at the closing date.")
    customers: int = Field(description="Customers with MRR at the closing date.")


class Bridge(BaseModel):
    months: list[BridgeRowOut] = Field(description="One row per month and currency.")
    totals: list[BridgeRowOut] = Field(description="One row per currency over the whole range.")


class MovementPath(BaseModel):
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM.")


class MovementQuery(PageQuery):
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN)
    kind: str | Absent = Field(None, pattern="^(new|expansion|reactivation|contraction|churn)$")


class MovementOut(BaseModel):
    customer_id: str
    currency: str
    kind: str = Field(description="new, expansion, reactivation, contraction or churn.")
    before: Money = Field(description="MRR at the end of the previous month.")
    after: Money = Field(description="MRR at the end of the month.")
    change: Money


class MovementPage(Page[MovementOut]):
    pass


def bridge_row_out(row: BridgeRow) -> BridgeRowOut:
    def m(value):
        return Money.of(value, row.currency)

    return BridgeRowOut(month=row.period, currency=row.currency, opening=m(row.opening), new=m(row.new),
                        expansion=m(row.expansion), reactivation=m(row.reactivation),
                        contraction=m(row.contraction), churn=m(row.churn), closing=m(row.closing), arr=m(row.arr),
                        customers=row.customers)


def _movement(move: Movement) -> MovementOut:
    return MovementOut(customer_id=move.customer_id, currency=move.currency, kind=move.kind,
                       before=Money.of(move.before, move.currency), after=Money.of(move.after, move.currency),
                       change=Money.of(move.amount, move.currency))


@blueprint.get("/metrics/mrr", scope="read", responses={200: Bridge})
def get_mrr_bridge(query: BridgeQuery):
    """The MRR/ARR bridge per month and currency, with totals per currency."""
    if query.to_month < query.from_month:
        raise invalid([{"parameter": "to", "detail": "must not be before from"}])
    with reading() as session:
        rows = revenue.mrr_bridge_months(session, query.from_month, query.to_month, currency=query.currency)
    return respond(Bridge(months=[bridge_row_out(r) for r in rows],
                          totals=[bridge_row_out(r) for r in revenue.bridge_totals(rows)]))


@blueprint.get("/metrics/mrr/<month>/movements", scope="read", responses={200: MovementPage})
def list_mrr_movements(path: MovementPath, query: MovementQuery):
    """The customers whose MRR moved in a month, by customer: kind, before, after."""
    after = decode_cursor(query.cursor, f"movements:{path.month}", (str, str))
    with reading() as session:
        moves = revenue.mrr_movements(session, path.month, limit=query.limit + 1,
                                      after=(after[0], after[1]) if after else None, currency=query.currency,
                                      kind=query.kind)
    return respond(MovementPage(**page(moves, query, f"movements:{path.month}",
                                       key=lambda m: [m.customer_id, m.currency], item=_movement)))


# ---------------------------------------------------------------- the dashboard


class DashboardQuery(BaseModel):
    month: str = Field(pattern=MONTH_PATTERN, description="The month, YYYY-MM.")
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN,
                                   description="The reporting currency (default: the REPORTING_CURRENCY setting).")
    months: int = Field(12, ge=12, le=24, description="Months of the MRR and ARR series, ending with `month`.")
    as_of: IsoDate | Absent = Field(None, description="Date of the receivables and statuses, YYYY-MM-DD "
                                                      "(default: today, or the month's end if earlier).")


class SeriesPointOut(BaseModel):
    month: str
    mrr: Money | None = Field(description="MRR at the month's end; null when a rate of that month is missing.")
    arr: Money | None
    customers: int = Field(description="Customers with MRR at the month's end.")


class WaterfallOut(BaseModel):
    opening: Money
    new: Money
    expansion: Money
    reactivation: Money
    contraction: Money = Field(description="A positive amount, subtracted.")
    churn: Money = Field(description="A positive amount, subtracted.")
    rounding: Money = Field(description="In the reporting currency, what separately rounded parts miss "
                                        "(0 per currency): opening + new + expansion + reactivation - "
                                        "contraction - churn + rounding = closing.")
    closing: Money


class FiguresOut(BaseModel):
    currency: str
    mrr_series: list[SeriesPointOut]
    waterfall: WaterfallOut | None = Field(description="Null when a rate of the month is missing.")
    opening_customers: int
    closing_customers: int
    movers: dict[str, int] = Field(description="Customers per movement kind in the month.")
    net_revenue_retention: str | None = Field(description="Percent, 2 decimals: (opening + expansion - "
                                                          "contraction - churn) / opening; null without opening MRR.")
    gross_revenue_retention: str | None = Field(description="Percent: (opening - contraction - churn) / opening.")
    logo_churn_rate: str | None = Field(description="Percent: churned customers / customers at the opening.")
    revenue_churn_rate: str | None = Field(description="Percent: (contraction + churn) / opening.")
    arpa: Money | None = Field(description="Closing MRR / customers with MRR at the closing.")
    receivables: dict[str, Money] | None = Field(description="Open balances by days past due: current, 0-30, "
                                                             "31-60, 61-90, 90+; null when a rate is missing.")
    receivables_total: Money | None
    overdue_invoices: int


class RateUsedOut(BaseModel):
    month: str
    currency: str
    rate: str = Field(description="Units of the currency for 1 EUR.")
    date: str = Field(description="The rate's date: the latest in the month, on or before its end.")
    source: str


class MissingRateOut(BaseModel):
    month: str
    currency: str


class SyncHealthOut(BaseModel):
    last_pull_at: datetime | None = Field(description="The latest run of any object's pull.")
    last_push_at: datetime | None = Field(description="The last push that delivered outbox rows.")
    outbox_pending: int = Field(description="Engine changes waiting to be pushed (failing ones included).")
    outbox_failing: int
    inbox_pending: int = Field(description="Salesforce notifications waiting to be processed (failed included).")
    inbox_failed: int
    dead_letters: int = Field(description="Outbox and inbox rows given up (`/sync/dead-letters`).")
    open_reviews: int = Field(description="Review flags waiting for finance (`/review-flags`).")
    record_errors: int = Field(description="Salesforce records the pull could not apply.")
    api_used: int | None = Field(description="API calls the org used in its 24-hour allocation, as this process "
                                             "last saw; null when unknown.")
    api_max: int | None
    api_used_percent: str | None = Field(description="api_used / api_max in percent.")
    api_budget_percent: str | None = Field(description="The share of the allocation billsync may use, in percent.")
    paused_until: datetime | None = Field(description="The sync is paused until then (the budget is reached).")


class DashboardOut(BaseModel):
    month: str
    as_of: str = Field(description="Date of the receivables and the statuses.")
    reporting_currency: str
    currencies: list[FiguresOut] = Field(description="The figures in each currency, unconverted.")
    reporting: FiguresOut = Field(description="Every currency's figures converted at each month's rates.")
    customers_by_status: dict[str, int] = Field(description="active, cancelling, past_due, cancelled, none.")
    rates: list[RateUsedOut] = Field(description="The rates each month's conversion used.")
    missing_rates: list[MissingRateOut] = Field(description="The months and currencies without a rate: their "
                                                            "figures are null in the reporting currency.")
    sync: SyncHealthOut = Field(description="The sync with Salesforce as it stands now.")


class FigureCustomersQuery(PageQuery):
    month: str = Field(pattern=MONTH_PATTERN, description="The month, YYYY-MM.")
    figure: str = Field(pattern=r"^(movement:(new|expansion|reactivation|contraction|churn)"
                                r"|aging:(current|0-30|31-60|61-90|90\+)"
                                r"|status:(active|cancelling|past_due|cancelled|none))$",
                        description="`movement:<kind>`, `aging:<bucket>` or `status:<status>`.")
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")
    as_of: IsoDate | Absent = Field(None, description="Date of aging buckets and statuses (default as the dashboard).")


class FigureCustomerOut(BaseModel):
    customer_id: str
    name: str
    currency: str
    amount: Money | None = Field(description="The MRR change (movements) or the balance in the bucket (aging).")
    before: Money | None = Field(description="MRR at the end of the previous month (movements).")
    after: Money | None = Field(description="MRR at the end of the month (movements).")
    invoices: int | None = Field(description="Invoices in the bucket (aging).")


class FigureCustomerPage(Page[FigureCustomerOut]):
    pass


def _money(value, currency):
    return None if value is None else Money.of(value, currency)


def _percent(value):
    return None if value is None else format(value, "f")


def _figures(fig: dashboard.Figures) -> FiguresOut:
    c = fig.currency
    water = fig.waterfall
    return FiguresOut(
        currency=c,
        mrr_series=[SeriesPointOut(month=p.month, mrr=_money(p.mrr, c), arr=_money(p.arr, c), customers=p.customers)
                    for p in fig.series],
        waterfall=None if water is None else WaterfallOut(**{name: Money.of(getattr(water, name), c) for name in (
            "opening", "new", "expansion", "reactivation", "contraction", "churn", "rounding", "closing")}),
        opening_customers=fig.opening_customers, closing_customers=fig.closing_customers, movers=fig.movers,
        net_revenue_retention=_percent(fig.net_revenue_retention),
        gross_revenue_retention=_percent(fig.gross_revenue_retention),
        logo_churn_rate=_percent(fig.logo_churn_rate), revenue_churn_rate=_percent(fig.revenue_churn_rate),
        arpa=_money(fig.arpa, c),
        receivables=None if fig.receivables is None else {k: Money.of(v, c) for k, v in fig.receivables.items()},
        receivables_total=_money(fig.receivables_total, c), overdue_invoices=fig.overdue_invoices)


def _as_of(month: str, given):
    if given is not None:
        return given
    year, mon = parse_month(month)
    return min(business_date(), month_end(year, mon))


@blueprint.get("/metrics/dashboard", scope="read", responses={200: DashboardOut})
def get_dashboard(query: DashboardQuery):
    """A month's dashboard: MRR/ARR series, waterfall, retention, churn, ARPA, receivables aging and
    customers by status, per currency and in the reporting currency with the rates used."""
    reporting = query.currency or services_of(current_app).settings.reporting_currency
    as_of = _as_of(query.month, query.as_of)
    from connector.sync_health import process_api_status, sync_health

    services = services_of(current_app)
    with reading() as session:
        board = dashboard.dashboard(session, query.month, as_of=as_of, reporting_currency=reporting,
                                    months=query.months)
        health = sync_health(api_state().reader, session, api_status=process_api_status(services))
    return respond(DashboardOut(
        month=board.month, as_of=board.as_of.isoformat(), reporting_currency=board.reporting_currency,
        currencies=[_figures(f) for f in board.currencies], reporting=_figures(board.reporting),
        customers_by_status=board.customers_by_status,
        rates=[RateUsedOut(month=r.month, currency=r.currency, rate=format(r.rate, "f"), date=r.rate_on.isoformat(),
                           source=r.source) for r in board.rates],
        missing_rates=[MissingRateOut(month=m.month, currency=m.currency) for m in board.missing_rates],
        sync=SyncHealthOut(
            last_pull_at=health.last_pull_at, last_push_at=health.last_push_at, outbox_pending=health.outbox_pending,
            outbox_failing=health.outbox_failing, inbox_pending=health.inbox_pending,
            inbox_failed=health.inbox_failed, dead_letters=health.dead_letters, open_reviews=health.open_reviews,
            record_errors=health.record_errors, api_used=health.api_used, api_max=health.api_max,
            api_used_percent=_percent(health.api_used_percent), api_budget_percent=_percent(health.api_budget_percent),
            paused_until=health.paused_until)))


def _figure_customer(row: dashboard.FigureCustomer) -> FigureCustomerOut:
    c = row.currency
    return FigureCustomerOut(customer_id=row.customer_id, name=row.name, currency=c, amount=_money(row.amount, c),
                             before=_money(row.before, c), after=_money(row.after, c), invoices=row.invoices)


@blueprint.get("/metrics/dashboard/customers", scope="read", responses={200: FigureCustomerPage})
def list_dashboard_customers(query: FigureCustomersQuery):
    """The customers behind one of the dashboard's figures, by customer and currency."""
    listing = f"dashboard:{query.month}:{query.figure}"
    after = decode_cursor(query.cursor, listing, (str, str))
    as_of = _as_of(query.month, query.as_of)
    with reading() as session:
        rows = dashboard.figure_customers(session, query.month, query.figure, as_of=as_of, limit=query.limit + 1,
                                          after=(after[0], after[1]) if after else None, currency=query.currency)
    return respond(FigureCustomerPage(**page(rows, query, listing, key=lambda r: [r.customer_id, r.currency],
                                             item=_figure_customer)))


# ---------------------------------------------------------------- the MRR forecast


class ForecastQuery(BaseModel):
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN,
                                   description="The reporting currency (default: the REPORTING_CURRENCY setting).")
    month: str | Absent = Field(None, pattern=MONTH_PATTERN,
                                description="The forecast's first month, YYYY-MM (default: the current month).")
    history_months: int | Absent = Field(None, ge=1, le=60, description="Complete months of history the rates come "
                                                                        "from (default: FORECAST_HISTORY_MONTHS).")


class ForecastMonthOut(BaseModel):
    month: str
    horizon: int = Field(description="1 for the forecast's first month, 2 for the next…")
    contracted: Money = Field(description="MRR at the month's end from the subscriptions as they stand: terms, "
                                          "renewals and uplifts, recorded cancellations and amendments.")
    expected: Money = Field(description="Contracted MRR with the history's churn and expansion.")
    low: Money = Field(description="Expected MRR with one standard deviation more churn and less expansion.")
    high: Money = Field(description="Expected MRR with one standard deviation less churn and more expansion.")


class ForecastRatesOut(BaseModel):
    expansion: str = Field(description="Mean monthly expansion rate of the history, percent.")
    churn: str = Field(description="Mean monthly churn rate (contraction and churn) of the history, percent.")
    expansion_spread: str = Field(description="Standard deviation of the monthly expansion rates, percent.")
    churn_spread: str = Field(description="Standard deviation of the monthly churn rates, percent.")
    months: int = Field(description="Months of history with an opening MRR.")


class CurrencyForecastOut(BaseModel):
    currency: str
    rates: ForecastRatesOut
    months: list[ForecastMonthOut]


class ForecastOut(BaseModel):
    made_in: str = Field(description="The forecast's first month.")
    reporting_currency: str
    currencies: list[CurrencyForecastOut] = Field(description="The forecast in each currency, unconverted.")
    reporting: list[ForecastMonthOut] | None = Field(description="Every currency converted at the rates of "
                                                                 "`rates_month`; null when one is missing.")
    rates_month: str = Field(description="The last complete month, whose rates convert every month ahead.")
    rates: list[RateUsedOut]
    missing_rates: list[MissingRateOut]


class ForecastAccuracyQuery(BaseModel):
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")


class HorizonAccuracyOut(BaseModel):
    currency: str
    horizon: int = Field(description="Months ahead: 1 is the month the forecast was made in.")
    months: int = Field(description="Stored forecasts of closed months compared with their actual MRR.")
    contracted_mape: str | None = Field(description="Mean absolute percentage error of the contracted MRR.")
    expected_mape: str | None = Field(description="Mean absolute percentage error of the expected MRR.")
    within_band: int = Field(description="Months whose actual MRR fell between low and high.")


class ForecastAccuracyOut(BaseModel):
    horizons: list[HorizonAccuracyOut]


def _forecast_on():
    settings = services_of(current_app).settings
    if settings.forecast == "off":
        from connector.api.problems import not_found

        raise not_found("the MRR forecast is turned off (FORECAST=off)")
    return settings


def _forecast_month(m, currency: str) -> ForecastMonthOut:
    return ForecastMonthOut(month=m.month, horizon=m.horizon, contracted=Money.of(m.contracted, currency),
                            expected=Money.of(m.expected, currency), low=Money.of(m.low, currency),
                            high=Money.of(m.high, currency))


def _rate_percent(value) -> str:
    from decimal import Decimal

    return format((value * 100).quantize(Decimal("0.0001")), "f")


@blueprint.get("/metrics/forecast", scope="read", responses={200: ForecastOut})
def get_forecast(query: ForecastQuery):
    """The MRR forecast of the next 12 months: contracted MRR from the subscriptions and the expected
    MRR with a band from the history's churn and expansion, per currency and in the reporting currency."""
    from billing_engine.use_cases import forecast

    settings = _forecast_on()
    reporting = query.currency or settings.reporting_currency
    made_in = query.month or forecast.month_of(business_date())
    with reading() as session:
        result = forecast.mrr_forecast(session, made_in, reporting_currency=reporting,
                                       history_months=query.history_months or settings.forecast_history_months)
    return respond(ForecastOut(
        made_in=result.made_in, reporting_currency=result.reporting_currency,
        currencies=[CurrencyForecastOut(
            currency=c.currency,
            rates=ForecastRatesOut(expansion=_rate_percent(c.rates.expansion), churn=_rate_percent(c.rates.churn),
                                   expansion_spread=_rate_percent(c.rates.expansion_spread),
                                   churn_spread=_rate_percent(c.rates.churn_spread), months=c.rates.months),
            months=[_forecast_month(m, c.currency) for m in c.months]) for c in result.currencies],
        reporting=None if result.reporting is None else [_forecast_month(m, reporting) for m in result.reporting],
        rates_month=result.rates_month,
        rates=[RateUsedOut(month=r.month, currency=r.currency, rate=format(r.rate, "f"), date=r.rate_on.isoformat(),
                           source=r.source) for r in result.rates],
        missing_rates=[MissingRateOut(month=m.month, currency=m.currency) for m in result.missing_rates]))


@blueprint.get("/metrics/forecast/accuracy", scope="read", responses={200: ForecastAccuracyOut})
def get_forecast_accuracy(query: ForecastAccuracyQuery):
    """How far the stored monthly forecasts were from the actual month-end MRR, per currency and horizon."""
    from billing_engine.use_cases import forecast

    _forecast_on()
    with reading() as session:
        rows = forecast.forecast_accuracy(session, business_date(), currency=query.currency)
    return respond(ForecastAccuracyOut(horizons=[HorizonAccuracyOut(
        currency=a.currency, horizon=a.horizon, months=a.months, contracted_mape=_percent(a.contracted_mape),
        expected_mape=_percent(a.expected_mape), within_band=a.within_band) for a in rows]))
