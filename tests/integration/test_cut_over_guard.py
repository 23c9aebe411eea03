"""Until BILLING_STARTS_ON is set, a connected org's bill run (``billsync bill-run`` and the clock's
job) refuses in one line and touches nothing; without Salesforce it bills as before."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import Invoice
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import start_subscription
from connector import scheduler
from connector.billing_jobs import cut_over_problem, run_bill_run
from connector.cli import cli
from connector.clock_runs import ClockRun
from connector.database import transaction
from connector.settings import SettingsError, load_settings
from connector.wiring import build_services

pytestmark = pytest.mark.timeout(120)

CONNECTED = {"SF_AUTH": "session", "SF_INSTANCE_URL": "https://example.my.salesforce.com",
             "SF_ACCESS_TOKEN": "token", "LOG_LEVEL": "warning"}
REFUSAL = ("set BILLING_STARTS_ON to the first day billsync bills (e.g. {}): "
           "without it, every won deal would be billed from its start date")


def seed(engine):
    """One customer billed 100.00 a month since 1 Oct 2026."""
    price = make_price("pr-plan", make_product("p-plan", "PLAN", "Plan"), currency="EUR", model="flat",
                       unit_price="100")
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR"))
        upsert_product(s, price.product)
        upsert_price(s, price)
        start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", date(2026, 10, 1),
                                                [SubscriptionItem("plan", price)]),
                           now=datetime(2026, 10, 1, tzinfo=UTC))


def invoices(engine):
    with Session(engine) as s:
        return s.exec(select(Invoice)).all()


def test_the_refusal_names_the_setting_and_the_next_first_of_month():
    settings = load_settings({**CONNECTED, "BILLSYNC_TIMEZONE": "Pacific/Auckland"})
    # 23:30 UTC on 30 November is 1 December in Auckland: the example is the first of January.
    assert cut_over_problem(settings, datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == REFUSAL.format("2027-01-01")
    assert cut_over_problem(settings.replace(billing_starts_on=date(2026, 12, 1))) is None
    assert cut_over_problem(load_settings({"SF_AUTH": "none"})) is None


def test_bill_run_on_a_connected_org_without_a_cut_over_refuses_in_one_line(database_url, engine):
    seed(engine)
    result = CliRunner().invoke(cli, ["bill-run", "--as-of", "2026-12-06"],
                                env={**CONNECTED, "DATABASE_URL": database_url}, catch_exceptions=False)
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: set BILLING_STARTS_ON to the first day billsync bills (e.g. ")
    assert line.endswith("): without it, every won deal would be billed from its start date")
    assert invoices(engine) == []


def test_the_clocks_bill_run_refuses_too_and_records_why(database_url, engine, monkeypatch):
    seed(engine)
    services = build_services(load_settings({**CONNECTED, "DATABASE_URL": database_url}))
    now = datetime(2026, 12, 6, 2, tzinfo=UTC)
    with pytest.raises(SettingsError) as refused:
        run_bill_run(services, date(2026, 12, 6), now=now)
    assert refused.value.problems == [REFUSAL.format("2027-01-01")]
    monkeypatch.setattr(scheduler, "_now", lambda: now)
    scheduler.run_job("bill_run", services)  # logged, never raised: the clock goes on
    with Session(engine) as s:
        run = s.get(ClockRun, ("bill_run", date(2026, 12, 6)))
    assert run is not None and run.finished_at is None
    assert run.last_error == f"SettingsError: {REFUSAL.format('2027-01-01')}"
    assert invoices(engine) == []
    services.engine.dispose()


def test_with_a_cut_over_the_connected_bill_run_bills_from_it(database_url, engine):
    seed(engine)
    env = {**CONNECTED, "DATABASE_URL": database_url, "BILLING_STARTS_ON": "2026-12-01"}
    result = CliRunner().invoke(cli, ["bill-run", "--as-of", "2026-12-06"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "bill run as of 2026-12-06: 1 invoices created, 1 finalized" in result.output
    [invoice] = invoices(engine)
    assert invoice.total == 100  # December only, not October and November


def test_without_salesforce_the_engine_bills_as_before(database_url, engine):
    seed(engine)
    result = CliRunner().invoke(cli, ["bill-run", "--as-of", "2026-12-06"],
                                env={"SF_AUTH": "none", "DATABASE_URL": database_url, "LOG_LEVEL": "warning"},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [invoice] = invoices(engine)
    assert invoice.total == 300  # October, November and December
