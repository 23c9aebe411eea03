#!/usr/bin/env python
"""Benchmark the dashboard's use case (docs/reporting.md) on PostgreSQL: server time per dashboard.

    .venv/bin/python scripts/bench_dashboard_data.py [--customers 20000] [--invoices 200000] [--runs 20]
        [--months 12] [--admin-url postgresql://postgres@127.0.0.1:5432/test] [--keep | --database NAME]

Creates its own database (``billsync_bench_dash_<pid>``), migrates it to head and seeds it with
``COPY``: customers in EUR, USD and GBP, a catalog of plans, one subscription per customer with one
or two items (monthly or yearly, started over the last two years, about 8 % cancelled and 5 %
changing their seats, both as amendments), invoices
issued monthly the way bill runs leave them
(older ones paid, recent ones open or overdue), and the ECB's month-end rates for USD and GBP.
Then calls ``billing_engine.use_cases.dashboard.dashboard`` for the last full month ``--runs``
times (after one warm-up call) and prints p50/p95/max, plus the time of its parts: the MRR
bridge, the receivables aging, the customers' statuses. Goal: p95 ≤ 500 ms with 100,000
customers and 1,000,000 invoices (``--customers 100000 --invoices 1000000``). The defaults
seed in about a minute. The database is dropped unless ``--keep``; ``--database NAME`` runs
again on a kept one without seeding.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlmodel import Session  # noqa: E402

from connector.database import make_engine, upgrade  # noqa: E402

GOAL_P95_MS = 500.0
TAX = Decimal(20)
CURRENCIES = ["EUR"] * 8 + ["USD"] + ["GBP"]
PLANS = [("basic", Decimal("49.00")), ("team", Decimal("199.00")), ("business", Decimal("899.00"))]
RATES = {"USD": Decimal("1.0834"), "GBP": Decimal("0.8561")}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def month_start(day: date, back: int) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def seed(url: str, customers: int, invoices: int, today: date) -> None:
    rng = random.Random(20261206)
    first_month = month_start(today, 24)
    with psycopg.connect(url, autocommit=False) as conn, conn.cursor() as cur:
        with cur.copy("COPY products (id, code, name, active) FROM STDIN") as copy:
            for code, _ in PLANS:
                copy.write_row((f"p-{code}", code.upper(), code.title(), True))
            copy.write_row(("p-seats", "SEATS", "Seats", True))
        with cur.copy("COPY prices (id, product_id, currency, interval, charge_type, model, unit_price, tiers_json, "
                      "covered_product_codes_json) FROM STDIN") as copy:
            for currency in sorted(set(CURRENCIES)):
                for code, amount in PLANS:
                    copy.write_row((f"pr-{code}-{currency}", f"p-{code}", currency, "month", "recurring", "flat",
                                    amount, "[]", "[]"))
                    copy.write_row((f"pr-{code}-y-{currency}", f"p-{code}", currency, "year", "recurring", "flat",
                                    amount * 10, "[]", "[]"))
                copy.write_row((f"pr-seats-{currency}", "p-seats", currency, "month", "recurring", "per_unit",
                                Decimal("12.00"), "[]", "[]"))
        owner = {}
        with cur.copy("COPY customers (id, name, currency, timezone, address_line1, address_line2, city, postal_code, "
                      "region, country, payment_terms_days, tax_rate_percent) FROM STDIN") as copy:
            for n in range(customers):
                cid = f"c{n:07d}"
                owner[cid] = rng.choice(CURRENCIES)
                copy.write_row((cid, f"Customer {n}", owner[cid], "UTC", "", "", "", "", "", "", 30, TAX))
        item_id = 0
        subs = []
        # psycopg allows one COPY at a time: subscriptions first, then their items.
        with cur.copy("COPY subscriptions (id, customer_id, currency, starts_on, interval, billing_anchor_on, "
                      "term_months, auto_renew, renewal_uplift_percent, purchase_order, buyer_reference, status, "
                      "ends_before) FROM STDIN") as copy:
            for n, (cid, currency) in enumerate(owner.items()):
                starts = first_month + timedelta(days=rng.randrange(0, 700))
                yearly = rng.random() < 0.2
                plan = rng.choice(PLANS)[0]
                ends = None
                status = "active"
                if rng.random() < 0.08:
                    ends = starts + timedelta(days=rng.randrange(60, 500))
                    status = "cancelled"
                sid = f"s{n:07d}"
                subs.append((sid, currency, plan, yearly, n, starts, ends))
                copy.write_row((sid, cid, currency, starts, "year" if yearly else "month", starts, None, True,
                                Decimal(0), "", "", status, ends))
        with cur.copy("COPY subscription_items (id, subscription_id, item_id, position, price_id, quantity) "
                      "FROM STDIN") as copy:
            for sid, currency, plan, yearly, n, _, _ in subs:
                item_id += 1
                copy.write_row((item_id, sid, "plan", 0,
                                f"pr-{plan}-y-{currency}" if yearly else f"pr-{plan}-{currency}", Decimal(1)))
                if n % 3 == 0:
                    item_id += 1
                    copy.write_row((item_id, sid, "seats", 1, f"pr-seats-{currency}", Decimal(rng.randrange(1, 40))))
        # Cancellations (immediate, on the end date) and seat changes are amendments, as the engine records them.
        with cur.copy("COPY amendments (subscription_id, amendment_id, sequence, action, effective_on, item_id, "
                      "quantity, immediate, reason) FROM STDIN") as copy:
            for sid, _, _, _, n, starts, ends in subs:
                sequence = 0
                if n % 3 == 0 and rng.random() < 0.15:
                    sequence += 1
                    copy.write_row((sid, f"a{sequence}", sequence, "change_quantity",
                                    starts + timedelta(days=rng.randrange(30, 400)), "seats",
                                    Decimal(rng.randrange(1, 60)), False, "seats"))
                if ends is not None:
                    sequence += 1
                    copy.write_row((sid, f"a{sequence}", sequence, "cancel", ends, None, None, True, "closed"))
        months = [month_start(today, back) for back in range(max(1, -(-invoices // max(customers, 1))) - 1, -1, -1)]
        columns = ("id, customer_id, currency, status, number, bill_run_on, issued_on, due_on, payment_terms_days, "
                   "tax_percent, tax_reason, subtotal, discount, net, tax, total, amount_credited, amount_paid, "
                   "amount_refunded, created_at, finalized_at, status_changed_at")
        made = 0
        counters: dict[int, int] = {}
        created = datetime.now(UTC)
        with cur.copy(f"COPY invoices ({columns}) FROM STDIN") as copy:
            for m, month in enumerate(months):
                age = len(months) - 1 - m
                for cid, currency in owner.items():
                    if made == invoices:
                        break
                    made += 1
                    net = Decimal(rng.randrange(4900, 200000)).scaleb(-2)
                    tax = (net * TAX / 100).quantize(Decimal("0.01"))
                    total = net + tax
                    roll = rng.random()
                    status = "open" if age <= 1 or roll < 0.03 else ("uncollectible" if roll < 0.04 else "paid")
                    counters[month.year] = counters.get(month.year, 0) + 1
                    paid = total if status == "paid" else Decimal(0)
                    at = datetime(month.year, month.month, 1, tzinfo=UTC)
                    copy.write_row((made, cid, currency, status, f"INV-{month.year}-{counters[month.year]:07d}",
                                    month, month, month + timedelta(days=30), 30, TAX, "", net, Decimal(0), net, tax,
                                    total, Decimal(0), paid, Decimal(0), created, at, at))
        cur.execute("SELECT setval(pg_get_serial_sequence('invoices', 'id'), %s)", (max(made, 1),))
        cur.execute("SELECT setval(pg_get_serial_sequence('subscription_items', 'id'), %s)", (max(item_id, 1),))
        with cur.copy("COPY exchange_rates (rate_on, base, quote, rate, source, entered_by, entered_at) "
                      "FROM STDIN") as copy:
            for back in range(0, 26):
                start = month_start(today, back)
                last = month_start(today, back - 1) - timedelta(days=1)
                for day in (start + timedelta(days=d) for d in range((last - start).days + 1)):
                    if day.weekday() < 5 and day <= today:
                        for quote, rate in RATES.items():
                            copy.write_row((day, "EUR", quote, rate + Decimal(day.day).scaleb(-4), "ecb",
                                            "bench", created))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("customers", "subscriptions", "subscription_items", "amendments", "invoices", "exchange_rates",
                      "prices"):
            conn.execute(f"VACUUM ANALYZE {table}")


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--invoices", type=int, default=200_000, help="spread over the customers, one a month")
    parser.add_argument("--runs", type=int, default=20, help="dashboards timed after one warm-up")
    parser.add_argument("--months", type=int, default=12, help="months of the MRR series (12 to 24)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", metavar="NAME", help="use this database, seeded by an earlier run with --keep")
    args = parser.parse_args()
    name = args.database or f"billsync_bench_dash_{os.getpid()}"
    args.keep = args.keep or bool(args.database)
    today = datetime.now(UTC).date()
    month_end = month_start(today, 0) - timedelta(days=1)
    month = f"{month_end.year:04d}-{month_end.month:02d}"
    if not args.database:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(args.admin_url, name)
    try:
        engine = make_engine(database_url)
        upgrade(engine)
        if not args.database:
            started = time.perf_counter()
            seed(database_url, args.customers, args.invoices, today)
            print(f"seeded {args.customers:,} customers and subscriptions, {args.invoices:,} invoices "
                  f"in {time.perf_counter() - started:.1f} s")
        from billing_engine.storage import reporting as reporting_store
        from billing_engine.storage import revenue as revenue_store
        from billing_engine.use_cases import dashboard, revenue

        with Session(engine) as session:
            state = revenue_store.month_ends_state(session)
        if not args.database or state is None or state[1]:
            # The seed writes rows with COPY, past the subscription use cases: rebuild the MRR kept
            # at month ends as ``billsync metrics rebuild-mrr`` does.
            started = time.perf_counter()
            with Session(engine) as session:
                written = revenue.rebuild_mrr_month_ends(session)
                session.commit()
            print(f"rebuilt the MRR at month ends ({written:,} rows) in {time.perf_counter() - started:.1f} s")
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load, at once

        def board():
            with Session(engine) as session:
                return dashboard.dashboard(session, month, as_of=month_end, reporting_currency="EUR",
                                           months=args.months)

        warm_ms, first = timed(board)
        times = sorted(timed(board)[0] for _ in range(args.runs))
        with Session(engine) as session:
            first_month = dashboard._months_back(month, args.months + 1)
            bridge_ms, _ = timed(lambda: revenue.mrr_bridge_months(session, first_month, month))
            aging_ms, _ = timed(lambda: reporting_store.receivables_aging(session, month_end))
            status_ms, _ = timed(lambda: reporting_store.status_counts(session, month_end))
            movements_ms, _ = timed(lambda: revenue.mrr_movements(session, month, limit=101, kind="churn"))
            rare_ms, _ = timed(lambda: dashboard.figure_customers(session, month, "status:cancelling",
                                                                  as_of=month_end, limit=101))
        eur = next(f for f in first.currencies if f.currency == "EUR")
        print(f"dashboard {month} ({args.months} months, reporting EUR) on PostgreSQL, {os.cpu_count()} CPUs: "
              f"warm-up {warm_ms:.0f} ms; {args.runs} runs: p50 {statistics.median(times):.0f} ms, "
              f"p95 {percentile(times, 0.95):.0f} ms, max {times[-1]:.0f} ms (goal p95 <= {GOAL_P95_MS:.0f} ms)")
        print(f"  parts (one run each): MRR bridge {bridge_ms:.0f} ms, receivables aging {aging_ms:.0f} ms, "
              f"customers' statuses {status_ms:.0f} ms; drill-downs: churned customers {movements_ms:.0f} ms, "
              f"customers cancelling {rare_ms:.0f} ms")
        print(f"  EUR closing MRR {eur.waterfall.closing}, NRR {eur.net_revenue_retention} %, "
              f"reporting total MRR {first.reporting.series[-1].mrr} EUR, missing rates {len(first.missing_rates)}")
        engine.dispose()
    finally:
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"database kept: {name}")


if __name__ == "__main__":
    main()
