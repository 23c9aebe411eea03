#!/usr/bin/env python
"""Benchmark the invoice list of the API at 1,000,000 invoices: gunicorn on loopback, PostgreSQL.

    .venv/bin/python scripts/bench_api.py [--invoices 1000000] [--customers 20000] [--pages 200]
        [--workers 2] [--threads 4] [--admin-url postgresql://postgres@127.0.0.1:5432/test] [--keep]

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
per page of 100.
"""

from __future__ import annotations

import argparse
import io
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
        made = 0
        with cur.copy(f"COPY invoices ({columns}) FROM STDIN") as copy:
            for m, month in enumerate(months):
                age = len(months) - 1 - m  # 0: this month
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
    return {"months": months, "customer": "c0000042", "month": middle,
            "prefix": f"INV-{middle.year}-0001", "invoices": made}
