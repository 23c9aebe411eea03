"""``scripts/run`` on a fresh clone: the sandbox, web, worker and clock come up connected, the
seeded won deals become subscriptions with no manual step, and a bill run's invoices reach
the sandbox as Invoice__c records after one push interval. A deal closed in the sandbox is
in billsync within seconds (its Outbound Message), long before the next pull. A second
``scripts/run`` in the same folder refuses in one line and leaves the first one alone."""

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
from simple_salesforce import Salesforce
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.invoices import Invoice
from billing_engine.storage.subscriptions import SubscriptionRow
from connector.settings import load_settings
from connector.sync.installation import keys_of
from sfsandbox.server import VerifyingSession

ROOT = Path(__file__).resolve().parents[2]
PUSH_INTERVAL = 10
PULL_INTERVAL = 3600  # only a notification can bring a deal closed during the test
NOTIFIED_WITHIN = 12  # seconds from closing a deal in the sandbox to its subscription in billsync

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


def rep(demo_env: dict[str, str]) -> Salesforce:
    """Someone working in the sandbox org through its REST API."""
    session = VerifyingSession(demo_env["SF_CA_BUNDLE"])
    token = session.post(f"{demo_env['SF_LOGIN_URL']}/services/oauth2/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": demo_env["SF_CLIENT_ID"],
        "client_secret": demo_env["SF_CLIENT_SECRET"]})
    token.raise_for_status()
    return Salesforce(instance_url=demo_env["SF_LOGIN_URL"], session_id=token.json()["access_token"],
                      session=session, version="59.0")


def open_deal(sf: Salesforce, closes_on: str) -> str:
    """A new open Platform-fee deal (EUR) with its line: the Opportunity id."""
    account = sf.query("SELECT Id FROM Account WHERE CurrencyIsoCode = 'EUR' ORDER BY Name LIMIT 1")["records"][0]
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'PLATFORM' "
                     "AND CurrencyIsoCode = 'EUR' AND Pricebook2.IsStandard = true")["records"][0]["Id"]
    deal = sf.Opportunity.create({"Name": "Closed during the demo", "AccountId": account["Id"],
                                  "StageName": "Negotiation", "CloseDate": closes_on, "Type": "New Business",
                                  "Pricebook2Id": book, "Term_Months__c": 12})["id"]
    sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entry, "Quantity": 1, "UnitPrice": 500})
    return deal


def second_run_refuses(clone: Path, env: dict[str, str], first: subprocess.Popen, port: int) -> None:
    """Another scripts/run in the same folder (its sandbox would take another port): one line, exit
    non-zero, and the first demo, its sandbox and instance/demo.env as they were."""
    demo_env_file = clone / "instance" / "demo.env"
    before = demo_env_file.read_bytes()
    other_sandbox_port = free_port()
    second = subprocess.run([str(clone / "scripts/run")], cwd=clone,
                            env={**env, "SANDBOX_PORT": str(other_sandbox_port)},
                            capture_output=True, text=True, timeout=120)
    assert second.returncode != 0
    assert (second.stdout + second.stderr).strip().splitlines() == [
        f"error: billsync is already running from this folder (pid {first.pid}, http://127.0.0.1:{port}); "
        "stop it with Ctrl-C there"]
    assert demo_env_file.read_bytes() == before
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", other_sandbox_port)) != 0, "the second run started a sandbox"
    assert first.poll() is None
    assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200


