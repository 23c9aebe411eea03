"""`billsync sandbox serve` and SQLite persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from simple_salesforce import Salesforce

from sfsandbox.server import SandboxServer, VerifyingSession

ROOT = Path(__file__).resolve().parents[3]


def test_state_persists_in_sqlite_across_restarts(tmp_path):
    db = tmp_path / "org.db"
    with SandboxServer(state_dir=tmp_path, db_path=db) as first:
        sf = Salesforce(instance_url=first.url, session_id=first.issue_token()["access_token"],
                        session=VerifyingSession(first.ca_path))
        account_id = sf.Account.create({"Name": "Kept", "MRR__c": "99.95", "Billsync_Customer_Id__c": "c1"})["id"]
        gone = sf.Account.create({"Name": "Gone"})["id"]
        sf.Account.delete(gone)
        ca = first.ca_path.read_bytes()
    with SandboxServer(state_dir=tmp_path, db_path=db) as second:
        assert second.ca_path.read_bytes() == ca  # the same CA bundle after a restart
        sf = Salesforce(instance_url=second.url, session_id=second.issue_token()["access_token"],
                        session=VerifyingSession(second.ca_path), parse_float=Decimal)
        rows = sf.query("SELECT Id, MRR__c FROM Account")["records"]
        assert [(r["Id"], r["MRR__c"]) for r in rows] == [(account_id, Decimal("99.95"))]
        assert sf.Account.upsert("Billsync_Customer_Id__c/c1", {"Name": "Again"}) == 200
        new_id = sf.Account.create({"Name": "New"})["id"]
        assert new_id not in (account_id, gone)


def test_serve_small_starts_quickly_prints_the_client_env_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "sandbox", "serve", "--port", "0", "--data",
                             "small", "--state-dir", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "=" in line and line.startswith("SF_"):
                key, value = line.strip().split("=", 1)
                lines[key] = value
            if "SF_API_VERSION" in lines:
                break
        ready = time.monotonic() - started
        assert ready < 5, f"ready after {ready:.1f} s"
        assert {"SF_LOGIN_URL", "SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_CA_BUNDLE", "SF_ORG_ID"} <= set(lines)
        assert Path(lines["SF_CA_BUNDLE"]).exists()
        session = VerifyingSession(lines["SF_CA_BUNDLE"])
        token = session.post(f"{lines['SF_LOGIN_URL']}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": lines["SF_CLIENT_ID"],
            "client_secret": lines["SF_CLIENT_SECRET"]}).json()
        sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)
        assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "sandbox stopped" in out
