"""`billsync sandbox serve` and SQLite persistence."""

from __future__ import annotations

import base64
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


def test_a_file_in_a_persistent_org_is_kept_and_read_back_after_a_restart(tmp_path):
    db = tmp_path / "org.db"
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 4
    with SandboxServer(state_dir=tmp_path, db_path=db) as first:
        sf = Salesforce(instance_url=first.url, session_id=first.issue_token()["access_token"],
                        session=VerifyingSession(first.ca_path))
        account = sf.Account.create({"Name": "Acme"})["id"]
        version = sf.ContentVersion.create({"Title": "INV-1", "PathOnClient": "INV-1.pdf",
                                            "VersionData": base64.b64encode(pdf).decode(),
                                            "FirstPublishLocationId": account})["id"]
    with SandboxServer(state_dir=tmp_path, db_path=db) as second:
        sf = Salesforce(instance_url=second.url, session_id=second.issue_token()["access_token"],
                        session=VerifyingSession(second.ca_path))
        raw = sf.session.get(f"{sf.base_url}sobjects/ContentVersion/{version}/VersionData", headers=sf.headers)
        assert raw.status_code == 200 and raw.content == pdf


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


def serve_errors(*args: str):
    """Run ``billsync sandbox serve`` in process; it must stop before serving."""
    from click.testing import CliRunner

    from sfsandbox.cli import sandbox

    result = CliRunner().invoke(sandbox, ["serve", "--port", "0", *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


def test_serve_with_an_unusable_state_dir_or_db_gives_one_error_line(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    not_a_db = tmp_path / "not-a.db"
    not_a_db.write_text("plain text, not SQLite\n" * 100)
    state = str(tmp_path / "state")
    cases = {
        "state dir": ["--state-dir", str(a_file / "state")],
        "db in a missing place": ["--state-dir", state, "--db", str(a_file / "org.db")],
        "db that is not SQLite": ["--state-dir", state, "--db", str(not_a_db)],
    }
    for case, args in cases.items():
        code, lines = serve_errors(*args)
        assert code == 2, (case, lines)
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, lines)
    assert serve_errors("--state-dir", str(a_file / "state"))[1] == [
        f"error: cannot use {a_file / 'state'}: Not a directory"]
    assert serve_errors("--state-dir", state, "--db", str(not_a_db))[1] == [
        f"error: cannot use the org database {not_a_db}: file is not a database"]


def test_serve_refuses_a_token_lifetime_that_is_not_positive(tmp_path):
    for value in ("0", "-5", "nan"):
        code, lines = serve_errors("--state-dir", str(tmp_path), "--token-lifetime", value)
        assert code == 2
        assert lines == [f"error: --token-lifetime: {value} is not a positive number of seconds"]
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_serve_on_a_port_in_use_gives_one_error_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        from click.testing import CliRunner

        from sfsandbox.cli import sandbox

        result = CliRunner().invoke(sandbox, ["serve", "--port", str(port), "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
