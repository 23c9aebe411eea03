"""``billsync usage import FILE.csv`` and ``billsync usage partitions`` through the CLI."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from click.testing import CliRunner

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import start_subscription
from billing_engine.use_cases.usage import usage_quantities
from connector.cli import cli
from connector.database import transaction
from tests.conftest import BACKEND

API = make_price("pr-api", make_product("p-api", "api_calls", "API calls"), currency="EUR", model="per_unit",
                 charge_type="usage", unit_price="0.10")
START = date(2020, 1, 1)
WHEN = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


@pytest.fixture
def metered(engine, database_url):
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR"))
        upsert_product(s, API.product)
        upsert_price(s, API)
        start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", START, [SubscriptionItem("api", API)],
                                                term_months=None), now=datetime(2019, 12, 1, tzinfo=UTC))
    return {"DATABASE_URL": database_url, "LOG_LEVEL": "warning"}


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def recorded(engine) -> D:
    with transaction(engine) as s:
        totals = usage_quantities(s, "sub-1", ["api"], START, date(9999, 1, 1), lambda _i, _on: START)
    return totals.get(("api", START), D(0))


def write(tmp_path, text: str):
    path = tmp_path / "events.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_csv_file_is_imported_once(metered, engine, tmp_path):
    at = WHEN.isoformat()
    path = write(tmp_path, "transaction_id,subscription_id,customer_id,metric,quantity,timestamp\n"
                           f"e1,sub-1,,api_calls,100,{at}\n"
                           f"e2,,cus-1,api_calls,2.5,{at}\n"
                           "\n"
                           f'"e3",sub-1,,api_calls," 7 ",{at}\n')
    code, out, err = run(["usage", "import", path], metered)
    assert code == 0, err
    assert out.splitlines()[-1] == f"{path}: 3 rows: 3 accepted, 0 duplicates (already stored), 0 failed"
    assert recorded(engine) == D("109.5")
    # Importing the same file again changes nothing.
    code, out, _ = run(["usage", "import", path], metered)
    assert code == 0
    assert out.splitlines()[-1] == f"{path}: 3 rows: 0 accepted, 3 duplicates (already stored), 0 failed"
    assert recorded(engine) == D("109.5")


def test_each_bad_row_is_one_error_line_and_the_valid_rows_are_stored(metered, engine, tmp_path):
    at = WHEN.isoformat()
    path = write(tmp_path, "metric,quantity,timestamp,transaction_id,subscription_id\n"
                           f"api_calls,10,{at},ok-1,sub-1\n"
                           f"api_calls,-1,{at},neg,sub-1\n"
                           f"sms,1,{at},metric,sub-1\n"
                           f"api_calls,1,{at},extra,sub-1,oops\n"
                           f"api_calls,,{at},no-quantity,sub-1\n"
                           f"api_calls,1,2001-01-01T00:00:00Z,old,sub-1\n"
                           f"api_calls,5,{at},ok-2,sub-1\n")
    code, out, err = run(["usage", "import", path], metered)
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: line 3: quantity: must not be negative, got -1",
        "error: line 4: metric: subscription sub-1 has no usage item with metric 'sms' on "
        f"{WHEN.date().isoformat()}",
        "error: line 5: row: 6 cells for 5 columns; not imported",
        "error: line 6: quantity: is required",
        "error: line 7: timestamp: 2001-01-01T00:00:00Z is more than 35 days old; older usage is not accepted",
        "error: 5 rows failed and were not stored; the other rows were",
    ]
    assert out.splitlines()[-1] == f"{path}: 7 rows: 2 accepted, 0 duplicates (already stored), 5 failed"
    assert recorded(engine) == D(15)


def test_a_wrong_header_stores_nothing(metered, engine, tmp_path):
    path = write(tmp_path, f"transaction_id,subscription,metric,qty,timestamp\ne1,sub-1,api_calls,1,{WHEN.isoformat()}\n")
    code, out, err = run(["usage", "import", path], metered)
    assert code == 2
    assert err.splitlines() == [
        f"error: {path}: unknown column 'subscription'; the columns are transaction_id, subscription_id, "
        "customer_id, metric, quantity, timestamp",
        f"error: {path}: unknown column 'qty'; the columns are transaction_id, subscription_id, customer_id, "
        "metric, quantity, timestamp",
        f"error: {path}: missing column 'quantity'",
        f"error: {path}: missing column 'subscription_id' (or 'customer_id')",
    ]
    assert recorded(engine) == 0


def test_a_missing_file_is_one_line(metered, tmp_path):
    code, _, err = run(["usage", "import", str(tmp_path / "nope.csv")], metered)
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'nope.csv'}: No such file or directory"


def test_usage_partitions_prepares_the_months_ahead(metered):
    code, out, err = run(["usage", "partitions", "--months-ahead", "14"], metered)
    assert code == 0, err
    if BACKEND == "sqlite":
        assert out.strip() == "usage partitions: SQLite keeps usage events in one table; nothing to prepare"
    else:
        assert out.startswith("usage partitions through ") and "0 events moved out of the default partition" in out
        code, out, _ = run(["usage", "partitions", "--months-ahead", "14"], metered)
        assert "created none (all there)" in out
