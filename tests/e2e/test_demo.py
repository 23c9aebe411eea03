"""``scripts/run`` on a fresh clone: the sandbox, web, worker and clock come up connected, the
seeded won deals become subscriptions with no manual step, and a bill run's invoices reach
the sandbox as Invoice__c records after one push interval."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.invoices import Invoice
from billing_engine.storage.subscriptions import SubscriptionRow
from connector.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PUSH_INTERVAL = 10

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_clone(target: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, not ignored): no instance/, no
    database, no sandbox state. The virtualenv is shared (scripts/run would build an identical one)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # keeps mtimes: bootstrap sees an installed .venv
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def wait_until(predicate, seconds: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, f"scripts/run exited ({process.returncode}):\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    return values


def test_scripts_run_brings_up_the_connected_demo(tmp_path):
    clone = fresh_clone(tmp_path / "billsync")
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "DATABASE_URL", "BILLSYNC_DEMO"))}
    # As on CI and this machine: requests' CA bundle must not stop billsync trusting the sandbox.
    env.update(PORT=str(port), SANDBOX_PORT=str(sandbox_port),
               REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    log = tmp_path / "run.log"
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen([str(clone / "scripts/run")], cwd=clone, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    engine = None
    try:
        demo_env_file = clone / "instance" / "demo.env"
        wait_until(demo_env_file.exists, 120, "instance/demo.env", process, log)
        demo_env = read_env_file(demo_env_file)
        assert demo_env["SF_LOGIN_URL"] == f"https://127.0.0.1:{sandbox_port}"
        assert demo_env["PUSH_INTERVAL_SECONDS"] == str(PUSH_INTERVAL)

        def web_up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(web_up, 120 - (time.monotonic() - started), "the web process", process, log)

        # With no manual step, the seeded Closed Won deals become subscriptions within 2 minutes.
        settings = load_settings({**demo_env, "DATABASE_URL": f"sqlite:///{clone}/instance/billsync.db",
                                  "LOG_LEVEL": "warning"})
        from connector.wiring import build_services

        services = build_services(settings)
        engine = services.engine
        client = services.salesforce()
        won = {r["Id"] for r in client.query_all("SELECT Id FROM Opportunity WHERE IsWon = true")}
        assert len(won) == 12

        def subscriptions():
            with Session(engine) as session:
                keys = set(session.execute(select(SubscriptionRow.external_key)).scalars())
            return keys if keys == won else None

        wait_until(subscriptions, 120 - (time.monotonic() - started), "12 subscriptions", process, log)

        # A bill run for today, typed in the user's shell in the clone (no demo.env needed: same database).
        today = datetime.now(UTC).date().isoformat()
        shell_env = {k: v for k, v in env.items() if k not in ("PORT", "SANDBOX_PORT")}
        # The seeded deals back-bill up to 11 months: finalize them all rather than hold them for review.
        bill = subprocess.run([str(clone / ".venv/bin/billsync"), "bill-run", "--as-of", today], cwd=clone,
                              env={**shell_env, "BILL_RUN_MAX_PERIODS": "24"}, capture_output=True, text=True,
                              timeout=120)
        assert bill.returncode == 0, bill.stdout + bill.stderr
        assert f"bill run as of {today}: 12 invoices created, 12 finalized" in bill.stdout
        billed_at = time.monotonic()
        with Session(engine) as session:
            invoices = {str(inv.id): inv for inv in session.execute(select(Invoice)).scalars()}
        assert len(invoices) == 12

        # After one push interval (and the push's own round trips), they are Invoice__c records.
        def pushed():
            records = list(client.query_all("SELECT Billsync_Invoice_Id__c, Name, Total__c, Status__c "
                                            "FROM Invoice__c"))
            return records if len(records) == len(invoices) else None

        records = wait_until(pushed, 2 * PUSH_INTERVAL + 20, "Invoice__c records", process, log)
        assert time.monotonic() - billed_at < 2 * PUSH_INTERVAL + 20
        for record in records:
            invoice = invoices[record["Billsync_Invoice_Id__c"]]
            assert record["Name"] == invoice.number
            assert Decimal(str(record["Total__c"])) == invoice.total
            assert record["Status__c"] == invoice.status
    finally:
        if engine is not None:
            engine.dispose()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    output = log.read_text()
    # What a new user is told to look at.
    assert f"web:      http://127.0.0.1:{port}" in output
    assert f"sandbox:  https://127.0.0.1:{sandbox_port}" in output
    assert "set -a; . instance/demo.env; set +a" in output
    assert f"billsync bill-run --as-of {today}" in output
    # One group: Ctrl-C / SIGTERM stops every process, the sandbox last.
    assert "SIGTERM received; stopping sandbox, web, worker, clock" in output
    assert output.rstrip().endswith("==> billsync stopped")
    for p in (port, sandbox_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still answers after the demo stopped"
