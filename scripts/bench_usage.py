#!/usr/bin/env python
"""Benchmark usage ingestion: POST /api/v1/usage-events on gunicorn (loopback), PostgreSQL, batches of 100.

    .venv/bin/python scripts/bench_usage.py [--batches 3000] [--batch-size 100] [--clients 4]
        [--workers 2] [--threads 4] [--subscriptions 10000] [--time-cap 120] [--log-level info]
        [--admin-url postgresql://postgres@127.0.0.1:5432/test]

Creates its own database (``billsync_bench_usage_<pid>``), migrates it to head, stores the
catalog and N customers with one subscription each metering ``api_calls`` (bulk rows, as
``start_subscription`` writes them), creates an API key with the ``usage`` scope, starts
gunicorn ("connector:create_app()", the shipped gunicorn.conf.py) on 127.0.0.1 and sends
the batches from ``--clients`` client threads, each with a keep-alive connection (bodies
encoded before the clock starts; every event has its own transaction id, a random
subscription and a timestamp within the last hour). Afterwards it checks that every event
the server acknowledged (``accepted``) is in ``usage_events`` exactly once, stops gunicorn and
drops the database. Prints accepted events/s and the p50/p99/max ack latency per batch.
Goals: >= 10,000 events/s, p99 <= 100 ms per batch of 100.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from billing_engine.catalog import make_price, make_product  # noqa: E402
from billing_engine.storage.catalog import CustomerRow  # noqa: E402
from billing_engine.storage.subscriptions import SubscriptionItemRow, SubscriptionRow  # noqa: E402
from billing_engine.use_cases.catalog import upsert_price, upsert_product  # noqa: E402
from connector.api.auth import create_key  # noqa: E402
from connector.database import make_engine, upgrade  # noqa: E402

GOAL_RATE = 10000.0
GOAL_P99_MS = 100.0
START = date(2026, 1, 1)
PLATFORM = make_price("b-platform", make_product("p-platform", "platform", "Platform"), currency="EUR",
                      model="flat", unit_price="49")
API = make_price("b-api", make_product("p-api", "api_calls", "API calls"), currency="EUR", model="per_unit",
                 charge_type="usage", unit_price="0.001")


def sid(n: int) -> str:
    return f"s{n:08d}"


def seed(engine, subscriptions: int) -> None:
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
                 "country": "", "payment_terms_days": 30} for i in numbers])
            session.execute(insert(SubscriptionRow.__table__), [
                {"id": sid(i), "customer_id": f"c{i:08d}", "currency": "EUR", "starts_on": START,
                 "interval": "month", "billing_anchor_on": START, "term_months": 12, "auto_renew": True,
                 "renewal_uplift_percent": Decimal(0), "status": "active"} for i in numbers])
            session.execute(insert(SubscriptionItemRow.__table__), [
                {"subscription_id": sid(i), "item_id": name, "position": position, "price_id": price.price_id,
                 "quantity": Decimal(1)}
                for i in numbers for position, (name, price) in enumerate((("platform", PLATFORM), ("api", API)))])
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def bodies(count: int, size: int, subscriptions: int, prefix: str) -> list[tuple[list[str], bytes]]:
    """``count`` request bodies of ``size`` events each, with their transaction ids."""
    rng = random.Random(prefix)
    now = datetime.now(UTC)
    out = []
    for b in range(count):
        keys = [f"{prefix}-{b}-{e}" for e in range(size)]
        events = [{"transaction_id": key, "subscription_id": sid(rng.randrange(subscriptions)), "metric": "api_calls",
                   "quantity": str(rng.randrange(1, 500)),
                   "timestamp": (now - timedelta(seconds=rng.randrange(3600))).isoformat()} for key in keys]
        out.append((keys, json.dumps({"events": events}).encode()))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def percentile(sorted_ms: list[float], share: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(share * len(sorted_ms)) - 1))
    return sorted_ms[index]


def start_gunicorn(database_url: str, port: int, args, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": args.log_level}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [gunicorn, "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--threads", str(args.threads), "connector:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit("gunicorn did not become ready within 60 s")
        time.sleep(0.2)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat), every process's."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / TICK, total / TICK


class CpuMeter:
    """CPU used during the load by gunicorn (master and workers), by the PostgreSQL backends serving
    the bench database and by this client: what a batch costs whatever else runs on the machine."""

    def __init__(self, admin_url: str, database: str, master: int):
        self.admin_url, self.database, self.master = admin_url, database, master

    def _sample(self) -> dict[str, dict[int, float]]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            backends = [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                                       (self.database,))]
        web = [self.master, *children_of(self.master)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"web": {pid: cpu_seconds(pid) for pid in web},
                "postgres": {pid: cpu_seconds(pid) for pid in backends},
                "client": {0: usage.ru_utime + usage.ru_stime}}

    def start(self) -> None:
        self.before = self._sample()
        self.machine_before = machine_busy()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        busy, total = machine_busy()
        used = {part: sum(seconds - self.before[part].get(pid, 0.0) for pid, seconds in after[part].items())
                for part in after}
        #: CPU seconds the rest of the machine (other people's work) used meanwhile, and all CPU seconds there were.
        self.others = max(0.0, busy - self.machine_before[0] - sum(used.values()))
        self.available = total - self.machine_before[1]
        return used


class Load:
    """Client threads, one keep-alive HTTP connection each, taking bodies from a shared queue."""

    def __init__(self, port: int, key: str, work: list[tuple[list[str], bytes]], clients: int, stop_at: float):
        self.port, self.key, self.work, self.clients, self.stop_at = port, key, work, clients, stop_at
        self.next = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.accepted_keys: list[str] = []
        self.accepted = 0
        self.failures: list[str] = []

    def _take(self) -> tuple[list[str], bytes] | None:
        with self.lock:
            if self.next >= len(self.work) or time.monotonic() > self.stop_at:
                return None
            item = self.work[self.next]
            self.next += 1
            return item

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while (item := self._take()) is not None:
            keys, body = item
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/usage-events", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except OSError as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                with self.lock:
                    self.failures.append(f"{exc.__class__.__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                with self.lock:
                    self.failures.append(f"{response.status}: {payload[:200]!r}")
                continue
            result = json.loads(payload)
            stored = [r["transaction_id"] for r in result["results"] if r["status"] == "accepted"]
            with self.lock:
                self.latencies.append(elapsed)
                self.accepted += result["accepted"]
                self.accepted_keys.extend(stored)
        conn.close()

    def run(self) -> float:
        threads = [threading.Thread(target=self._client, name=f"client-{n}") for n in range(self.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3000, help="requests to send after the warm-up")
    parser.add_argument("--batch-size", type=int, default=100, help="events per request")
    parser.add_argument("--clients", type=int, default=4, help="client threads, one keep-alive connection each")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--subscriptions", type=int, default=10000, help="subscriptions the events are spread over")
    parser.add_argument("--time-cap", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument("--log-level", default="info", help="billsync LOG_LEVEL (info logs one line per request)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    name = f"billsync_bench_usage_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(args.admin_url, name)
    process = None
    log_path = Path(tempfile.mkdtemp(prefix="bench-usage-")) / "gunicorn.log"
    try:
        engine = make_engine(database_url)
        upgrade(engine)
        t0 = time.perf_counter()
        seed(engine, args.subscriptions)
        _, key = create_key(engine, "bench-meter", ["usage"], now=datetime.now(UTC))
        print(f"seeded {args.subscriptions:,} subscriptions in {time.perf_counter() - t0:.1f} s")
        warmup = bodies(args.clients * 10, args.batch_size, args.subscriptions, "warm")
        work = bodies(args.batches, args.batch_size, args.subscriptions, "bench")
        port = free_port()
        process = start_gunicorn(database_url, port, args, log_path)
        wait_until_up(port, process, log_path)
        Load(port, key, warmup, args.clients, time.monotonic() + 60).run()
        load = Load(port, key, work, args.clients, time.monotonic() + args.time_cap)
        meter = CpuMeter(args.admin_url, name, process.pid)
        load_before = os.getloadavg()
        meter.start()
        seconds = load.run()
        cpu = meter.stop()
        load_after = os.getloadavg()
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT count(*), count(DISTINCT e.event_id) FROM usage_events e "
                "JOIN usage_event_keys k ON k.id = e.event_id WHERE k.idempotency_key = ANY(:keys)"),
                {"keys": load.accepted_keys}).one()
            partitions = conn.execute(text(
                "SELECT e.tableoid::regclass::text, count(*) FROM usage_events e GROUP BY 1 ORDER BY 1")).all()
        engine.dispose()
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if not load.latencies:
        print(f"no batch was acknowledged ({len(load.failures)} failures, e.g. {load.failures[:1]}); see {log_path}")
        return 1
    ordered = sorted(load.latencies)
    rate = load.accepted / seconds
    p50, p99, worst = percentile(ordered, 0.50), percentile(ordered, 0.99), ordered[-1]
    print(f"gunicorn {args.workers} workers x {args.threads} threads (gthread), {args.clients} client connections, "
          f"LOG_LEVEL={args.log_level}, PostgreSQL, {os.cpu_count()} CPUs")
    print(f"machine: load average {load_before[0]:.2f} before the load, {load_after[0]:.2f} after it "
          f"(1-minute; the benchmark's own processes count in it); other processes used "
          f"{meter.others / meter.available:.0%} of the CPUs during the load")
    print(f"batches acknowledged: {len(ordered):,} of {args.batches:,} ({len(load.failures)} failed"
          f"{': ' + load.failures[0] if load.failures else ''}) in {seconds:.1f} s")
    print(f"accepted events: {load.accepted:,}; in usage_events: {found[0]:,} rows ({found[1]:,} distinct), "
          f"every acknowledged event stored once: {found[0] == found[1] == len(load.accepted_keys) == load.accepted}")
    print("partitions: " + ", ".join(f"{table} {count:,}" for table, count in partitions))
    print(f"accepted events/s: {rate:,.0f}  (goal >= {GOAL_RATE:,.0f}: {'met' if rate >= GOAL_RATE else 'MISSED'})")
    print(f"ack latency per batch of {args.batch_size}, ms: p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f}  "
          f"(goal p99 <= {GOAL_P99_MS:.0f}: {'met' if p99 <= GOAL_P99_MS else 'MISSED'})")
    batches = len(ordered)
    per_batch = {part: used * 1000 / batches for part, used in cpu.items()}
    total = sum(per_batch.values())
    print(f"CPU per batch: gunicorn {per_batch['web']:.1f} ms, PostgreSQL backends {per_batch['postgres']:.1f} ms, "
          f"this client {per_batch['client']:.1f} ms (total {total:.1f} ms; the machine's busy share: "
          f"{sum(cpu.values()) / (seconds * (os.cpu_count() or 1)):.0%} of its CPUs went to these)")
    print(f"capacity if these processes had the {os.cpu_count()} CPUs to themselves: "
          f"{(os.cpu_count() or 1) * 1000 / total * args.batch_size:,.0f} events/s (CPU-bound estimate)")
    ok = not load.failures and found[0] == found[1] == load.accepted
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
