"""``billsync metrics forecast`` and ``billsync metrics forecast-accuracy`` through the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from billing_engine.forecast import months_after
from billing_engine.use_cases.forecast import month_of
from connector.billing_jobs import today_in
from connector.cli import cli
from tests.support.forecast import seed_forecast


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def env(settings):
    return {"DATABASE_URL": settings.database_url, "LOG_LEVEL": "warning"}


@pytest.fixture
def this_month(settings, engine):
    month = month_of(today_in(settings.billsync_timezone))
    seed_forecast(engine, month)
    return month


def test_the_forecast_is_printed_per_month_and_currency(env, this_month):
    code, output = run(["metrics", "forecast"], env)
    assert code == 0, output
    assert f"MRR forecast made in {this_month}" in output
    lines = [line.split() for line in output.splitlines()]
    eur = [line for line in lines if len(line) == 6 and line[1] == "EUR"]
    assert [line[0] for line in eur[:3]] == [this_month, months_after(this_month, 1), months_after(this_month, 2)]
    assert [line[2] for line in eur[:4]] == ["300.00", "300.00", "200.00", "210.00"]
    assert "missing rates (no total in the reporting currency):" in output  # no USD rate stored
    assert "EUR: monthly churn 1.30 %" in output


def test_the_forecast_as_json_keeps_decimal_strings(env, this_month):
    code, output = run(["metrics", "forecast", "--json"], env)
    assert code == 0, output
    body = json.loads(output)
    eur = next(c for c in body["currencies"] if c["currency"] == "EUR")
    assert eur["months"][2]["contracted"] == "200.00"


def test_store_writes_the_month_once_and_accuracy_reads_it(env, this_month, engine):
    code, output = run(["metrics", "forecast", "--store"], env)
    assert code == 0 and output.strip() == f"MRR forecast made in {this_month} stored: 24 rows", output
    code, output = run(["metrics", "forecast", "--store"], env)
    assert code == 0 and "already stored; unchanged" in output
    code, output = run(["metrics", "forecast-accuracy"], env)
    assert code == 0 and "no stored forecast of a closed month yet" in output  # the month is not over


@pytest.mark.parametrize(("args", "message"), [
    (["forecast", "--month", "2026-13"], "--month: '2026-13' is not a month"),
    (["forecast", "--currency", "eur"], "--currency: 'eur' is not an ISO 4217 code"),
    (["forecast", "--currency", "XXX"], "currency"),
    (["forecast", "--store", "--month", "2026-01"], "--store stores the current month's forecast"),
    (["forecast-accuracy", "--currency", "1"], "--currency: '1' is not an ISO 4217 code"),
])
def test_bad_options_are_one_clear_line(env, args, message):
    code, output = run(["metrics", *args], env)
    assert code == 2 and output.startswith("error: ") and message in output, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output


def test_turned_off_the_commands_say_so(env):
    code, output = run(["metrics", "forecast"], {**env, "FORECAST": "off"})
    assert code == 2 and output.strip() == "error: the MRR forecast is turned off (FORECAST=off)"
