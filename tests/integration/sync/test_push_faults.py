"""The push under faults: 503s and lock errors, an expired token, a spent API allocation, two
workers at once, and workers killed with SIGKILL mid-push. After each, a rerun converges to
exactly what the engine holds, with no duplicate and nothing missing in Salesforce."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.outbox import OutboxRow
from connector.settings import load_settings
from connector.sync.push import push_outbox
from connector.wiring import build_services
from sfsandbox.server import AdminClient
from tests.support.push import (
    NOW,
    bill_customers,
    create_accounts,
    engine_invoices,
    invoice_key,
    outbox_statuses,
    salesforce_invoices,
)
from tests.support.sandbox import sandbox_environment

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fast_env(org, database_url, monkeypatch) -> dict[str, str]:
    """A billsync that retries quickly and lets the org's allocation (not its own budget) stop it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return sandbox_environment(org, database_url, SF_RETRY_MAX_SECONDS="1", SF_API_BUDGET_SHARE="1",
                               SF_LIMIT_PAUSE_SECONDS="1")


@pytest.fixture
def fast_services(fast_env):
    services = build_services(load_settings(fast_env))
    yield services
    services.engine.dispose()


@pytest.fixture
def admin(org) -> AdminClient:
    return AdminClient(org.url, org.admin_token, org.ca_path)


def converged(services) -> None:
    state, duplicates = salesforce_invoices(services.salesforce())
    assert duplicates == []
    expected = engine_invoices(services.engine)
    assert set(state) == set(expected), f"missing {sorted(set(expected) - set(state))[:5]}"
    assert state == expected
    assert set(outbox_statuses(services.engine)) == {"done"}


def test_503s_and_unable_to_lock_row_converge(fast_services, admin):
    accounts = create_accounts(fast_services.salesforce(), 150)
    bill_customers(fast_services.engine, accounts, lines=3)
    admin.faults(error_rate_5xx="0.2", unable_to_lock_rate="0.05", seed=7)

    at, runs, locks_seen = NOW, 0, 0
    while set(outbox_statuses(fast_services.engine)) != {"done"} and runs < 8:
        report = push_outbox(fast_services, worker_id="w1", batch_size=100, now=at)
        locks_seen += report.retrying
        runs += 1
        at += timedelta(hours=1)
    admin.faults(error_rate_5xx="0", unable_to_lock_rate="0")

    converged(fast_services)
    with Session(fast_services.engine) as session:
        assert not session.scalars(select(OutboxRow).where(OutboxRow.attempts > 0)).all()  # never counted as errors


def test_token_expiring_mid_push_is_renewed_once(fast_services, admin):
    client = fast_services.salesforce()
    accounts = create_accounts(client, 60)
    bill_customers(fast_services.engine, accounts, lines=2)
    real = client.composite
    calls = []

    def composite(subrequests, **kw):
        calls.append(len(subrequests))
        if len(calls) == 2:
            admin.expire_tokens()
        return real(subrequests, **kw)

    client.composite = composite
    report = push_outbox(fast_services, worker_id="w1", batch_size=40, now=NOW, concurrency=1)

    assert len(calls) > 2 and client.reauthentications == 1
    assert report.claimed == report.done == 120
    converged(fast_services)


