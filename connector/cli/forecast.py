"""``billsync metrics forecast`` and ``billsync metrics forecast-accuracy``: the MRR forecast
(docs/intelligence.md, MRR forecast), added to the ``metrics`` group."""

from __future__ import annotations

import re

import click

from connector.cli.billing import parse_month
from connector.cli.support import UserError, load_services, reported_as


def _today(services):
    from connector.billing_jobs import today_in

    return today_in(services.settings.billsync_timezone)


def _services_with_forecast():
    services = load_services()
    if services.settings.forecast == "off":
        raise UserError(["the MRR forecast is turned off (FORECAST=off)"])
    return services


@click.command("forecast")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="The forecast's first month (default: the current month).")
@click.option("--currency", default=None, metavar="CODE",
              help="The reporting currency (default: the REPORTING_CURRENCY setting).")
@click.option("--history-months", default=None, type=click.IntRange(1, 60),
              help="Complete months of history the rates come from (default: FORECAST_HISTORY_MONTHS).")
@click.option("--store", is_flag=True, help="Store this month's forecast now (once a month; the clock does it "
                                            "on the 1st) instead of printing it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (decimal strings).")
def forecast_command(month: str | None, currency: str | None, history_months: int | None, store: bool,
                     as_json: bool) -> None:
    """The MRR forecast of the next 12 months: contracted MRR from the subscriptions, the expected
    MRR and its band from the history's churn and expansion, per currency and in the reporting
    currency."""
    problems = []
    chosen = None
    if month is not None:
        chosen, problem = parse_month("--month", month)
        if problem:
            problems.append(problem)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(f"--currency: {currency!r} is not an ISO 4217 code such as EUR")
    if store and (month is not None or history_months is not None):
        problems.append("--store stores the current month's forecast with FORECAST_HISTORY_MONTHS; "
                        "give it without --month or --history-months")
    if problems:
        raise UserError(problems)
    services = _services_with_forecast()
    if store:
        from connector.billing_jobs import store_month_forecast

        with reported_as():
            stored = store_month_forecast(services, _today(services))
        if stored.stored:
            click.echo(f"MRR forecast made in {stored.made_in} stored: {stored.rows} rows")
        else:
            click.echo(f"MRR forecast made in {stored.made_in} was already stored; unchanged")
        return
    from sqlmodel import Session

    from billing_engine.use_cases import forecast
    from connector.database import READ_ONLY

    reader = services.engine.execution_options(**{READ_ONLY: True})
    with reported_as(), Session(reader) as session:
        result = forecast.mrr_forecast(
            session, chosen or forecast.month_of(_today(services)),
            reporting_currency=currency or services.settings.reporting_currency,
            history_months=history_months or services.settings.forecast_history_months)
    if as_json:
        from connector.cli.output import echo_json

        echo_json(result)
        return
    _print_forecast(result)


def _percent(value) -> str:
    from decimal import Decimal

    return f"{(value * 100).quantize(Decimal('0.01'))} %"


def _print_forecast(result) -> None:
    from connector.cli.output import echo_table

    click.echo(f"MRR forecast made in {result.made_in}; reporting currency {result.reporting_currency} "
               f"at the rates of {result.rates_month}")
    header = ["month", "currency", "contracted", "expected", "low", "high"]
    rows: list[list[str]] = []
    for c in result.currencies:
        rows.extend([m.month, c.currency, str(m.contracted), str(m.expected), str(m.low), str(m.high)]
                    for m in c.months)
    for m in result.reporting or ():
        rows.append([m.month, f"{result.reporting_currency} (all)", str(m.contracted), str(m.expected), str(m.low),
                     str(m.high)])
    if not rows:
        click.echo("no MRR ahead: no subscription runs")
        return
    echo_table(header, rows, right=header[2:])
    click.echo("")
    for c in result.currencies:
        click.echo(f"{c.currency}: monthly churn {_percent(c.rates.churn)} (± {_percent(c.rates.churn_spread)}), "
                   f"expansion {_percent(c.rates.expansion)} (± {_percent(c.rates.expansion_spread)}) "
                   f"over {c.rates.months} months")
    if result.missing_rates:
        click.echo("missing rates (no total in the reporting currency): "
                   + ", ".join(f"{m.month} {m.currency}" for m in result.missing_rates))


@click.command("forecast-accuracy")
@click.option("--currency", default=None, metavar="CODE", help="Only this currency.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (decimal strings).")
def forecast_accuracy_command(currency: str | None, as_json: bool) -> None:
    """How far the stored monthly forecasts were from the actual month-end MRR: the mean absolute
    percentage error (MAPE) per currency and months ahead."""
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        raise UserError([f"--currency: {currency!r} is not an ISO 4217 code such as EUR"])
    services = _services_with_forecast()
    from sqlmodel import Session

    from billing_engine.use_cases import forecast
    from connector.database import READ_ONLY

    reader = services.engine.execution_options(**{READ_ONLY: True})
    with reported_as(), Session(reader) as session:
        rows = forecast.forecast_accuracy(session, _today(services), currency=currency)
    if as_json:
        from connector.cli.output import echo_json

        echo_json(rows)
        return
    if not rows:
        click.echo("no stored forecast of a closed month yet (the clock stores one each month; "
                   "billsync metrics forecast --store)")
        return
    from connector.cli.output import echo_table

    header = ["currency", "months ahead", "months", "contracted MAPE", "expected MAPE", "within band"]
    echo_table(header, [[a.currency, str(a.horizon), str(a.months),
                         "-" if a.contracted_mape is None else f"{a.contracted_mape} %",
                         "-" if a.expected_mape is None else f"{a.expected_mape} %",
                         f"{a.within_band}/{a.months}"] for a in rows], right=header[1:])


def add_forecast_commands(metrics: click.Group) -> None:
    metrics.add_command(forecast_command)
    metrics.add_command(forecast_accuracy_command)
