"""Usage events through the ingestion use case: stored once per transaction id, checked event by
event (the valid ones stored even when others fail), summed per period by the bill run, late
events billed as a late-usage line; on PostgreSQL, each in its month's partition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, Integer, MetaData, select, text
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.errors import InvalidInputError
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import amend_subscription, cancel_subscription, start_subscription
from billing_engine.use_cases.usage import ingest_usage_events, prepare_usage_partitions
from connector.database import make_engine, transaction, upgrade
from tests.conftest import BACKEND

API = make_price("pr-api", make_product("p-api", "api_calls", "API calls"), currency="EUR", model="per_unit",
                 charge_type="usage", unit_price="0.10")
STORAGE = make_price("pr-gb", make_product("p-gb", "storage_gb", "Storage"), currency="EUR", model="per_unit",
                     charge_type="usage", unit_price="2")
BASE = make_price("pr-base", make_product("p-base", "base", "Base fee"), currency="EUR", model="flat",
                  unit_price="50")
NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def at(day: int, hour: int = 12, month: int = 11) -> str:
    return datetime(2026, month, day, hour, tzinfo=UTC).isoformat()


def event(key: str, quantity: object = "10", *, subscription: str | None = "sub-1", metric: str = "api_calls",
          timestamp: str | None = None, customer: str | None = None) -> dict:
    raw = {"transaction_id": key, "metric": metric, "quantity": quantity, "timestamp": timestamp or at(10)}
    if subscription is not None:
        raw["subscription_id"] = subscription
    if customer is not None:
        raw["customer_id"] = customer
    return raw


@pytest.fixture
def billing(engine):
    """Customer cus-1 (Paris) with sub-1: a base fee, API calls at 0.10 and storage at 2 per GB from Nov 1;
    customer cus-2 with two subscriptions that both meter API calls."""
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", timezone="Europe/Paris"))
        upsert_customer(s, Customer("cus-2", "Bolt", "EUR"))
        for price in (API, STORAGE, BASE):
            upsert_product(s, price.product)
            upsert_price(s, price)
        for sub in (
            make_subscription("sub-1", "cus-1", "EUR", NOV, [SubscriptionItem("base", BASE),
                                                             SubscriptionItem("api", API),
                                                             SubscriptionItem("gb", STORAGE)]),
            make_subscription("sub-2a", "cus-2", "EUR", NOV, [SubscriptionItem("api", API)]),
            make_subscription("sub-2b", "cus-2", "EUR", NOV, [SubscriptionItem("api", API)]),
        ):
            start_subscription(s, sub, now=datetime(2026, 10, 20, tzinfo=UTC))
    return engine


def ingest(engine, events, now=NOW, **kw):
    with transaction(engine) as s:
        return ingest_usage_events(s, events, now=now, **kw)


def usage_lines(engine, customer="cus-1", on=DEC):
    with Session(engine) as s:
        invoice = s.scalars(select(Invoice).where(Invoice.customer_id == customer, Invoice.bill_run_on == on)).one()
        return [(ln.description, ln.quantity, ln.net) for ln in invoice_lines(s, invoice.id) if ln.kind == "usage"]


def test_a_usage_product_bills_the_events_sent_for_its_period(billing):
    result = ingest(billing, [event("e1", "1200"), event("e2", "300.5", timestamp=at(29, 22)),
                              event("e3", "7", metric="storage_gb"),
                              event("e4", "100", subscription=None, customer="cus-1")])
    assert [r.status for r in result.results] == ["accepted"] * 4
    assert (result.accepted, result.duplicates, result.failed) == (4, 0, 0)
    # After the period, at the next run: 1,600.5 calls × 0.10 = 160.05; 7 GB × 2 = 14.00.
    bill_customers(billing, DEC)
    assert sorted(usage_lines(billing)) == [("API calls usage (Nov 1 – Dec 1 2026)", D("1600.5"), D("160.05")),
                                            ("Storage usage (Nov 1 – Dec 1 2026)", D(7), D("14.00"))]


def test_every_quantity_form_is_stored_exactly(billing):
    """Integers, exponents and nine decimals reach the database as the decimals sent."""
    result = ingest(billing, [event("int", 7), event("exp", "1.5E+2"), event("tiny", "0.000000001"),
                              event("big", "123456789012.123456789")])
    assert result.accepted == 4
    bill_customers(billing, DEC)
    assert usage_lines(billing) == [("API calls usage (Nov 1 – Dec 1 2026)", D("123456789169.123456790"),
                                     D("12345678916.91"))]


def test_an_event_resent_with_the_same_transaction_id_counts_once(billing):
    first = ingest(billing, [event("e1", "100"), event("e2", "5"), event("e1", "100")])
    assert [r.status for r in first.results] == ["accepted", "accepted", "duplicate"]
    again = ingest(billing, [event("e1", "100"), event("e2", "999"), event("e3", "1")])
    assert [(r.transaction_id, r.status) for r in again.results] == [
        ("e1", "duplicate"), ("e2", "duplicate"), ("e3", "accepted")]
    bill_customers(billing, DEC)
    assert usage_lines(billing) == [("API calls usage (Nov 1 – Dec 1 2026)", D(106), D("10.60"))]


def test_a_late_event_is_billed_as_a_late_usage_line_on_the_next_run(billing):
    ingest(billing, [event("e1", "1000")])
    bill_customers(billing, DEC)
    assert [line[1:] for line in usage_lines(billing)] == [(D(1000), D("100.00"))]
    # Dec 3: 250 more calls of Nov 20 arrive; November was billed already.
    late = ingest(billing, [event("e2", "250", timestamp=at(20))], now=datetime(2026, 12, 3, 9, tzinfo=UTC))
    assert late.accepted == 1
    bill_customers(billing, date(2026, 12, 5))
    assert usage_lines(billing, on=date(2026, 12, 5)) == [
        ("API calls late usage (Nov 1 – Dec 1 2026)", D(250), D("25.00"))]
    assert bill_customers(billing, date(2026, 12, 6)).invoices_created == 0  # billed once


def test_bad_events_get_an_error_each_and_the_valid_ones_are_stored(billing):
    events = [
        event("ok-1", "3"),
        event("bad-metric", metric="sms"),
        event("bad-sub", subscription="sub-404"),
        event("bad-customer", subscription=None, customer="cus-404"),
        event("negative", "-1"),
        event("future", timestamp=(NOW + timedelta(minutes=6)).isoformat()),
        event("old", timestamp=(NOW - timedelta(days=36)).isoformat()),
        event("no-offset", timestamp="2026-11-20T10:00:00"),
        event("", "2"),
        event("both", customer="cus-1"),
        event("float", 1.5),
        event("before-start", timestamp=at(28, month=10)),
        event("ambiguous", subscription=None, customer="cus-2"),
        "not an object",
        event("ok-2", "4", timestamp=(NOW + timedelta(minutes=4)).isoformat()),
    ]
    result = ingest(billing, events)
    by_index = {r.index: r for r in result.results}
    assert [(r.status, [e.field for e in r.errors]) for r in result.results] == [
        ("accepted", []), ("error", ["metric"]), ("error", ["subscription_id"]), ("error", ["customer_id"]),
        ("error", ["quantity"]), ("error", ["timestamp"]), ("error", ["timestamp"]), ("error", ["timestamp"]),
        ("error", ["transaction_id"]), ("error", ["customer_id"]), ("error", ["quantity"]), ("error", ["timestamp"]),
        ("error", ["customer_id"]), ("error", [""]), ("accepted", []),
    ]
    assert by_index[4].errors[0].message == "must not be negative, got -1"
    assert "in the future" in by_index[5].errors[0].message
    assert "more than 35 days old" in by_index[6].errors[0].message
    assert "no UTC offset" in by_index[7].errors[0].message
    assert "sub-2a, sub-2b" in by_index[12].errors[0].message and "send subscription_id" in by_index[12].errors[0].message
    assert "unknown subscription 'sub-404'" in by_index[2].errors[0].message
    assert (result.accepted, result.failed) == (2, 13)
    bill_customers(billing, DEC)
    assert [line[1:] for line in usage_lines(billing)] == [(D(7), D("0.70"))]  # ok-1 and ok-2 (Nov 30 12:04 UTC)
    # The rejected ones stored nothing: sent again, fixed, they are accepted.
    fixed = ingest(billing, [event("negative", "1"), event("bad-metric", metric="storage_gb")])
    assert [r.status for r in fixed.results] == ["accepted", "accepted"]


def test_an_event_counts_on_its_date_in_the_customers_timezone(billing):
    # 23:30 UTC on Nov 30 is 00:30 on Dec 1 in Paris: December usage, not billed on Dec 1.
    ingest(billing, [event("nov", "10", timestamp=at(30, 22)), event("dec", "99", timestamp="2026-11-30T23:30:00Z")],
           now=datetime(2026, 12, 1, 1, tzinfo=UTC))
    bill_customers(billing, DEC)
    assert [line[1:] for line in usage_lines(billing)] == [(D(10), D("1.00"))]


def test_an_event_counts_only_while_its_item_is_on_the_subscription(billing):
    """An item added on Nov 15 meters from that day; after an immediate cancellation on Nov 25
    the subscription runs no more."""
    sms = make_price("pr-sms", make_product("p-sms", "sms", "SMS"), currency="EUR", model="per_unit",
                     charge_type="usage", unit_price="0.05")
    with transaction(billing) as s:
        upsert_product(s, sms.product)
        upsert_price(s, sms)
        amend_subscription(s, "sub-1", Amendment("add-sms", 0, AmendmentAction.ADD_ITEM, date(2026, 11, 15),
                                                 item=SubscriptionItem("sms", sms)))
        cancel_subscription(s, "sub-1", date(2026, 11, 25), immediate=True)
    result = ingest(billing, [event("early", metric="sms", timestamp=at(14)), event("sms", "100", metric="sms",
                                                                                    timestamp=at(20)),
                              event("late", timestamp=at(26)), event("api", "4", timestamp=at(24)),
                              event("by-customer", "1", subscription=None, customer="cus-1", metric="sms",
                                    timestamp=at(16))])
    assert [(r.status, [e.field for e in r.errors]) for r in result.results] == [
        ("error", ["metric"]), ("accepted", []), ("error", ["timestamp"]), ("accepted", []), ("accepted", [])]
    assert "has no usage item with metric 'sms' on 2026-11-14" in result.results[0].errors[0].message
    assert "does not run on 2026-11-26" in result.results[2].errors[0].message
    bill_customers(billing, DEC)
    assert sorted(line[1:] for line in usage_lines(billing)) == [(D(4), D("0.40")), (D(101), D("5.05"))]


def test_a_renamed_product_code_is_the_metric_from_the_next_batch_on(billing):
    assert ingest(billing, [event("e1", metric="api_calls")]).accepted == 1
    with transaction(billing) as s:
        upsert_product(s, make_product("p-api", "api_requests", "API calls"))
    result = ingest(billing, [event("e2", metric="api_calls"), event("e3", metric="api_requests")])
    assert [r.status for r in result.results] == ["error", "accepted"]


def test_a_subscription_changed_since_the_last_batch_is_read_as_it_is_now(billing):
    """A batch never resolves its events on what an earlier batch read: a cancellation, an item's
    price changed in place, the customer's time zone, each is seen by the next batch."""
    first = ingest(billing, [event("before", timestamp=at(26)), event("gb", "1", metric="storage_gb"),
                             event("day", metric="nope", timestamp="2026-11-30T23:30:00Z")],
                   now=datetime(2026, 12, 1, 1, tzinfo=UTC))
    assert [r.status for r in first.results] == ["accepted", "accepted", "error"]
    assert "on 2026-12-01" in first.results[2].errors[0].message  # Paris
    with transaction(billing) as s:
        s.execute(text("UPDATE subscription_items SET price_id = 'pr-base' "
                       "WHERE subscription_id = 'sub-1' AND item_id = 'gb'"))
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", timezone="UTC"))
    second = ingest(billing, [event("gb-2", "1", metric="storage_gb"),
                              event("day-2", metric="nope", timestamp="2026-11-30T23:30:00Z")],
                    now=datetime(2026, 12, 1, 1, tzinfo=UTC))
    assert [r.status for r in second.results] == ["error", "error"]
    assert "has no usage item with metric 'storage_gb'" in second.results[0].errors[0].message
    assert "on 2026-11-30" in second.results[1].errors[0].message  # UTC now
    with transaction(billing) as s:
        cancel_subscription(s, "sub-1", date(2026, 11, 25), immediate=True)
    third = ingest(billing, [event("after", timestamp=at(26))])
    assert third.results[0].status == "error"
    assert "does not run on 2026-11-26" in third.results[0].errors[0].message


