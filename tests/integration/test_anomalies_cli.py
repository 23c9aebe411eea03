"""``billsync bill-run`` with the anomaly guard, ``billsync invoices anomalies`` and ``billsync invoices
release`` through the command line (docs/intelligence.md, The anomaly guard)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from click.testing import CliRunner

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import ChargeLine
from billing_engine.customers import Customer
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.anomalies import AnomalyGuard
from billing_engine.use_cases.billing import run_billing
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import start_subscription
from connector.cli import cli
from connector.database import transaction
from tests.support.billing import StaticSource, account, seed_source

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def charge(key, starts_on, ends_before, currency="EUR"):
    return ChargeLine(key, "sub-a", "seats", "SEATS", "Seats", "recurring", starts_on, ends_before, D(1), D("100.00"),
                      D("100.00"), D(0), currency, "", "Seats")


def run(database_url, *args, **env):
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                                                      "BILLSYNC_TIMEZONE": "UTC", **env})
    return result.exit_code, result.output


@pytest.fixture
def held(engine, database_url):
    """cus-a billed 100.00 EUR in January; February's invoice (id 2) came in USD and is held."""
    source = StaticSource([account("cus-a")], {"cus-a": [charge("a:1", JAN, FEB), charge("a:2", FEB, MAR, "USD")]})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source, guard=AnomalyGuard("hold"))
    run_billing(engine, FEB, source=source, guard=AnomalyGuard("hold"))
    return database_url


def test_held_invoices_are_listed_with_their_reasons_then_released(held):
    code, output = run(held, "invoices", "anomalies")
    assert code == 0, output
    assert "invoice 2  customer cus-a cus-a  bill run 2026-02-01  total 120.00 USD" in output
    assert "  currency (score 1.00): billed in USD; this customer's previous invoice was in EUR" in output
    code, output = run(held, "invoices", "anomalies", "--json")
    assert code == 0 and [i["invoice_id"] for i in json.loads(output)] == [2]

    code, output = run(held, "invoices", "release", "2", "--note", "moved to the US entity", "--on", "2026-02-03")

    assert code == 0, output
    assert output.startswith("invoice 2 released and finalized as INV-2026-000002 on 2026-02-03: total 120.00 USD")
    assert run(held, "invoices", "anomalies") == (0, "no invoice held for anomalies\n")
    code, output = run(held, "invoices", "show", "INV-2026-000002")
    assert "anomaly currency (score 1.00, released " in output and ": moved to the US entity): billed in USD" in output


def test_release_refuses_a_missing_note_and_an_invoice_not_held(held):
    code, output = run(held, "invoices", "release", "2", "--note", " ")
    assert (code, output.strip()) == (2, "error: --note: say why the invoice is released (what was checked)")
    code, output = run(held, "invoices", "release", "INV-2026-000001", "--note", "fine")
    assert code == 2 and "is not held for anomalies" in output and "Traceback" not in output


SEATS = make_price("pr-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="per_unit",
                   unit_price="35")


@pytest.fixture
def subscribed(engine, database_url):
    """One customer at 20 % with 10 seats, billed in January and February by the command."""
    with transaction(engine) as s:
        upsert_product(s, SEATS.product)
        upsert_price(s, SEATS)
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", tax_rate_percent=D(20)))
        start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", JAN, [
            SubscriptionItem("seats", SEATS, quantity=D(10))]), now=datetime(2025, 12, 20, tzinfo=UTC))
    for day in ("2026-01-01", "2026-02-01"):
        code, output = run(database_url, "bill-run", "--as-of", day)
        assert code == 0 and "1 finalized" in output, output
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", tax_rate_percent=D(2)))
    return database_url


def test_the_bill_run_says_how_many_invoices_it_held(subscribed):
    code, output = run(subscribed, "bill-run", "--as-of", "2026-03-01")
    assert code == 0, output
    assert "0 finalized" in output
    assert ("1 invoices far from their customer's history (ANOMALY_GUARD=hold): held as drafts; see billsync "
            "invoices anomalies") in output


def test_the_guard_can_be_turned_off(subscribed):
    code, output = run(subscribed, "bill-run", "--as-of", "2026-03-01", ANOMALY_GUARD="off")
    assert code == 0 and "1 finalized" in output and "far from" not in output, output
