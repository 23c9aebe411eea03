#!/usr/bin/env python
"""Benchmark the bill run and the 12-month MRR bridge.

    .venv/bin/python scripts/bench_billing.py --subscriptions 100000 \
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--batch-size 500]

Creates its own PostgreSQL schema (dropped at the end), seeds N customers with one
monthly subscription of 3 recurring items each (graduated seats, flat platform,
percent_of support), runs ``run_billing`` for 2026-01-01 (finalizing every invoice),
then a second, idempotent run, then the 2026-01..2026-12 MRR bridge. Prints
invoices/s, peak RSS and the bridge time.

Subscriptions are rebuilt per batch from their ids (Engine I's repository would
load them from its tables the same way: batch by batch), so memory stays flat.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from billing_engine import billing_services as svc  # noqa: E402
from billing_engine.catalog import make_price, make_product  # noqa: E402
from billing_engine.storage import billing_tables as db  # noqa: E402
from billing_engine.storage.tables import CustomerRow, SubscriptionRow  # noqa: E402
from billing_engine.subscriptions import SubscriptionItem, make_subscription  # noqa: E402
from billing_engine.tax import TaxRate  # noqa: E402
from connector.database import make_engine, upgrade  # noqa: E402

START = date(2026, 1, 1)
SEATS = make_price("b-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="graduated",
                   tiers=[{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150},
                          {"up_to": None, "unit_price": 100}])
PLATFORM = make_price("b-platform", make_product("p-platform", "PLATFORM", "Platform"), currency="EUR",
                      model="flat", unit_price="49")
SUPPORT = make_price("b-support", make_product("p-support", "SUPPORT", "Support"), currency="EUR",
                     model="percent_of", percent="10", covered_product_codes=["SEATS"])
RATE = TaxRate(Decimal(20))


def customer_id(n: int) -> str:
    return f"c{n:08d}"


def subscription_for(cid: str):
    n = int(cid[1:])
    sid = "s" + cid[1:]
    return make_subscription(sid, cid, "EUR", START, [
        SubscriptionItem(f"{sid}-seats", SEATS, quantity=Decimal(1 + n % 15)),
        SubscriptionItem(f"{sid}-platform", PLATFORM),
        SubscriptionItem(f"{sid}-support", SUPPORT),
    ])


def load_accounts(session, as_of, after, limit):
    t = CustomerRow.__table__
    stmt = select(t.c.id).order_by(t.c.id).limit(limit)
    if after is not None:
        stmt = stmt.where(t.c.id > after)
    return [svc.BillingAccount(cid, RATE, 30) for cid in session.execute(stmt).scalars()]


def load_subscriptions(session, customer_ids):
    return [subscription_for(cid) for cid in customer_ids]


def all_subscriptions(session):
    t = CustomerRow.__table__
    for cid in session.execute(select(t.c.id).order_by(t.c.id).execution_options(yield_per=5000)).scalars():
        yield subscription_for(cid)


def seed(engine, n: int) -> None:
    chunk = 10000
    with Session(engine) as session, session.begin():
        for lo in range(0, n, chunk):
            ids = [customer_id(i) for i in range(lo, min(n, lo + chunk))]
            session.execute(insert(CustomerRow.__table__), [{"id": c, "name": c, "currency": "EUR", "timezone": "UTC",
                                                              "address_line1": "", "address_line2": "", "city": "",
                                                              "postal_code": "", "region": "", "country": "",
                                                              "payment_terms_days": 30} for c in ids])
            session.execute(insert(SubscriptionRow.__table__), [
                {"id": "s" + c[1:], "customer_id": c, "currency": "EUR", "starts_on": START, "interval": "month",
                 "billing_anchor_on": START, "term_months": 12, "auto_renew": True,
                 "renewal_uplift_percent": Decimal(0), "status": "active"} for c in ids])


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    schema = f"bench_billing_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.database_url else "?"
    engine = make_engine(f"{args.database_url}{sep}options={quote('-csearch_path=' + schema)}")
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        seed(engine, args.subscriptions)
        print(f"seeded {args.subscriptions} customers/subscriptions (3 items each) in {time.perf_counter() - t0:.1f} s")
        print(f"RSS after seeding: {rss_mb():.0f} MB")

        source = svc.SubscriptionChargeSource(load_accounts, load_subscriptions)
        t0 = time.perf_counter()
        result = svc.run_billing(engine, START, source=source, batch_size=args.batch_size)
        elapsed = time.perf_counter() - t0
        print(f"bill run: {result.invoices_created} invoices created, {result.invoices_finalized} finalized, "
              f"{len(result.failures)} failures in {elapsed:.1f} s → {result.invoices_created / elapsed:,.0f} invoices/s")
        print(f"peak RSS after bill run: {rss_mb():.0f} MB")

        t0 = time.perf_counter()
        again = svc.run_billing(engine, START, source=source, batch_size=args.batch_size)
        print(f"second run (idempotent): {again.invoices_created} invoices in {time.perf_counter() - t0:.1f} s")

        with Session(engine) as session:
            n_lines = db.count_rows(session, db.InvoiceLine)
            t0 = time.perf_counter()
            rows, _ = svc.mrr_bridge(session, "2026-01", "2026-12",
                                     source=svc.SubscriptionMrrSource(all_subscriptions))
            bridge_s = time.perf_counter() - t0
        print(f"invoice lines: {n_lines}")
        print(f"MRR bridge 2026-01..2026-12: {bridge_s:.2f} s; Jan closing {rows[0].closing} {rows[0].currency}; "
              f"holds every month: {all(r.holds() for r in rows)}")
        print(f"peak RSS: {rss_mb():.0f} MB")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