def test_the_max_age_is_the_callers_setting(billing):
    old = event("old", timestamp=(NOW - timedelta(days=20)).isoformat())
    assert ingest(billing, [old], max_age_days=10).results[0].status == "error"
    assert ingest(billing, [old], max_age_days=30).results[0].status == "accepted"


def test_a_batch_is_a_non_empty_list_of_at_most_1000_events(billing):
    with pytest.raises(InvalidInputError, match="at most 1000 events per batch, got 1001"):
        ingest(billing, [event(f"e{n}") for n in range(1001)])
    with pytest.raises(InvalidInputError, match="no events"):
        ingest(billing, [])
    assert ingest(billing, [event(f"e{n}", "1") for n in range(1000)]).accepted == 1000


@pytest.mark.postgres_only
def test_events_land_in_their_months_partition_created_on_demand(billing):
    # Partitions exist around the migration's date; March 2031 has none: the first event creates it.
    now = datetime(2031, 3, 10, tzinfo=UTC)
    with transaction(billing) as s:
        upsert_customer(s, Customer("cus-3", "Cyan", "EUR"))
        start_subscription(s, make_subscription("sub-3", "cus-3", "EUR", date(2031, 1, 1),
                                                [SubscriptionItem("api", API)]), now=now)
    result = ingest(billing, [event("m1", subscription="sub-3", timestamp="2031-02-27T10:00:00Z"),
                              event("m2", subscription="sub-3", timestamp="2031-03-01T00:00:00Z")], now=now)
    assert result.accepted == 2
    with billing.connect() as conn:
        homes = dict(conn.execute(text(
            "SELECT k.idempotency_key, e.tableoid::regclass::text FROM usage_events e "
            "JOIN usage_event_keys k ON k.id = e.event_id")).all())
    assert homes == {"m1": "usage_events_2031_02", "m2": "usage_events_2031_03"}


