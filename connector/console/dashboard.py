"""The dashboard: a month's MRR and ARR over the last months, its MRR waterfall, retention, churn,
ARPA, customers by status, receivables aging, the sync's health and the exchange rates used, per
currency or in the reporting currency; the MRR forecast of the next 12 months with its band
(docs/intelligence.md); and the customers behind each figure (docs/console.md).

Reads only, through the same use cases as ``GET /api/v1/metrics/dashboard`` and
``/metrics/dashboard/customers``: ``billing_engine.use_cases.dashboard`` and
``connector.sync_health``; the forecast through ``billing_engine.use_cases.forecast``, as
``GET /api/v1/metrics/forecast``. The charts are inline SVG drawn on the server (``connector.console.charts``).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from babel.numbers import format_compact_currency, format_percent
from flask import abort, current_app, render_template, request, url_for
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from billing_engine.errors import InvalidInputError
from billing_engine.money import Money
from billing_engine.revenue import month_end, parse_month
from billing_engine.use_cases import dashboard, forecast
from connector.console import charts
from connector.console.formatting import money
from connector.console.framework import ConsoleBlueprint, Nav, business_date, console_state, reading, refusal
from connector.wiring import services_of

blueprint = ConsoleBlueprint("console_dashboard", __name__, url_prefix="/dashboard",
                             nav=Nav(_l("Dashboard"), "console_dashboard.show", order=10))

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
PAGE_SIZE = 50
SERIES_MONTHS = (12, 18, 24)

MOVEMENTS = ("new", "expansion", "reactivation", "contraction", "churn")
LABELS = {
    "opening": _l("Opening"), "new": _l("New"), "expansion": _l("Expansion"), "reactivation": _l("Reactivation"),
    "contraction": _l("Contraction"), "churn": _l("Churn"), "closing": _l("Closing"),
    "current": _l("Not yet due"), "0-30": _l("0–30 days"), "31-60": _l("31–60 days"), "61-90": _l("61–90 days"),
    "90+": _l("Over 90 days"),
    "active": _l("Active"), "cancelling": _l("Cancelling"), "past_due": _l("Past due"), "cancelled": _l("Cancelled"),
    "none": _l("No subscription"),
}


@blueprint.app_template_filter("percent")
def percent(value: Decimal | None) -> str:
    """A percentage the engine gives as a number of percent (``76.67``), in the user's language."""
    if value is None:
        return "—"
    return format_percent(value / 100, locale=get_locale(), decimal_quantization=False)


def _month_of(text: str | None, today: date) -> str:
    if not text:
        return f"{today.year:04d}-{today.month:02d}"
    if not MONTH.match(text):
        raise InvalidInputError("month", _("%(text)s is not a month (YYYY-MM)", text=text[:20]))
    return text


def _as_of(month: str, today: date) -> date:
    year, mon = parse_month(month)
    return min(today, month_end(year, mon))


def _month_label(month: str) -> str:
    year, mon = parse_month(month)
    return format_date(date(year, mon, 1), format="LLL")


def _year_label(month: str) -> str:
    return month[:4]


def _figure_url(month: str, figure: str, currency: str | None) -> str:
    return url_for("console_dashboard.customers", month=month, figure=figure, currency=currency)


def _charts(figures: dashboard.Figures, month: str, currency: str | None) -> dict:
    code = figures.currency

    def value(amount: Decimal) -> str:
        return money(Money(amount, code))

    def axis(amount: Decimal) -> str:
        return format_compact_currency(amount, code, locale=get_locale(), fraction_digits=1)

    mrr = charts.month_chart([(p.month, p.mrr) for p in figures.series], value_label=value, title=value,
                             axis_label=axis, month_label=_month_label, year_label=_year_label)
    arr = charts.month_chart([(p.month, p.arr) for p in figures.series], value_label=value, title=value,
                             axis_label=axis, month_label=_month_label, year_label=_year_label, line=True)
    waterfall = None
    water = figures.waterfall
    if water is not None:
        steps = [charts.Step("opening", str(LABELS["opening"]), water.opening, "total")]
        for kind in MOVEMENTS:
            steps.append(charts.Step(kind, str(LABELS[kind]), getattr(water, kind),
                                     "down" if kind in ("contraction", "churn") else "up",
                                     _figure_url(month, f"movement:{kind}", currency)))
        steps.append(charts.Step("closing", str(LABELS["closing"]), water.closing, "total"))
        waterfall = charts.waterfall_chart(steps, value_label=value, axis_label=axis)
    return {"mrr_chart": mrr, "arr_chart": arr, "waterfall_chart": waterfall}


