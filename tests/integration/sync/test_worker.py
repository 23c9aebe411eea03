"""``billsync worker``: drains the outbox once or until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from connector.cli import cli
from tests.support.push import (
    bill_customers,
    create_accounts,
    engine_invoices,
    outbox_statuses,
    salesforce_invoices,
)
from tests.support.sandbox import sandbox_environment

ROOT = Path(__file__).resolve().parents[3]


def test_worker_once_drains_the_outbox_and_exits(services, org, database_url):
    accounts = create_accounts(services.salesforce(), 20)
    bill_customers(services.engine, accounts, lines=3)
    result = CliRunner().invoke(cli, ["worker", "--once"], env=sandbox_environment(org, database_url))
    assert result.exit_code == 0, result.output
    assert "draining console jobs, webhook inbox, outbox once" in result.output
    assert "stopped after 40 items" in result.output
    assert outbox_statuses(services.engine) == {"done": 40}
    state, duplicates = salesforce_invoices(services.salesforce())
    assert duplicates == [] and state == engine_invoices(services.engine)


def test_worker_keeps_polling_and_stops_cleanly_on_sigterm(services, org, database_url):
    accounts = create_accounts(services.salesforce(), 5)
    bill_customers(services.engine, accounts, lines=1)
    env = {**os.environ, **sandbox_environment(org, database_url), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "worker", "--poll-seconds", "0.2"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while outbox_statuses(services.engine) != {"done": 10} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outbox_statuses(services.engine) == {"done": 10}
        assert proc.poll() is None, "the worker keeps running when the outbox is empty"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "polling every 0.2 s" in out and "stopped after 10 items" in out


def test_worker_without_salesforce_runs_console_jobs_only_and_says_so(database_url):
    result = CliRunner().invoke(cli, ["worker", "--once"], env={"DATABASE_URL": database_url, "SF_AUTH": "none",
                                                                "LOG_LEVEL": "warning"})
    assert result.exit_code == 0, result.output
    assert "draining console jobs once" in result.output
    assert "Salesforce is not configured (SF_AUTH=none): no inbox or outbox to drain" in result.output


def test_worker_applies_stored_notifications_against_fresh_salesforce_data(services, org, database_url):
    """The worker processes the inbox the web process filled (store first, process after)."""
    from datetime import UTC, datetime

    from sqlmodel import Session, select

    from billing_engine.storage.catalog import CustomerRow
    from connector.database import transaction
    from connector.webhooks.inbox import WebhookInbox, add_to_inbox

    [account] = create_accounts(services.salesforce(), 1, prefix="Notified")
    now = datetime.now(UTC)
    with transaction(services.engine) as session:
        add_to_inbox(session, [{"source": "outbound_message", "dedup_key": "om:04l000000000000001",
                                "object_name": "Account", "record_id": account, "action": "upsert",
                                "change_origin": None, "received_at": now, "payload": "{}", "status": "pending",
                                "attempts": 0, "next_attempt_at": now}])
    result = CliRunner().invoke(cli, ["worker", "--once"], env=sandbox_environment(org, database_url))
    assert result.exit_code == 0, result.output
    with Session(services.engine) as session:
        assert [row.status for row in session.exec(select(WebhookInbox)).all()] == ["done"]
        customers = session.exec(select(CustomerRow).where(CustomerRow.salesforce_account_id == account)).all()
    assert len(customers) == 1 and customers[0].name.startswith("Notified")
