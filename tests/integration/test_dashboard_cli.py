"""``billsync rates set|import|list`` and ``billsync metrics dashboard`` through the CLI."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from connector.cli import cli
from tests.support.api import seed_subscriptions


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def env(settings):
    return {"DATABASE_URL": settings.database_url, "LOG_LEVEL": "warning"}


def test_a_rate_is_set_once_and_listed(env):
    code, output = run(["rates", "set", "USD", "1.0800", "--on", "2026-03-31"], env)
    assert code == 0, output
    assert output.strip() == "1 EUR = 1.0800 USD on 2026-03-31 stored"
    code, output = run(["rates", "set", "USD", "1.08", "--on", "2026-03-31"], env)
    assert code == 0 and "already stored; nothing changed" in output
    code, output = run(["rates", "list", "--json"], env)
    assert code == 0
    [rate] = json.loads(output)
    assert (rate["on"], rate["quote"], rate["rate"], rate["source"]) == ("2026-03-31", "USD", "1.0800", "manual")
    assert rate["entered_by"].startswith("cli")


@pytest.mark.parametrize(("args", "message"), [
    (["USD", "1.08", "--on", "2026-02-30"], "--on: '2026-02-30' is not a valid date"),
    (["usd", "1.08", "--on", "2026-03-31"], "CURRENCY: 'usd' is not an ISO 4217 code"),
    (["USD", "0", "--on", "2026-03-31"], "rate not set: rate: 0 must be greater than 0"),
    (["EUR", "1", "--on", "2026-03-31"], "rate not set: currency: EUR is the base of every rate"),
])
def test_a_bad_rate_is_one_clear_line(env, args, message):
    code, output = run(["rates", "set", *args], env)
    assert code == 2 and output.startswith(f"error: {message}"), output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output


def test_an_ecb_file_is_imported(env, tmp_path):
    path = tmp_path / "eurofxref-hist.csv"
    path.write_text("Date,USD,JPY,GBP,\n2026-03-31,1.0800,162.50,0.8600,\n2026-03-30,1.0790,N/A,0.8590,\n")
    code, output = run(["rates", "import", str(path)], env)
    assert code == 0, output
    assert f"5 rates of 3 currencies over 2 days (2026-03-30 to 2026-03-31) imported from {path}" in output


def test_a_file_with_bad_rows_prints_one_line_each_and_writes_nothing(env, tmp_path):
    path = tmp_path / "eurofxref.csv"
    path.write_text("Date,USD,GBP,\n2026-03-31,1.08,0.86,\n2026-03-30,1.07x,0.85,\nyesterday,1.07,0.85,\n"
                    "2026-03-27,1.07,0,\n")
    code, output = run(["rates", "import", str(path)], env)
    assert code == 2
    assert output.strip().splitlines() == [
        f"error: {path}: line 3: USD '1.07x' is not a number",
        f"error: {path}: line 4: 'yesterday' is not a date (YYYY-MM-DD)",
        f"error: {path}: line 5: GBP 0 must be greater than 0",
    ]
    code, output = run(["rates", "list"], env)
    assert code == 0 and output.strip() == "no exchange rate stored"


def test_a_missing_file_is_one_line(env, tmp_path):
    code, output = run(["rates", "import", str(tmp_path / "none.csv")], env)
    assert code == 2 and output.startswith("error: ") and "cannot be read" in output


def test_the_dashboard_prints_the_bridge_s_figures(settings, env):
    from connector.database import make_engine

    engine = make_engine(settings.database_url)
    seed_subscriptions(engine)
    engine.dispose()
    run(["rates", "set", "USD", "1.0800", "--on", "2026-03-31"], env)
    code, output = run(["metrics", "dashboard", "--month", "2026-03", "--as-of", "2026-03-31", "--json"], env)
    assert code == 0, output
    board = json.loads(output)
    eur = next(f for f in board["currencies"] if f["currency"] == "EUR")
    assert eur["waterfall"]["expansion"] == "330.00" and eur["net_revenue_retention"] == "115.38"
    assert board["reporting"]["series"][-1]["mrr"] == "2752.78"
    assert board["sync"]["outbox_pending"] > 0 and board["sync"]["dead_letters"] == 0
    code, output = run(["metrics", "mrr", "--from", "2026-03", "--to", "2026-03", "--csv"], env)
    for row in csv.DictReader(io.StringIO(output)):
        figures = next(f for f in board["currencies"] if f["currency"] == row["currency"])
        for part in ("opening", "new", "expansion", "reactivation", "contraction", "churn", "closing"):
            assert Decimal(figures["waterfall"][part]) == Decimal(row[part]), (row["currency"], part)
        assert Decimal(figures["series"][-1]["arr"]) == Decimal(row["arr"])
    code, output = run(["metrics", "dashboard", "--month", "2026-03", "--as-of", "2026-03-31"], env)
    assert code == 0, output
    assert "MRR expansion" in output and "rates used (1 EUR =): 2026-03 USD 1.0800 (2026-03-31)" in output
    assert "sync: last pull -, last push -; outbox " in output and "0 dead letters" in output
    code, output = run(["metrics", "dashboard", "--month", "2026-04", "--figure", "movement:churn"], env)
    assert code == 0 and "cus-b" in output and "-300.00" in output


@pytest.mark.parametrize(("args", "message"), [
    (["--month", "2026-13"], "--month: '2026-13' is not a month"),
    (["--month", "2026-03", "--currency", "euro"], "--currency: 'euro' is not an ISO 4217 code"),
    (["--month", "2026-03", "--currency", "XXX"], "currency: unknown currency 'XXX'"),
    (["--month", "2026-03", "--figure", "aging:100+"], "--figure: 'aging:100+' is not a figure"),
])
def test_bad_dashboard_options_are_one_clear_line(env, args, message):
    code, output = run(["metrics", "dashboard", *args], env)
    assert code == 2 and output.startswith(f"error: {message}"), output
    assert len(output.strip().splitlines()) == 1


def test_the_mrr_kept_at_month_ends_is_checked_and_rebuilt(env, engine):
    from sqlalchemy import update

    from billing_engine.storage.revenue import MrrMonthEnd
    from connector.database import transaction

    seed_subscriptions(engine)
    code, output = run(["metrics", "check-mrr"], env)
    assert (code, output.strip()) == (0, "MRR at month ends agrees with the subscriptions")
    _, bridge = run(["metrics", "mrr", "--from", "2026-01", "--to", "2026-06", "--csv"], env)
    t = MrrMonthEnd.__table__
    with transaction(engine) as s:
        s.execute(update(t).where(t.c.customer_id == "cus-a", t.c.month == "2026-03").values(mrr=Decimal("1.00")))
    code, output = run(["metrics", "check-mrr"], env)
    assert code != 0 and "Traceback" not in output
    assert output.strip().splitlines() == [
        "error: cus-a EUR 2026-03: kept MRR 2145.00 -> 1.00, ARR 25740.00 -> 29700.00 (expansion), "
        "computed MRR 2145.00 -> 2475.00, ARR 25740.00 -> 29700.00 (expansion)"]
    code, output = run(["metrics", "rebuild-mrr"], env)
    assert code == 0 and output.startswith("MRR at month ends rebuilt: ") and output.strip().endswith(" rows")
    assert run(["metrics", "check-mrr"], env)[0] == 0
    assert run(["metrics", "mrr", "--from", "2026-01", "--to", "2026-06", "--csv"], env)[1] == bridge
