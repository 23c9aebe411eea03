#!/usr/bin/env python
"""Benchmark the push (and the pull) against the local sandbox with injected latency.

    .venv/bin/python scripts/bench_sync.py [--only push|pull] [--invoices 10000] [--lines 5]
        [--customers 1000] [--latency-ms 100] [--batch-size 2000] [--concurrency 2]
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--accounts 100000]

push: starts ``billsync sandbox serve`` in its own process, creates ``--customers``
Accounts, bills ``--invoices`` finalized invoices of ``--lines`` lines in the engine
(``run_billing``: invoices / customers monthly runs), sets the latency, then times
``push_outbox`` and prints the API calls (the sandbox's count), records per call and
records/s, and checks the org holds every invoice once.

pull: a sandbox with the ``large`` data set (100,000 Accounts), then
``connector.sync.pull.pull_changes(objects=["Account"], full=True)``.

The database is a temporary SQLite file unless ``--database-url`` names a PostgreSQL
server (the script creates its own schema there and drops it at the end).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from connector.database import make_engine, upgrade  # noqa: E402
from connector.settings import load_settings  # noqa: E402
from connector.wiring import build_services  # noqa: E402
from sfsandbox.server import AdminClient  # noqa: E402


@contextmanager
def sandbox(data: str, state_dir: Path):
    """``billsync sandbox serve`` in its own process (its CPU is not ours); yields (env, admin)."""
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "sandbox", "serve", "--port", "0",
                             "--data", data, "--state-dir", str(state_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    env: dict[str, str] = {}
    token = url = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if m := re.search(r"listening on (\S+)", line):
                url = m.group(1)
            if m := re.search(r"X-Sandbox-Admin-Token: ([^)\s]+)", line):
                token = m.group(1)
            if m := re.fullmatch(r"([A-Z_]+)=(.*)", line):
                env[m.group(1)] = m.group(2)
                if m.group(1) == "SF_API_VERSION":
                    break
        if not (url and token and "SF_CA_BUNDLE" in env):
            raise SystemExit(f"the sandbox did not start (exit code {proc.poll()})")
        yield env, AdminClient(url, token, env["SF_CA_BUNDLE"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def database(url: str | None, tmp: Path):
    if not url:
        path = tmp / "bench.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield f"sqlite:///{path}"
        return
    schema = f"bench_sync_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    scoped = f"{url}{sep}options={quote('-csearch_path=' + schema)}"
    try:
        engine = make_engine(scoped)
        upgrade(engine)
        engine.dispose()
        yield scoped
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def services_for(env: dict[str, str], database_url: str):
    settings = load_settings({**env, "DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                              "SF_TIMEOUT_SECONDS": "120"})
    return build_services(settings)


def bench_push(args, tmp: Path) -> None:
    from connector.sync.push import push_outbox
    from tests.support.push import (
        bill_customers,
        create_accounts,
        engine_invoices,
        outbox_statuses,
        salesforce_invoices,
    )

    months = max(1, args.invoices // args.customers)
    with sandbox("none", tmp / "sandbox") as (env, admin), database(args.database_url, tmp) as url:
        services = services_for(env, url)
        client = services.salesforce()
        t0 = time.perf_counter()
        accounts = create_accounts(client, args.customers)
        bill_customers(services.engine, accounts, lines=args.lines, months=months)
        rows = sum(outbox_statuses(services.engine).values())
        print(f"setup: {len(accounts):,} accounts, {args.customers * months:,} invoices x {args.lines} lines "
              f"billed, {rows:,} outbox rows ({time.perf_counter() - t0:.1f} s)")
        admin.faults(latency_ms=args.latency_ms)
        client.limits()  # authenticated and warm: the push is measured alone
        calls_before = admin.stats()["api_calls"]
        t0 = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats
            profile = cProfile.Profile()
            report = profile.runcall(push_outbox, services, worker_id="bench", batch_size=args.batch_size,
                                     concurrency=args.concurrency)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
        else:
            report = push_outbox(services, worker_id="bench", batch_size=args.batch_size,
                                 concurrency=args.concurrency)
        elapsed = time.perf_counter() - t0
        api_calls = admin.stats()["api_calls"] - calls_before
        admin.faults(latency_ms=0)
        for line in report.lines():
            print("  " + line)
        print(f"push: {report.records_sent:,} records in {api_calls} API calls "
              f"({report.records_sent / max(api_calls, 1):,.0f} records/call), {elapsed:.1f} s, "
              f"{report.records_sent / elapsed:,.0f} records/s "
              f"(latency {args.latency_ms} ms per call, batch size {args.batch_size}, "
              f"{args.concurrency} calls in flight)")
        state, duplicates = salesforce_invoices(client)
        expected = engine_invoices(services.engine)
        print(f"check: org holds {len(state):,} invoices, engine {len(expected):,}; duplicates {len(duplicates)}; "
              f"identical: {state == expected}")
        services.engine.dispose()


def bench_pull(args, tmp: Path) -> None:
    try:
        from connector.sync.pull import pull_changes
    except ImportError:
        print("pull: connector.sync.pull.pull_changes is not available yet")
        return
    with sandbox("large", tmp / "sandbox-large") as (env, admin), database(args.database_url, tmp) as url:
        services = services_for(env, url)
        services.salesforce().limits()
        admin.faults(latency_ms=args.latency_ms)
        calls_before = admin.stats()["api_calls"]
        t0 = time.perf_counter()
        report = pull_changes(services, objects=["Account"], full=True)
        elapsed = time.perf_counter() - t0
        api_calls = admin.stats()["api_calls"] - calls_before
        fetched = sum(getattr(o, "fetched", 0) for o in report.objects)
        print(f"pull: {fetched:,} Accounts in {api_calls} API calls, {elapsed:.1f} s, "
              f"{fetched / elapsed:,.0f} records/s (latency {args.latency_ms} ms per call)")
        services.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["push", "pull"])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=2, help="Composite calls in flight at once.")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "push"):
            bench_push(args, Path(tmp))
        if args.only in (None, "pull"):
            bench_pull(args, Path(tmp))


if __name__ == "__main__":
    main()