@pytest.mark.postgres_only
def test_events_of_a_month_without_partition_wait_in_the_default_one_until_the_clock_moves_them(billing):
    with transaction(billing) as s:
        upsert_customer(s, Customer("cus-4", "Dune", "EUR"))
        start_subscription(s, make_subscription("sub-4", "cus-4", "EUR", date(2032, 1, 1),
                                                [SubscriptionItem("api", API)]), now=datetime(2032, 1, 1, tzinfo=UTC))
    # A writer that could not create the month's partition (its lock was busy): the default one takes the events.
    with billing.begin() as conn:
        conn.execute(text("INSERT INTO usage_event_keys (id, source, idempotency_key) VALUES (900001, 'events', 'd1')"))
        conn.execute(text("INSERT INTO usage_events (event_id, occurred_on, subscription_id, subscription_item_id, "
                          "quantity, occurred_at, recorded_at) VALUES (900001, '2032-01-15', 'sub-4', 'api', 4, "
                          "'2032-01-15T10:00:00Z', '2032-01-15T10:00:00Z')"))
    with transaction(billing) as s:
        report = prepare_usage_partitions(s, date(2032, 3, 5))
    assert (report.created, report.moved) == ([date(2032, 1, 1), date(2032, 2, 1), date(2032, 3, 1)], 1)
    with billing.connect() as conn:
        assert conn.execute(text("SELECT tableoid::regclass::text FROM usage_events WHERE event_id = 900001")
                            ).scalar() == "usage_events_2032_01"
        assert conn.execute(text("SELECT count(*) FROM usage_events_default")).scalar() == 0
    bill_customers(billing, date(2032, 2, 1))
    assert [line[1:] for line in usage_lines(billing, "cus-4", date(2032, 2, 1))] == [(D(4), D("0.40"))]