def test_scripts_run_brings_up_the_connected_demo(tmp_path):
    clone = fresh_clone(tmp_path / "billsync")
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "DATABASE_URL", "BILLSYNC_DEMO"))}
    # As on CI and this machine: requests' CA bundle must not stop billsync trusting the sandbox.
    env.update(PORT=str(port), SANDBOX_PORT=str(sandbox_port), PULL_INTERVAL_SECONDS=str(PULL_INTERVAL),
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
        # The demo bills from the first of this month (the cut-over), not each deal from its start.
        first_of_month = datetime.now(UTC).date().replace(day=1).isoformat()
        assert demo_env["BILLING_STARTS_ON"] == first_of_month

        def web_up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(web_up, 120 - (time.monotonic() - started), "the web process", process, log)
        second_run_refuses(clone, env, process, port)

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

        # A bill run for today, typed in a new shell in the clone: no virtualenv on PATH.
        today = datetime.now(UTC).date().isoformat()
        shell_env = {k: v for k, v in env.items() if k not in ("PORT", "SANDBOX_PORT")}
        shell_env["PATH"] = "/usr/bin:/bin"
        # The demo bills from the first of this month (BILLING_STARTS_ON): no back-billing to hold.
        bill = subprocess.run([str(clone / "scripts/billsync"), "bill-run", "--as-of", today], cwd=clone,
                              env=shell_env, capture_output=True, text=True, timeout=120)
        assert bill.returncode == 0, bill.stdout + bill.stderr
        assert f"bill run as of {today}: 12 invoices created, 12 finalized" in bill.stdout
        billed_at = time.monotonic()
        with Session(engine) as session:
            invoices = {inv.id: inv for inv in session.execute(select(Invoice)).scalars()}
        assert len(invoices) == 12

        # After one push interval (and the push's own round trips), they are Invoice__c records.
        def pushed():
            records = list(client.query_all("SELECT Billsync_Invoice_Id__c, Name, Total__c, Status__c "
                                            "FROM Invoice__c"))
            return records if len(records) == len(invoices) else None

        records = wait_until(pushed, 2 * PUSH_INTERVAL + 20, "Invoice__c records", process, log)
        assert time.monotonic() - billed_at < 2 * PUSH_INTERVAL + 20
        keys = keys_of(engine)  # the external ids this installation writes
        for record in records:
            invoice = invoices[keys.engine_id("invoice", record["Billsync_Invoice_Id__c"])]
            assert record["Name"] == invoice.number
            assert Decimal(str(record["Total__c"])) == invoice.total
            assert record["Status__c"] == invoice.status

        # The worker generates each invoice's PDF (the demo's seller is set) and the push attaches it to
        # its Invoice__c: one file per invoice.
        def attached():
            ids = [r["Id"] for r in client.query_all("SELECT Id FROM Invoice__c")]
            files = {i: list(client.query_all(f"SELECT ContentDocumentId FROM ContentDocumentLink "
                                              f"WHERE LinkedEntityId = '{i}'")) for i in ids}
            return files if all(files.values()) else None

        files = wait_until(attached, 4 * PUSH_INTERVAL + 60, "a PDF on every Invoice__c", process, log)
        assert all(len(links) == 1 for links in files.values()), files

        # A deal closed in the sandbox: its Outbound Message reaches the web process, and the
        # worker makes it a subscription within seconds (the next pull is an hour away).
        sf = rep(demo_env)
        deal = open_deal(sf, today)

        def subscribed():
            with Session(engine) as session:
                return session.execute(select(SubscriptionRow.id).where(SubscriptionRow.external_key == deal)).first()

        sf.Opportunity.update(deal, {"StageName": "Closed Won"})
        closed_at = time.monotonic()
        wait_until(subscribed, NOTIFIED_WITHIN, "the subscription of the deal closed in the sandbox", process, log)
        assert time.monotonic() - closed_at < NOTIFIED_WITHIN

        # What billsync holds, and the sandbox's invoices, from a new shell.
        held = subprocess.run([str(clone / "scripts/billsync"), "sync", "status"], cwd=clone, env=shell_env,
                              capture_output=True, text=True, timeout=120)
        assert held.returncode == 0, held.stdout + held.stderr
        lines = held.stdout.splitlines()
        assert lines[0] == "billsync holds" and lines[1].endswith(" customers, 13 subscriptions"), held.stdout
        listed = subprocess.run([str(clone / "scripts/billsync"), "sandbox", "query",
                                 "SELECT Name, Total__c FROM Invoice__c ORDER BY Name"], cwd=clone, env=shell_env,
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert listed.stdout.splitlines()[-1] == f"{len(invoices)} records"
        assert sorted(line.split()[0] for line in listed.stdout.splitlines()[1:-1]) == \
            sorted(inv.number for inv in invoices.values())
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
    # The webhook token is a secret: no process of the demo writes it to the log.
    assert demo_env["WEBHOOK_TOKEN"] and demo_env["WEBHOOK_TOKEN"] not in output
    # What a new user is told to look at.
    assert f"web:      http://127.0.0.1:{port}" in output
    assert f"billing:  from {first_of_month} (BILLING_STARTS_ON, the cut-over): nothing before it is invoiced" \
        in output
    assert f"sandbox:  https://127.0.0.1:{sandbox_port}" in output
    assert "scripts/billsync sync status" in output
    assert f"scripts/billsync bill-run --as-of {today}" in output
    assert f"notify:   the sandbox posts won deals to http://127.0.0.1:{port}/webhooks/salesforce/outbound-message/" \
        in output
    assert 'scripts/billsync sandbox query "SELECT Name, Total__c, Status__c FROM Invoice__c"' in output
    # One group: Ctrl-C / SIGTERM stops every process, the sandbox last.
    assert "SIGTERM received; stopping sandbox, web, worker, clock" in output
    assert output.rstrip().endswith("==> billsync stopped")
    for p in (port, sandbox_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still answers after the demo stopped"
