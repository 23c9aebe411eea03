#!/usr/bin/env python
"""Benchmark the console's heaviest pages on PostgreSQL: server time of the dashboard and the invoice list.

    .venv/bin/python scripts/bench_console.py [--customers 2000] [--invoices 20000] [--runs 20]
        [--admin-url postgresql://postgres@127.0.0.1:5432/test] [--keep | --database NAME]

Creates its own database (``billsync_bench_console_<pid>``), migrates it and seeds it with the data
of ``scripts/bench_dashboard_data.py`` (customers in EUR, USD and GBP, subscriptions with
amendments and cancellations, monthly invoices, the ECB's month-end rates), adds a finance user,
signs in through Flask's test client and times ``--runs`` requests of each page after one warm-up:
the dashboard of this month and of the last full month (12 months of MRR), the customers behind
the last month's new MRR, the invoice list's first page, five pages further (keyset) and filtered
by status. Prints p50/p95/max per page (server time: rendering included, no network). The
defaults seed in seconds; the full size is ``--customers 100000 --invoices 1000000``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import psycopg  # noqa: E402
from bench_dashboard_data import month_start, percentile, seed, with_database  # noqa: E402
from sqlmodel import Session  # noqa: E402

from connector import create_app  # noqa: E402
from connector.console.users import create_user  # noqa: E402
from connector.database import make_engine, upgrade  # noqa: E402
from connector.settings import load_settings  # noqa: E402

PASSWORD = "bench password of the console"
TOKEN = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')
NEXT = re.compile(r'href="([^"]+)" rel="next"')


def signed_in(app):
    client = app.test_client()
    token = TOKEN.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    response = client.post("/sign-in", data={"email": "bench@example.com", "password": PASSWORD,
                                             "csrf_token": token})
    if response.status_code != 303:
        raise SystemExit(f"sign-in failed: {response.status_code}")
    return client


def later_page(client, url: str, pages: int) -> str:
    for _ in range(pages):
        found = NEXT.search(client.get(url).get_data(as_text=True))
        if not found:
            break
        url = unescape(found.group(1))
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--invoices", type=int, default=20_000, help="spread over the customers, one a month")
    parser.add_argument("--runs", type=int, default=20, help="requests timed per page after one warm-up")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", metavar="NAME", help="use this database, seeded by an earlier run with --keep")
    args = parser.parse_args()
    name = args.database or f"billsync_bench_console_{os.getpid()}"
    args.keep = args.keep or bool(args.database)
    today = datetime.now(UTC).date()
    last_end = month_start(today, 0) - timedelta(days=1)
    last_month = f"{last_end.year:04d}-{last_end.month:02d}"
    if not args.database:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(args.admin_url, name)
    try:
        if not args.database:
            engine = make_engine(database_url)
            upgrade(engine)
            started = time.perf_counter()
            seed(database_url, args.customers, args.invoices, today)
            print(f"seeded {args.customers:,} customers and subscriptions, {args.invoices:,} invoices "
                  f"in {time.perf_counter() - started:.1f} s")
            # The seed writes rows with COPY, past the subscription use cases: rebuild the MRR and the
            # standings kept at month ends as ``billsync metrics rebuild-mrr`` does.
            from billing_engine.use_cases.revenue import rebuild_mrr_month_ends

            with Session(engine) as session:
                rebuild_mrr_month_ends(session)
                session.commit()
            engine.dispose()
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load, at once
        app = create_app(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                                        "SECRET_KEY": "bench-console-signing-key-not-for-production",
                                        "FORECAST": os.environ.get("FORECAST", "on")}))
        engine = app.extensions["billsync"].engine
        try:
            create_user(engine, "bench@example.com", role="finance", password=PASSWORD, now=datetime.now(UTC))
        except Exception:  # noqa: BLE001 - kept database: the user is there already
            pass
        client = signed_in(app)
        pages = [
            ("dashboard, this month", "/dashboard/"),
            (f"dashboard, {last_month}", f"/dashboard/?month={last_month}"),
            (f"customers behind {last_month}'s new MRR", f"/dashboard/customers?month={last_month}&figure=movement:new"),
            ("invoice list, first page", "/invoices/"),
            ("invoice list, 6th page", later_page(client, "/invoices/", 5)),
            ("invoice list, open ones", "/invoices/?status=open"),
        ]
        print(f"console pages on PostgreSQL ({args.customers:,} customers, {args.invoices:,} invoices), "
              f"Flask test client, {os.cpu_count()} CPUs, {args.runs} runs each after one warm-up:")
        for label, url in pages:
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            times.sort()
            print(f"  {label:<45} p50 {statistics.median(times):6.0f} ms   p95 {percentile(times, 0.95):6.0f} ms"
                  f"   max {times[-1]:6.0f} ms   ({len(response.data) // 1024} KiB)")
        engine.dispose()
    finally:
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"database kept: {name}")


if __name__ == "__main__":
    main()
