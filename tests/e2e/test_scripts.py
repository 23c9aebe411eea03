"""The two commands a new user types, through their real entry points."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_database_url_gives_one_clear_line_and_no_traceback():
    env = {**os.environ, "DATABASE_URL": "nonsense"}
    result = subprocess.run([str(ROOT / "scripts/run")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["error: DATABASE_URL: not a URL: 'nonsense'; use sqlite:///path/to/file.db or "
                      "postgresql://user@host/db"]
    assert "Traceback" not in result.stdout + result.stderr


def test_scripts_run_serves_health_and_readiness(database_url, tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PORT": str(port)}
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen([str(ROOT / "scripts/run")], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, (tmp_path / "run.log").read_text()
                assert time.monotonic() < deadline, "billsync did not start within 120 s"
                time.sleep(0.3)
        assert health.status_code == 200
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert f"http://127.0.0.1:{port}/healthz" in output