@blueprint.get("/")
def show():
    today = business_date()
    settings = console_state().settings
    reporting_currency = settings.reporting_currency
    try:
        month = _month_of(request.args.get("month"), today)
        months = int(request.args.get("months") or dashboard.DEFAULT_MONTHS)
    except (InvalidInputError, ValueError) as exc:
        error = refusal(exc) if isinstance(exc, InvalidInputError) else _("Choose 12, 18 or 24 months.")
        return render_template("console/dashboard/show.html", board=None, error=error, month="",
                               months=dashboard.DEFAULT_MONTHS, series_months=SERIES_MONTHS), 422
    chosen = request.args.get("currency") or None
    from connector.sync_health import process_api_status, sync_health

    made_in = forecast.month_of(today)
    try:
        with reading() as session:
            bridge = None
            if settings.forecast == "on":  # one read of the MRR bridge for the dashboard and the forecast
                bridge = forecast.shared_bridge(session, dashboard.bridge_range(month, months),
                                                forecast.bridge_range(made_in, settings.forecast_history_months))
            board = dashboard.dashboard(session, month, as_of=_as_of(month, today),
                                        reporting_currency=reporting_currency, months=months, bridge=bridge)
            health = sync_health(console_state().reader, session,
                                 api_status=process_api_status(services_of(current_app)))
            predicted = None if settings.forecast == "off" else forecast.mrr_forecast(
                session, made_in, reporting_currency=reporting_currency,
                history_months=settings.forecast_history_months, bridge=bridge)
    except InvalidInputError as exc:
        return render_template("console/dashboard/show.html", board=None, error=refusal(exc), month=month,
                               months=months, series_months=SERIES_MONTHS), 422
    by_currency = {f.currency: f for f in board.currencies}
    if chosen not in by_currency:
        chosen = None
    figures = board.reporting if chosen is None else by_currency[chosen]
    single = None if figures is board.reporting else figures.currency
    drawn = _charts(figures, month, single)
    drawn.update(_forecast(predicted, reporting_currency, single))
    latest = figures.series[-1] if figures.series else None
    return render_template(
        "console/dashboard/show.html", board=board, figures=figures, health=health, month=month, months=months,
        series_months=SERIES_MONTHS, currency=single, latest=latest, labels=LABELS, movements=MOVEMENTS,
        month_label=format_date(date(*parse_month(month), 1), format="MMMM yyyy"),
        as_money=lambda amount: None if amount is None else Money(amount, figures.currency),
        figure_url=lambda figure: _figure_url(month, figure, single), **drawn)


def _forecast(result: forecast.Forecast | None, reporting_currency: str, currency: str | None) -> dict:
    """The MRR forecast made in the current month, in the chosen currency or the reporting one:
    its chart, its months and the history's rates (nothing with FORECAST=off)."""
    if result is None:
        return {"forecast": None}
    by_currency = {c.currency: c for c in result.currencies}
    code = currency or reporting_currency
    rates = None
    if currency is None:
        months = result.reporting
    else:
        chosen = by_currency.get(currency)
        months = chosen.months if chosen else ()
        rates = chosen.rates if chosen else None
    chart = None
    if months:
        def value(amount: Decimal) -> str:
            return money(Money(amount, code))

        def title(contracted: Decimal, expected: Decimal, low: Decimal, high: Decimal) -> str:
            return _("expected %(expected)s (%(low)s to %(high)s), contracted %(contracted)s",
                     expected=value(expected), low=value(low), high=value(high), contracted=value(contracted))

        def axis(amount: Decimal) -> str:
            return format_compact_currency(amount, code, locale=get_locale(), fraction_digits=1)

        chart = charts.band_chart([(m.month, m.contracted, m.expected, m.low, m.high) for m in months],
                                  value_label=value, title=title, axis_label=axis, month_label=_month_label,
                                  year_label=_year_label)
    shown = None if rates is None else {name: (getattr(rates, name) * 100).quantize(Decimal("0.01"))
                                        for name in ("churn", "expansion")} | {"months": rates.months}
    return {"forecast": result, "forecast_months": months, "forecast_chart": chart, "forecast_rates": shown,
            "forecast_money": lambda amount: Money(amount, code),
            "forecast_month": lambda month: format_date(date(*parse_month(month), 1), format="MMM yyyy")}


@blueprint.get("/customers")
def customers():
    """The customers behind one figure, by customer id and currency, PAGE_SIZE at a time."""
    today = business_date()
    figure = request.args.get("figure", "")
    currency = request.args.get("currency") or None
    after_text = request.args.get("after") or ""
    after = tuple(after_text.split("|", 1)) if "|" in after_text else None
    try:
        month = _month_of(request.args.get("month"), today)
        dashboard.check_figure(figure)
        if currency is not None and not CURRENCY.match(currency):
            raise InvalidInputError("currency", _("%(text)s is not a currency code", text=currency[:10]))
        with reading() as session:
            rows = dashboard.figure_customers(session, month, figure, as_of=_as_of(month, today),
                                              limit=PAGE_SIZE + 1, after=after, currency=currency)  # type: ignore[arg-type]
    except InvalidInputError as exc:
        if not figure:
            abort(404)
        return render_template("console/dashboard/customers.html", rows=[], error=refusal(exc), title="",
                               month="", figure=figure, kind="", next_url=None, first_url=None,
                               money_of=_money_of), 422
    kind, _sep, value = figure.partition(":")
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        last = rows[-1]
        next_url = url_for("console_dashboard.customers", month=month, figure=figure, currency=currency,
                           after=f"{last.customer_id}|{last.currency}")
    first_url = url_for("console_dashboard.customers", month=month, figure=figure, currency=currency) \
        if after else None
    return render_template("console/dashboard/customers.html", rows=rows, title=LABELS[value], kind=kind,
                           month=month, month_label=format_date(date(*parse_month(month), 1), format="MMMM yyyy"),
                           figure=figure, currency=currency, as_of=_as_of(month, today), next_url=next_url,
                           first_url=first_url, money_of=_money_of)


def _money_of(amount: Decimal | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount, currency)
