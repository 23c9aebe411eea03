#!/usr/bin/env python
"""Benchmark the invoice list of the API at 1,000,000 invoices: gunicorn on loopback, PostgreSQL.

    .venv/bin/python scripts/bench_api.py [--invoices 1000000] [--customers 20000] [--pages 200]
        [--workers 2] [--threads 4] [--admin-url postgresql://postgres@127.0.0.1:5432/test]
        [--keep | --database billsync_bench_api_NNN]

Creates its own database (``billsync_bench_api_<pid>``), migrates it to head and seeds it with
``COPY``: customers, and invoices issued monthly over the last years the way bill runs leave
them (older ones paid, recent ones open or overdue, a few written off, voided or held as
drafts; EUR, USD and JPY). Then starts gunicorn ("connector:create_app()") on a free
loopback port, creates a read API key, and pages through ``GET /api/v1/invoices?limit=100``:

- *first pages*: the first page, again and again (a dashboard's refresh);
- *deep pages*: a walk following ``next`` links from page 1 to page ``--pages``, then from a
  cursor in the middle of the table and from one near its end;
- *filtered*: ``status=open`` pages followed through ``next``, one customer's invoices, one
  month's (``issued_from``/``issued_to``), a currency, a number prefix.

Prints p50/p95/p99/max per page for each, measured by the client over keep-alive
connections, and stops gunicorn; the database is dropped unless ``--keep``. Goal: p99 ≤ 50 ms
per page of 100. ``--keep`` keeps the seeded database; ``--database NAME`` runs again on it
without seeding (and keeps it).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402

from connector.database import make_engine, upgrade  # noqa: E402

GOAL_P99_MS = 50.0
PAGE = 100
TAX = Decimal(20)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def months_back(today: date, count: int) -> list[date]:
    """The first days of the ``count`` months up to ``today``'s, oldest first."""
    year, month = today.year, today.month
    out = []
    for _ in range(count):
        out.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def seed(url: str, invoices: int, customers: int, today: date) -> dict[str, object]:
    """Customers and ``invoices`` invoices (one per customer and month, oldest month first, ids in
    that order as bill runs create them), with ``COPY``. Returns what the filters can aim at."""
    months = months_back(today, -(-invoices // customers))
    rng = random.Random(14)
    currencies = ["EUR"] * 45 + ["USD"] * 4 + ["JPY"]
    customer_currency = {f"c{n:07d}": rng.choice(currencies) for n in range(customers)}
    created = datetime.now(UTC)
    with psycopg.connect(url, autocommit=False) as conn, conn.cursor() as cur:
        with cur.copy("COPY customers (id, name, currency, timezone, address_line1, address_line2, city, "
                      "postal_code, region, country, payment_terms_days, tax_rate_percent) FROM STDIN") as copy:
            for cid, currency in customer_currency.items():
                copy.write_row((cid, f"Customer {cid[1:]}", currency, "UTC", "", "", "", "", "", "", 30, TAX))
        columns = ("id, customer_id, currency, status, number, bill_run_on, issued_on, due_on, payment_terms_days, "
                   "tax_percent, tax_reason, subtotal, discount, net, tax, total, amount_credited, amount_paid, "
                   "amount_refunded, created_at, finalized_at, status_changed_at")
        counters: dict[int, int] = {}
        first_ids: list[int] = []
        made = 0
        with cur.copy(f"COPY invoices ({columns}) FROM STDIN") as copy:
            for m, month in enumerate(months):
                age = len(months) - 1 - m  # 0: this month
                first_ids.append(made + 1)
                for cid, currency in customer_currency.items():
                    if made == invoices:
                        break
                    made += 1
                    net = Decimal(rng.randrange(1000, 500000)) if currency == "JPY" else \
                        Decimal(rng.randrange(1000, 500000)).scaleb(-2)
                    cent = Decimal(1) if currency == "JPY" else Decimal("0.01")
                    tax = (net * TAX / 100).quantize(cent)
                    total = net + tax
                    roll = rng.random()
                    if age == 0 and roll < 0.002:
                        status = "draft"
                    elif roll < 0.003:
                        status = "void"
                    elif roll < 0.01 and age > 2:
                        status = "uncollectible"
                    elif age <= 1 or (age == 2 and roll < 0.3) or roll < 0.02:
                        status = "open"
                    else:
                        status = "paid"
                    number = None
                    if status != "draft":
                        counters[month.year] = counters.get(month.year, 0) + 1
                        number = f"INV-{month.year}-{counters[month.year]:06d}"
                    issued = None if status == "draft" else month
                    paid = total if status == "paid" else Decimal(0)
                    if status == "open" and roll < 0.05:
                        paid = (total / 2).quantize(cent)  # partially paid
                    at = datetime(month.year, month.month, 1, tzinfo=UTC)
                    copy.write_row((made, cid, currency, status, number, month, issued,
                                    month + timedelta(days=30) if issued else None, 30, TAX, "", net, Decimal(0),
                                    net, tax, total, Decimal(0), paid, Decimal(0), created,
                                    at if issued else None, at))
        cur.execute("SELECT setval(pg_get_serial_sequence('invoices', 'id'), %s)", (made,))
        for year, last in counters.items():
            cur.execute("INSERT INTO number_sequences (name, year, next_value) VALUES (%s, %s, %s)",
                        ("INV-{year}-{seq:06d}", year, last + 1))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE invoices")
        conn.execute("VACUUM ANALYZE customers")
    middle = months[len(months) // 2]
    return {"months": months, "first_ids": first_ids, "customer": "c0000042", "month": middle,
            "prefix": f"INV-{middle.year}-0001", "invoices": made}


def seeded_info(url: str) -> dict[str, object]:
    """What ``seed`` returned, read back from a database it seeded (``--database``)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT bill_run_on, min(id) FROM invoices GROUP BY bill_run_on ORDER BY 1").fetchall()
        made = conn.execute("SELECT count(*) FROM invoices").fetchone()[0]
    if not rows:
        raise SystemExit("--database: it holds no invoices; leave --database out to seed a new one")
    months = [r[0] for r in rows]
    middle = months[len(months) // 2]
    return {"months": months, "first_ids": [r[1] for r in rows], "customer": "c0000042", "month": middle,
            "prefix": f"INV-{middle.year}-0001", "invoices": made}


def percentile(ordered: list[float], share: float) -> float:
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def start_gunicorn(database_url: str, port: int, args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": args.log_level, "BILLSYNC_TIMEZONE": "UTC"}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [gunicorn, "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--threads", str(args.threads), "connector:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(base: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or still starting
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit("gunicorn did not become ready within 60 s")
        time.sleep(0.2)


class Client:
    """One keep-alive connection, timing each page as a client sees it."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {key}"

    def page(self, path: str) -> tuple[float, dict]:
        started = time.perf_counter()
        response = self.http.get(self.base + path, timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
        return elapsed, response.json()

    def walk(self, path: str, pages: int) -> tuple[list[float], int]:
        """Follow ``next`` from ``path`` for at most ``pages`` pages; (latencies, invoices seen)."""
        times, seen, url = [], 0, path
        while url and len(times) < pages:
            elapsed, body = self.page(url)
            times.append(elapsed)
            seen += len(body["data"])
            url = body["next"]
        return times, seen


def cursor_at(issued_on: date, invoice_id: int) -> str:
    """The API's cursor after the invoice ``(issued_on, id)`` (opaque to clients; built here to start
    a walk deep in the table without walking there)."""
    from billing_engine.use_cases.invoices import InvoiceCursor
    from connector.api.invoices import LISTING
    from connector.api.pagination import encode_cursor

    return encode_cursor(LISTING, [InvoiceCursor(issued_on, invoice_id).token()])


def scenarios(info: dict, pages: int) -> list[tuple[str, str, int]]:
    months, first_ids = info["months"], info["first_ids"]
    middle = len(months) // 2
    q = f"/api/v1/invoices?limit={PAGE}"
    # A cursor on the first invoice of a month: the walk goes on through the older months.
    deep = cursor_at(months[middle], first_ids[middle])
    month = info["month"]
    month_end = (month + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    end = cursor_at(months[min(2, len(months) - 1)], first_ids[min(2, len(months) - 1)])
    return [
        ("first page, repeated", q, -pages),
        (f"walk from page 1 via next ({pages} pages)", q, pages),
        ("walk from the middle of the table", f"{q}&cursor={deep}", pages),
        ("walk from near the end of the table", f"{q}&cursor={end}", pages),
        ("status=open via next", f"{q}&status=open", pages),
        ("status=uncollectible via next", f"{q}&status=uncollectible", pages),
        ("one customer", f"{q}&customer_id={info['customer']}", pages),
        (f"one month (issued {month:%Y-%m}) via next", f"{q}&issued_from={month}&issued_to={month_end}", pages),
        ("currency=JPY via next", f"{q}&currency=JPY", pages),
        ("status=open&currency=USD via next", f"{q}&status=open&currency=USD", pages),
        (f"number={info['prefix']}", f"{q}&number={info['prefix']}", pages),
    ]


def run(base: str, key: str, info: dict, pages: int) -> list[tuple[str, list[float], int]]:
    client = Client(base, key)
    for _ in range(20):  # warm-up: connections, caches
        client.page(f"/api/v1/invoices?limit={PAGE}")
    results = []
    for label, path, count in scenarios(info, pages):
        if count < 0:
            times = [client.page(path)[0] for _ in range(-count)]
            seen = PAGE
        else:
            times, seen = client.walk(path, count)
        results.append((label, times, seen))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=20_000, help="invoices are spread over them, one a month")
    parser.add_argument("--pages", type=int, default=200, help="pages per scenario")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--log-level", default="warning", help="billsync LOG_LEVEL (info logs one line per request)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", metavar="NAME",
                        help="use this database, seeded by an earlier run with --keep (it is kept)")
    args = parser.parse_args()

    name = args.database or f"billsync_bench_api_{os.getpid()}"
    args.keep = args.keep or bool(args.database)
    if not args.database:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(args.admin_url, name)
    process = None
    log_path = Path(tempfile.mkdtemp(prefix="bench-api-")) / "gunicorn.log"
    try:
        engine = make_engine(database_url)
        upgrade(engine)
        started = time.perf_counter()
        if args.database:
            info = seeded_info(database_url)
        else:
            info = seed(database_url, args.invoices, args.customers, datetime.now(UTC).date())
        seeded = time.perf_counter() - started
        from connector.api.auth import create_key

        _, key = create_key(engine, f"bench-{os.getpid()}", ["read"], now=datetime.now(UTC))
        engine.dispose()
        port = free_port()
        process = start_gunicorn(database_url, port, args, log_path)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process, log_path)
        results = run(base, key, info, args.pages)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    how = f"read back in {seeded:.1f} s" if args.database else f"seeded in {seeded:.0f} s"
    print(f"{info['invoices']:,} invoices over {len(info['months'])} months, {how}; gunicorn {args.workers} workers x {args.threads} threads, one keep-alive client, "
          f"limit={PAGE}, PostgreSQL, {os.cpu_count()} CPUs" + (f"; database kept: {name}" if args.keep else ""))
    width = max(len(label) for label, _, _ in results)
    print(f"{'scenario':<{width}}  pages  invoices   p50 ms   p95 ms   p99 ms   max ms")
    everything: list[float] = []
    for label, times, seen in results:
        ordered = sorted(times)
        everything.extend(times)
        print(f"{label:<{width}}  {len(times):>5}  {seen:>8}  {statistics.median(ordered):>7.1f}  "
              f"{percentile(ordered, 0.95):>7.1f}  {percentile(ordered, 0.99):>7.1f}  {ordered[-1]:>7.1f}")
    ordered = sorted(everything)
    p99 = percentile(ordered, 0.99)
    print(f"{'all pages':<{width}}  {len(ordered):>5}  {'':>8}  {statistics.median(ordered):>7.1f}  "
          f"{percentile(ordered, 0.95):>7.1f}  {p99:>7.1f}  {ordered[-1]:>7.1f}")
    print(f"goal p99 <= {GOAL_P99_MS:.0f} ms per page of {PAGE}: {'met' if p99 <= GOAL_P99_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
