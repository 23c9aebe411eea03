#!/usr/bin/env python
"""Benchmark the Outbound Message endpoint: gunicorn on loopback, PostgreSQL, bounded load.

    .venv/bin/python scripts/bench_webhooks.py [--messages 2000] [--concurrency 4] [--workers 2]
        [--threads 4] [--time-cap 120] [--admin-url postgresql://postgres@127.0.0.1:5432/test]

Creates its own database (``billsync_bench_<pid>``), migrates it to head, starts
gunicorn ("connector:create_app()") on 127.0.0.1 on a free port, posts a fixed number
of Outbound Messages of 10 notifications each from a pool of keep-alive sessions
(stopping early at the time cap), checks every notification was stored once, then
stops gunicorn and drops the database. Prints acknowledged notifications/s and the
p50, p99 and max ack latency. Goals: >= 1,000 notifications/s, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402

from connector.database import make_engine, upgrade  # noqa: E402
from mappings.transforms import to_id18  # noqa: E402

ORG_ID = "00D7F00000107XsUAI"
TOKEN = "bench-token"
PER_MESSAGE = 10
GOAL_RATE = 1000.0
GOAL_P99_MS = 50.0


def envelope(message: int) -> bytes:
    """A realistic Outbound Message: 10 Opportunity notifications with 6 fields each."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">',
        f"<OrganizationId>{ORG_ID}</OrganizationId><ActionId>04k7F0000008V3hQAE</ActionId>",
        '<SessionId xsi:nil="true"/>',
        "<EnterpriseUrl>https://ap5.salesforce.com/services/Soap/c/59.0/00D7F00000107Xs</EnterpriseUrl>",
        "<PartnerUrl>https://ap5.salesforce.com/services/Soap/u/59.0/00D7F00000107Xs</PartnerUrl>",
    ]
    for i in range(PER_MESSAGE):
        n = message * PER_MESSAGE + i
        parts.append(
            f"<Notification><Id>{to_id18(f'04l7F{n:010d}')}</Id>"
            '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{to_id18(f'0067F{n:010d}')}</sf:Id><sf:AccountId>0017F000007ydJmQAI</sf:AccountId>"
            "<sf:Amount>120000.0</sf:Amount><sf:CloseDate>2026-11-20</sf:CloseDate>"
            "<sf:LastModifiedById>005RM000001hv4SYAQ</sf:LastModifiedById>"
            "<sf:Name>Express Logistics SLA</sf:Name><sf:StageName>Closed Won</sf:StageName>"
            "</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts).encode()


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
    env = {**os.environ, "DATABASE_URL": database_url, "SF_ORG_ID": ORG_ID, "WEBHOOK_TOKEN": TOKEN,
           "LOG_LEVEL": args.log_level}
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
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit("gunicorn did not become ready within 60 s")
        time.sleep(0.2)


def run_load(url: str, args) -> tuple[list[float], int, float]:
    bodies = [envelope(m) for m in range(args.messages)]
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    local = threading.local()
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + args.time_cap

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False
        return local.session

    def send(body: bytes) -> None:
        if time.monotonic() > stop_at:
            return
        started = time.perf_counter()
        try:
            response = session().post(url, data=body, headers=headers, timeout=30)
            ok = response.status_code == 200 and "<Ack>true</Ack>" in response.text
        except requests.RequestException:
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                failures[0] += 1

    warmup = [envelope(args.messages + m) for m in range(args.concurrency * 5)]
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(send, warmup))
    latencies.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(send, bodies))
    return latencies, failures[0], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="Outbound Messages to send (10 notifications each)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads, one keep-alive session each")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--time-cap", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument("--log-level", default="info", help="billsync LOG_LEVEL (info logs one line per request)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    name = f"billsync_bench_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(args.admin_url, name)
    process = None
    log_path = Path(tempfile.mkdtemp(prefix="bench-webhooks-")) / "gunicorn.log"
    try:
        engine = make_engine(database_url)
        upgrade(engine)
        port = free_port()
        process = start_gunicorn(database_url, port, args, log_path)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process, log_path)
        latencies, failures, seconds = run_load(f"{base}/webhooks/salesforce/outbound-message/{TOKEN}", args)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM webhook_inbox").scalar_one()
        engine.dispose()
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    acked = len(latencies)
    if not acked:
        print(f"no message was acknowledged ({failures} failures); see {log_path}")
        return 1
    ordered = sorted(latencies)
    rate = acked * PER_MESSAGE / seconds
    p50, p99, worst = percentile(ordered, 0.50), percentile(ordered, 0.99), ordered[-1]
    print(f"gunicorn {args.workers} workers x {args.threads} threads (gthread), {args.concurrency} client "
          f"connections, LOG_LEVEL={args.log_level}, PostgreSQL, {os.cpu_count()} CPUs")
    print(f"messages acknowledged: {acked:,} of {args.messages:,} ({failures} failed) in {seconds:.1f} s; "
          f"inbox rows: {stored:,} (expected {(acked + args.concurrency * 5) * PER_MESSAGE:,} with warm-up)")
    print(f"acknowledged notifications/s: {rate:,.0f}  (goal >= {GOAL_RATE:,.0f}: "
          f"{'met' if rate >= GOAL_RATE else 'MISSED'})")
    print(f"ack latency ms: p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f}  (goal p99 <= {GOAL_P99_MS:.0f}: "
          f"{'met' if p99 <= GOAL_P99_MS else 'MISSED'})")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