def test_api_allocation_running_out_pauses_the_push_and_a_rerun_after_the_reset_converges(fast_services, admin):
    client = fast_services.salesforce()
    accounts = create_accounts(client, 100)
    bill_customers(fast_services.engine, accounts, lines=2)
    real = client.composite
    calls = []

    def composite(subrequests, **kw):
        if any("body" in s for s in subrequests):  # a call sending records (not the check of the org)
            calls.append(1)
        answer = real(subrequests, **kw)
        if len(calls) == 2:  # the org's allocation is spent (by everyone) after our second call
            admin.faults(api_allocation=admin.stats()["api_calls"])
        return answer

    client.composite = composite
    report = push_outbox(fast_services, worker_id="w1", batch_size=25)

    assert report.paused_until is not None and "TotalRequests Limit exceeded" in report.stop_reason
    assert 0 < report.done < 200 and report.dead == 0
    statuses = outbox_statuses(fast_services.engine)
    assert statuses["in_flight"] == 0 and statuses["dead"] == 0 and statuses["pending"] > 0
    with Session(fast_services.engine) as session:  # released untouched: no attempt counted
        assert not session.scalars(select(OutboxRow).where(OutboxRow.attempts > 0)).all()
    # Paused: a push before the allocation resets sends nothing and loses nothing.
    assert push_outbox(fast_services, worker_id="w1", batch_size=25).composite_calls == 0

    admin.call("POST", "api-usage/reset")
    admin.faults(api_allocation=100000)
    time.sleep(max(0.0, (report.paused_until - report.started_at).total_seconds()) + 0.2)
    push_outbox(fast_services, worker_id="w1", batch_size=25)
    converged(fast_services)


def test_two_workers_never_push_the_same_row(fast_env, fast_services):
    accounts = create_accounts(fast_services.salesforce(), 300)
    bill_customers(fast_services.engine, accounts, lines=1)
    second = build_services(load_settings(fast_env))
    sent: dict[str, list[str]] = {"w1": [], "w2": []}
    lock = threading.Lock()

    def spy(services, name):
        client = services.salesforce()
        real = client.composite

        def composite(subrequests, **kw):
            with lock:
                sent[name].extend(r["Billsync_Invoice_Id__c"] for s in subrequests if "body" in s
                                  for r in s["body"]["records"] if r["attributes"]["type"] == "Invoice__c")
            time.sleep(0.05)  # keep both in flight at once
            return real(subrequests, **kw)

        client.composite = composite

    spy(fast_services, "w1")
    spy(second, "w2")
    reports = {}
    threads = [threading.Thread(target=lambda s=s, n=n: reports.setdefault(n, push_outbox(
        s, worker_id=n, batch_size=30, now=NOW, concurrency=1))) for s, n in ((fast_services, "w1"), (second, "w2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    second.engine.dispose()

    assert reports["w1"].claimed > 0 and reports["w2"].claimed > 0, "both workers took part"
    assert reports["w1"].claimed + reports["w2"].claimed == 600
    assert not set(sent["w1"]) & set(sent["w2"])
    assert sorted(sent["w1"] + sent["w2"]) == sorted(invoice_key(fast_services.engine, i) for i in range(1, 301))
    converged(fast_services)


def _claimed_by(engine, worker_id: str) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(OutboxRow.id).where(OutboxRow.locked_by == worker_id)).all())


def test_workers_killed_at_random_points_leave_nothing_lost_or_doubled(fast_env, fast_services, admin):
    """10 push workers (forked from a pre-imported parent) are SIGKILLed at random points while rows
    are in flight; a normal ``billsync worker --once`` then finishes the job."""
    accounts = create_accounts(fast_services.salesforce(), 2000)
    bill_customers(fast_services.engine, accounts, lines=2)
    # Salesforce-like latency keeps each worker's push longer than the kill window, however fast
    # this machine is, so every kill lands mid-push (claim → build → send → settle).
    admin.faults(latency_ms=150)
    env = {**os.environ, **fast_env, "PYTHONPATH": str(ROOT)}
    zygote = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "push_zygote.py")], env=env,
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rng = random.Random(20261124)
    killed = 0
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for _ in range(10):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline().split()[1])
            deadline = time.monotonic() + 20
            while _claimed_by(fast_services.engine, f"kill-{pid}") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8))  # somewhere in claim → build → send → settle
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if zygote.stdout.readline().split()[1] == "-9":
                killed += 1
    finally:
        zygote.stdin.close()
        zygote.wait(30)
    assert killed >= 8, "the workers were killed mid-push"
    statuses = outbox_statuses(fast_services.engine)
    assert statuses["pending"] + statuses["in_flight"] > 0, "work was left for the rerun"

    admin.faults(latency_ms=0)
    final = subprocess.run([sys.executable, "-m", "connector.cli", "worker", "--once", "--lease-seconds", "0"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    converged(fast_services)
