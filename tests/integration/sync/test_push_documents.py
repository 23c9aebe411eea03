"""Each invoice's PDF reaches its Invoice__c in the sandbox as one file (a ContentVersion linked to the
record), whatever happens: a push repeated, a look-up that finds the file a dead worker sent, workers
killed mid-push and a rerun."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from billing_engine.storage.documents import InvoiceDocument
from billing_engine.storage.outbox import OutboxRow
from connector.billing_jobs import run_bill_run
from connector.documents.generate import generate_documents
from connector.settings import load_settings
from connector.sync.installation import keys_of
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from connector.wiring import build_services
from sfsandbox.server import AdminClient
from tests.support.documents import SELLER
from tests.support.sandbox import sandbox_environment

ROOT = Path(__file__).resolve().parents[3]
AS_OF = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)


@pytest.fixture
def env(org, database_url, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return sandbox_environment(org, database_url, SF_RETRY_MAX_SECONDS="1", BILL_RUN_MAX_PERIODS="1000", **SELLER)


@pytest.fixture
def billed(org, env):
    """The demo org pulled, billed by a French seller and pushed; then each invoice's document
    generated: the outbox holds only the documents to attach."""
    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    services = build_services(load_settings(env))
    try:
        pull_changes(services)
        result = run_bill_run(services, AS_OF, now=NOW)
        assert result.invoices_finalized > 0 and not result.failures, result.failures
        assert push_outbox(services, now=NOW).dead == 0
        report = generate_documents(services, now=NOW)
        assert report.failed == {} and report.generated >= result.invoices_finalized
        yield services
    finally:
        services.engine.dispose()


def attached(services) -> dict[str, list[tuple[str, bytes]]]:
    """Per Invoice__c key: the files linked to the record (title, bytes)."""
    client = services.salesforce()
    invoices = {r["Id"]: r["Billsync_Invoice_Id__c"] for r in client.query_all(
        "SELECT Id, Billsync_Invoice_Id__c FROM Invoice__c")}
    out: dict[str, list[tuple[str, bytes]]] = {key: [] for key in invoices.values()}
    for invoice_id, key in invoices.items():
        links = list(client.query_all(f"SELECT ContentDocumentId FROM ContentDocumentLink "
                                      f"WHERE LinkedEntityId = '{invoice_id}'"))
        for link in links:
            [version] = client.query_all(f"SELECT Id, Title, VersionData FROM ContentVersion WHERE "
                                         f"ContentDocumentId = '{link['ContentDocumentId']}' AND IsLatest = true")
            raw = client._call("GET", "blob", lambda sf, v=version: sf.session.get(
                f"{sf.base_url}sobjects/ContentVersion/{v['Id']}/VersionData", headers=sf.headers).content)
            out[key].append((version["Title"], raw))
    return out


def expected(services) -> dict[str, list[tuple[str, bytes]]]:
    keys = keys_of(services.engine)
    with Session(services.engine) as s:
        docs = s.scalars(select(InvoiceDocument).where(InvoiceDocument.invoice_id.is_not(None))).all()
        return {keys.invoice(d.invoice_id): [(d.number, bytes(d.pdf))] for d in docs}


def document_rows(services) -> Counter:
    with Session(services.engine) as s:
        return Counter(r.status for r in s.scalars(select(OutboxRow).where(OutboxRow.topic == "document.stored")))


def test_each_invoice_gets_its_pdf_once_even_when_pushed_again(billed):
    report = push_outbox(billed, now=NOW)
    assert report.dead == 0 and report.retrying == 0, report.lines()
    assert document_rows(billed) == Counter({"done": len(expected(billed)) + _credit_notes(billed)})
    files = attached(billed)
    for key, wanted in expected(billed).items():
        assert files[key] == wanted, key
    # The same rows delivered again (a retry, a worker that died before settling): nothing new.
    with Session(billed.engine) as s, s.begin():
        for row in s.scalars(select(OutboxRow).where(OutboxRow.topic == "document.stored")):
            row.status, row.next_attempt_at = "pending", NOW
    push_outbox(billed, now=NOW + timedelta(minutes=1))
    assert attached(billed) == files


def _credit_notes(services) -> int:
    with Session(services.engine) as s:
        return len(s.scalars(select(InvoiceDocument).where(InvoiceDocument.credit_note_id.is_not(None))).all())


def test_workers_killed_mid_push_and_a_rerun_attach_each_pdf_exactly_once(billed, env, org):
    """Push workers (forked from a pre-imported parent) are SIGKILLed while they attach PDFs one claim
    at a time; a normal ``billsync worker --once`` then finishes: each invoice has its PDF once."""
    admin = AdminClient(org.url, org.admin_token, org.ca_path)
    admin.faults(latency_ms=150)  # every call takes a while: the kills land mid-push
    child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PUSH_BATCH": "1"}
    zygote = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "push_zygote.py")], env=child_env,
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    total = sum(document_rows(billed).values())
    killed = 0
    rng = random.Random(20261201)
    try:
        assert zygote.stdout.readline().strip() == "ready"
        while killed < 4 and document_rows(billed)["done"] < total - 2:
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline().split()[1])
            deadline = time.monotonic() + 20
            while _claimed_by(billed.engine, f"kill-{pid}") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            # The org check, then the look-up, upload or settle of the claimed document.
            time.sleep(rng.uniform(0.3, 1.6))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if zygote.stdout.readline().split()[1] == "-9":
                killed += 1
    finally:
        zygote.stdin.close()
        zygote.wait(30)
    assert killed >= 2, "the workers were killed mid-push"
    admin.faults(latency_ms=0)
    rows = document_rows(billed)
    assert rows["done"] < total, "documents were left for the rerun"
    final = subprocess.run([sys.executable, "-m", "connector.cli", "worker", "--once", "--lease-seconds", "0"],
                           env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert set(document_rows(billed)) == {"done"}
    files = attached(billed)
    for key, wanted in expected(billed).items():
        assert files[key] == wanted, key  # exactly one file per invoice, its bytes the stored PDF


def _claimed_by(engine, worker_id: str) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(OutboxRow.id).where(OutboxRow.locked_by == worker_id)).all())