def copy_rows(source: Engine, target: Engine) -> None:
    """Every row of ``source`` into ``target``, an older schema: the tables and columns both have
    (PostgreSQL's id sequences moved past the copied ids)."""
    have, want = MetaData(), MetaData()
    have.reflect(source)
    want.reflect(target)
    with source.connect() as src, target.begin() as dst:
        for table in have.sorted_tables:
            into = want.tables.get(table.name)
            if into is None or table.name == "alembic_version":
                continue
            columns = [c for c in table.columns if c.name in into.columns]
            rows = [dict(r._mapping) for r in src.execute(select(*columns))]
            if not rows:
                continue
            dst.execute(into.insert(), rows)
            if BACKEND != "sqlite" and "id" in into.columns and isinstance(into.c.id.type, Integer):
                dst.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), max(id)) FROM " + table.name
                                 + " HAVING pg_get_serial_sequence(:t, 'id') IS NOT NULL"), {"t": table.name})


@contextmanager
def database_at(test_database, tmp_path, revision: str) -> Iterator[str]:
    """The URL of another billsync database migrated to ``revision``."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_path / f'at_{revision}.db'}"
        engine = make_engine(url)
        upgrade(engine, revision)
        engine.dispose()
        yield url
        return
    schema = f"t_rev_{uuid.uuid4().hex[:8]}"
    admin = make_engine(test_database.admin_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in test_database.admin_url else "?"
    url = f"{test_database.admin_url}{sep}options={quote('-csearch_path=' + schema)}"
    engine = make_engine(url)
    upgrade(engine, revision)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_usage_recorded_before_the_upgrade_is_kept_and_still_billed(test_database, tmp_path):
    with database_at(test_database, tmp_path, "head") as current_url, \
            database_at(test_database, tmp_path, "0013_deal_previews") as url:
        current, engine = make_engine(current_url), make_engine(url)
        try:
            # Written by today's code, then copied into the old schema (the columns it has).
            with transaction(current) as s:
                upsert_customer(s, Customer("cus-1", "Acme", "EUR"))
                upsert_product(s, API.product)
                upsert_price(s, API)
                start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", NOV, [SubscriptionItem("api", API)]),
                                   now=datetime(2026, 10, 20, tzinfo=UTC))
            copy_rows(current, engine)
            with engine.begin() as conn:
                for n, (key, quantity, day) in enumerate([("old-1", "40", 3), ("old-2", "2.5", 17)], start=1):
                    conn.execute(text(
                        "INSERT INTO usage_records (id, subscription_id, subscription_item_id, quantity, occurred_at, "
                        "occurred_on, source, idempotency_key, recorded_at) VALUES (:id, 'sub-1', 'api', :q, :at, "
                        ":on, 'events', :key, :at)"),
                        {"id": n, "q": quantity, "at": datetime(2026, 11, day, tzinfo=UTC), "on": date(2026, 11, day),
                         "key": key})
            upgrade(engine)
            again = ingest(engine, [event("old-1", "40"), event("new-1", "1")])
            assert [r.status for r in again.results] == ["duplicate", "accepted"]
            bill_customers(engine, DEC)
            assert [line[1:] for line in usage_lines(engine)] == [(D("43.5"), D("4.35"))]
        finally:
            current.dispose()
            engine.dispose()
