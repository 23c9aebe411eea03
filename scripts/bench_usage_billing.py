#!/usr/bin/env python
"""Benchmark a bill run over stored usage events: 1,000,000 events for 10,000 subscriptions.

    .venv/bin/python scripts/bench_usage_billing.py [--subscriptions 10000] [--events 1000000] \
        [--database-url postgresql://postgres@127.0.0.1:5432/test | sqlite:////tmp/bench.db]

Creates its own PostgreSQL schema (dropped at the end; a SQLite URL names a new file), stores
the catalog through ``billing_engine.use_cases.catalog`` and N customers with one monthly
subscription each (a flat platform fee and a graduated usage item, ``api_calls``), then the
events (spread over the days of November 2026, in their monthly partition) in bulk, as
``ingest_usage_events`` stores them. It then runs ``use_cases.billing.bill_customers`` for
2026-12-01 in a fresh process (the database charge source: the events summed per
subscription, item and day in SQL) and prints its time and peak RSS, checks that the usage
lines bill every event once, runs it again (idempotent), and finally adds one late event per
subscription for November and times the run that bills them as late-usage lines.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from billing_engine.catalog import make_price, make_product  # noqa: E402
from billing_engine.storage.catalog import CustomerRow  # noqa: E402
from billing_engine.storage.database import copy_rows, is_postgresql  # noqa: E402
from billing_engine.storage.invoices import InvoiceLine  # noqa: E402
from billing_engine.storage.subscriptions import SubscriptionItemRow, SubscriptionRow  # noqa: E402
from billing_engine.storage.usage import UsageEventKey, UsageEventRow, ensure_partitions  # noqa: E402
from billing_engine.use_cases.billing import bill_customers  # noqa: E402
from billing_engine.use_cases.catalog import upsert_price, upsert_product  # noqa: E402
from billing_engine.use_cases.usage import ingest_usage_events  # noqa: E402
from connector.database import make_engine, transaction, upgrade  # noqa: E402

START, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
PLATFORM = make_price("b-platform", make_product("p-platform", "platform", "Platform"), currency="EUR",
                      model="flat", unit_price="49")
API = make_price("b-api", make_product("p-api", "api_calls", "API calls"), currency="EUR", model="graduated",
                 charge_type="usage", tiers=[{"up_to": 1000, "unit_price": "0.01"},
                                             {"up_to": None, "unit_price": "0.005"}])


def sid(n: int) -> str:
    return f"s{n:08d}"


def seed(engine, subscriptions: int, events: int) -> Decimal:
    """The catalog, the subscriptions and the events; returns Σ quantity of the events."""
    with Session(engine) as session, session.begin():
        for price in (PLATFORM, API):
            upsert_product(session, price.product)
            upsert_price(session, price)
    chunk = 10000
    for lo in range(0, subscriptions, chunk):
        numbers = range(lo, min(subscriptions, lo + chunk))
        with Session(engine) as session, session.begin():
            session.execute(insert(CustomerRow.__table__), [
                {"id": f"c{i:08d}", "name": f"c{i:08d}", "currency": "EUR", "timezone": "UTC",
                 "address_line1": "", "address_line2": "", "city": "", "postal_code": "", "region": "",
                 "country": "", "payment_terms_days": 30, "tax_rate_percent": Decimal(20)} for i in numbers])
            session.execute(insert(SubscriptionRow.__table__), [
                {"id": sid(i), "customer_id": f"c{i:08d}", "currency": "EUR", "starts_on": START,
                 "interval": "month", "billing_anchor_on": START, "term_months": 12, "auto_renew": True,
                 "renewal_uplift_percent": Decimal(0), "status": "active"} for i in numbers])
            session.execute(insert(SubscriptionItemRow.__table__), [
                {"subscription_id": sid(i), "item_id": name, "position": position, "price_id": price.price_id,
                 "quantity": Decimal(1)}
                for i in numbers for position, (name, price) in enumerate((("platform", PLATFORM), ("api", API)))])
    # October is billed first (the platform fee in advance), as a running installation would have.
    bill_customers(engine, START)
    rng = random.Random(14)
    total = Decimal(0)
    batch = 50000
    recorded_at = datetime(2026, 12, 1, tzinfo=UTC)
    with Session(engine) as session:
        ensure_partitions(session, [NOV])
    for lo in range(0, events, batch):
        keys, rows = [], []
        for n in range(lo, min(events, lo + batch)):
            moment = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(30 * 86400))
            quantity = Decimal(rng.randrange(1, 50))
            total += quantity
            keys.append({"id": n + 1, "source": "events", "idempotency_key": f"evt-{n}"})
            rows.append({"event_id": n + 1, "occurred_on": moment.date(), "subscription_id": sid(n % subscriptions),
                         "subscription_item_id": "api", "quantity": quantity, "occurred_at": moment,
                         "recorded_at": recorded_at})
        with Session(engine) as session, session.begin():
            if is_postgresql(session):
                copy_rows(session, UsageEventKey.__table__, keys, ["id", "source", "idempotency_key"])
                copy_rows(session, UsageEventRow.__table__, rows, list(rows[0]))
            else:
                session.execute(insert(UsageEventKey.__table__), keys)
                session.execute(insert(UsageEventRow.__table__), rows)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('usage_event_keys', 'id'), :n)"), {"n": events})
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    return total


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(url: str, as_of: date) -> tuple[int, int, float, float, float]:
    """A bill run in a fresh process: (invoices created, failures, seconds, CPU seconds of the
    process, peak RSS in MB)."""
    engine = make_engine(url)
    try:
        t0, c0 = time.perf_counter(), cpu()
        result = bill_customers(engine, as_of)
        elapsed, used = time.perf_counter() - t0, cpu() - c0
        return (result.invoices_created, len(result.failures), elapsed, used,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        engine.dispose()


def in_fresh_process(url: str, as_of: date) -> tuple[int, int, float, float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(one_run, (url, as_of))


def usage_billed(engine, kind_filter: str | None = None) -> tuple[int, Decimal]:
    """(usage lines, Σ their quantity)."""
    with Session(engine) as session:
        query = select(func.count(), func.coalesce(func.sum(InvoiceLine.quantity), 0)).where(InvoiceLine.kind == "usage")
        if kind_filter:
            query = query.where(InvoiceLine.description.like(kind_filter))
        count, quantity = session.execute(query).one()
    return count, Decimal(str(quantity))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10000)
    parser.add_argument("--events", type=int, default=1000000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    admin = None
    if args.database_url.startswith("postgres"):
        schema = f"bench_usage_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.database_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.database_url else "?"
        url = f"{args.database_url}{sep}options={quote('-csearch_path=' + schema)}"
    else:
        url = args.database_url
    engine = make_engine(url)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        total = seed(engine, args.subscriptions, args.events)
        print(f"seeded {args.subscriptions} subscriptions and {args.events:,} usage events "
              f"(Σ {total:,} calls) in {time.perf_counter() - t0:.1f} s")

        created, failed, seconds, used, rss = in_fresh_process(url, DEC)
        lines, billed = usage_billed(engine)
        print(f"bill run as of {DEC}: {created} invoices, {failed} failures in {seconds:.1f} s "
              f"({args.events / seconds:,.0f} events/s, {created / seconds:,.0f} invoices/s; {used:.1f} s of CPU in "
              f"the bill run's process); peak RSS {rss:.0f} MB; load average {os.getloadavg()[0]:.2f}")
        print(f"usage lines: {lines}, Σ quantity {billed:,}; every event billed once: {billed == total}")

        created, failed, seconds, _, _ = in_fresh_process(url, DEC)
        print(f"second run (idempotent): {created} invoices in {seconds:.1f} s")

        late_at = datetime(2026, 12, 2, 9, tzinfo=UTC)
        t0 = time.perf_counter()
        late = 0
        for lo in range(0, args.subscriptions, 1000):
            with transaction(engine) as session:
                late += ingest_usage_events(session, [
                    {"transaction_id": f"late-{n}", "subscription_id": sid(n), "metric": "api_calls", "quantity": "5",
                     "timestamp": "2026-11-28T10:00:00Z"} for n in range(lo, min(args.subscriptions, lo + 1000))],
                    now=late_at).accepted
        print(f"late events: {late} accepted in {time.perf_counter() - t0:.1f} s")
        created, failed, seconds, used, rss = in_fresh_process(url, date(2026, 12, 3))
        lines, quantity = usage_billed(engine, "%late usage%")
        print(f"bill run as of 2026-12-03: {created} invoices, {failed} failures in {seconds:.1f} s ({used:.1f} s CPU); "
              f"late-usage lines {lines}, Σ {quantity}; peak RSS {rss:.0f} MB")
        ok = billed == total and lines == args.subscriptions and quantity == 5 * args.subscriptions
        print(f"all checks hold: {ok}")
        return 0 if ok else 1
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
