#!/usr/bin/env python
"""Benchmark the bill run and the 12-month MRR bridge over the database, through the real path.

    .venv/bin/python scripts/bench_billing.py --subscriptions 100000 \
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--batch-size 500] [--concurrent-runs 2]

Creates its own PostgreSQL schema (dropped at the end), stores the catalog through
``billing_engine.use_cases.catalog`` and N customers with one monthly subscription of 3 recurring
items each (graduated seats, flat platform, percent_of support) in the engine's tables
(bulk rows, as ``start_subscription`` writes them), then runs
``use_cases.billing.bill_customers`` for 2026-01-01 (the database charge source: customers
paged by id, subscriptions loaded per batch; every invoice finalized), a second,
idempotent run, and ``mrr_bridge_report`` for 2026-01..2026-12, from the subscriptions streamed
from the database (the bulk rows bypass the subscription use cases, so the MRR kept at month
ends is marked for a rebuild, and the bridge is computed as before one exists), then from the
kept rows after ``rebuild_mrr_month_ends``. Prints invoices/s, peak RSS and the bridge times. The seeded tables are
ANALYZEd before the runs, as autovacuum would.

``--concurrent-runs K`` starts the first bill run K times at once, in K processes (two clocks,
or a clock and a person): it checks that every run completes without a failure, that each
customer is invoiced once (the runs share the customers, the others count them as skipped) and
that the invoice numbers are gapless, and prints the wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from billing_engine.catalog import make_price, make_product  # noqa: E402
from billing_engine.storage.catalog import CustomerRow  # noqa: E402
from billing_engine.storage.database import count_rows  # noqa: E402
from billing_engine.storage.invoices import Invoice, InvoiceLine  # noqa: E402
from billing_engine.storage.revenue import set_month_ends_state  # noqa: E402
from billing_engine.storage.subscriptions import SubscriptionItemRow, SubscriptionRow  # noqa: E402
from billing_engine.use_cases.billing import bill_customers  # noqa: E402
from billing_engine.use_cases.catalog import upsert_price, upsert_product  # noqa: E402
from billing_engine.use_cases.revenue import mrr_bridge_report, rebuild_mrr_month_ends  # noqa: E402
from connector.database import make_engine, upgrade  # noqa: E402

START = date(2026, 1, 1)
SEATS = make_price("b-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="graduated",
                   tiers=[{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150},
                          {"up_to": None, "unit_price": 100}])
PLATFORM = make_price("b-platform", make_product("p-platform", "PLATFORM", "Platform"), currency="EUR",
                      model="flat", unit_price="49")
SUPPORT = make_price("b-support", make_product("p-support", "SUPPORT", "Support"), currency="EUR",
                     model="percent_of", percent="10", covered_product_codes=["SEATS"])


def customer_id(n: int) -> str:
    return f"c{n:08d}"


def seed(engine, n: int) -> None:
    with Session(engine) as session, session.begin():
        for price in (SEATS, PLATFORM, SUPPORT):
            upsert_product(session, price.product)
            upsert_price(session, price)
    chunk = 10000
    for lo in range(0, n, chunk):
        numbers = range(lo, min(n, lo + chunk))
        with Session(engine) as session, session.begin():
            session.execute(insert(CustomerRow.__table__), [
                {"id": customer_id(i), "name": customer_id(i), "currency": "EUR", "timezone": "UTC",
                 "address_line1": "", "address_line2": "", "city": "", "postal_code": "", "region": "",
                 "country": "", "payment_terms_days": 30, "tax_rate_percent": Decimal(20)} for i in numbers])
            session.execute(insert(SubscriptionRow.__table__), [
                {"id": f"s{i:08d}", "customer_id": customer_id(i), "currency": "EUR", "starts_on": START,
                 "interval": "month", "billing_anchor_on": START, "term_months": 12, "auto_renew": True,
                 "renewal_uplift_percent": Decimal(0), "status": "active"} for i in numbers])
            session.execute(insert(SubscriptionItemRow.__table__), [
                {"subscription_id": f"s{i:08d}", "item_id": f"s{i:08d}-{name}", "position": position,
                 "price_id": price.price_id, "quantity": Decimal(1 + i % 15) if name == "seats" else Decimal(1)}
                for i in numbers
                for position, (name, price) in enumerate((("seats", SEATS), ("platform", PLATFORM),
                                                          ("support", SUPPORT)))])


def svc_holds(rows) -> bool:
    return all(Decimal(r["opening"]) + Decimal(r["new"]) + Decimal(r["expansion"]) + Decimal(r["reactivation"])
               - Decimal(r["contraction"]) - Decimal(r["churn"]) == Decimal(r["closing"]) for r in rows)


def one_run(url: str, batch_size: int) -> tuple[int, int, int, int, float]:
    """A bill run in its own process: (invoices created, customers billed, skipped, failures, seconds)."""
    engine = make_engine(url)
    try:
        t0 = time.perf_counter()
        result = bill_customers(engine, START, batch_size=batch_size)
        return (result.invoices_created, result.customers_billed, result.customers_skipped, len(result.failures),
                time.perf_counter() - t0)
    finally:
        engine.dispose()


def concurrent_runs(engine, url: str, runs: int, batch_size: int, expected: int) -> bool:
    engine.dispose()  # the children open their own connections
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(runs) as pool:
        results = pool.starmap(one_run, [(url, batch_size)] * runs)
    elapsed = time.perf_counter() - t0
    for n, (created, billed, skipped, failed, seconds) in enumerate(results, start=1):
        print(f"  run {n}: {created} invoices created, {billed} customers billed, {skipped} skipped "
              f"(billed by another run), {failed} failed in {seconds:.1f} s")
    with Session(engine) as session:
        numbers = list(session.scalars(select(Invoice.number).where(Invoice.number.is_not(None))).all())
        invoices = session.execute(select(func.count(), func.count(Invoice.customer_id.distinct()))
                                   .select_from(Invoice)).one()
    gapless = sorted(numbers) == [f"INV-{START.year}-{n:06d}" for n in range(1, expected + 1)]
    ok = (sum(r[0] for r in results) == expected and not any(r[3] for r in results) and gapless
          and tuple(invoices) == (expected, expected))
    print(f"{runs} concurrent bill runs: {expected / elapsed:,.0f} invoices/s in {elapsed:.1f} s; "
          f"each customer invoiced once, numbers gapless: {ok}")
    return ok


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrent-runs", type=int, default=1,
                        help="start the first bill run this many times at once, in as many processes")
    args = parser.parse_args()

    schema = f"bench_billing_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{sep}options={quote('-csearch_path=' + schema)}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        seed(engine, args.subscriptions)
        print(f"seeded {args.subscriptions} customers/subscriptions (3 items each) in {time.perf_counter() - t0:.1f} s")
        # Bulk-loaded rows get their planner statistics, as autovacuum gives a production database
        # (the test server runs with autovacuum off: without them, paging plans scan whole tables).
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        with Session(engine) as session:
            set_month_ends_state(session, "2099-12", stale=True, reason="bulk-loaded subscriptions")
            session.commit()
        print(f"RSS after seeding: {rss_mb():.0f} MB")

        if args.concurrent_runs > 1:
            if not concurrent_runs(engine, url, args.concurrent_runs, args.batch_size, args.subscriptions):
                return 1
        else:
            t0 = time.perf_counter()
            result = bill_customers(engine, START, batch_size=args.batch_size)
            elapsed = time.perf_counter() - t0
            print(f"bill run: {result.invoices_created} invoices created, {result.invoices_finalized} finalized, "
                  f"{len(result.failures)} failures in {elapsed:.1f} s → "
                  f"{result.invoices_created / elapsed:,.0f} invoices/s")
            print(f"peak RSS after bill run: {rss_mb():.0f} MB")

        t0 = time.perf_counter()
        again = bill_customers(engine, START, batch_size=args.batch_size)
        print(f"second run (idempotent): {again.invoices_created} invoices in {time.perf_counter() - t0:.1f} s")

        with Session(engine) as session:
            n_lines = count_rows(session, InvoiceLine)
        t0 = time.perf_counter()
        rows = mrr_bridge_report(engine, "2026-01", "2026-12")
        bridge_s = time.perf_counter() - t0
        print(f"invoice lines: {n_lines}")
        print(f"MRR bridge 2026-01..2026-12: {bridge_s:.2f} s; Jan closing {rows[0]['closing']} {rows[0]['currency']}; "
              f"holds every month: {svc_holds(rows)}")
        t0 = time.perf_counter()
        with Session(engine) as session:
            written = rebuild_mrr_month_ends(session, today=START)
            session.commit()
        print(f"MRR at month ends rebuilt ({written} rows) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        kept = mrr_bridge_report(engine, "2026-01", "2026-12")
        print(f"MRR bridge 2026-01..2026-12 from the kept rows: {time.perf_counter() - t0:.2f} s; "
              f"the same rows: {kept == rows}")
        print(f"peak RSS: {rss_mb():.0f} MB")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
