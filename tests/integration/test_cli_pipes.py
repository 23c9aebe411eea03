"""Every ``billsync`` command behaves in a pipe: when the reader of its output goes away
(``billsync metrics mrr ... | head -2``), it stops quietly with exit code 141, as a Unix
tool does, with no error line and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "table": ["metrics", "mrr", "--from", "2026-01", "--to", "2026-12"],
    "csv": ["metrics", "mrr", "--from", "2020-01", "--to", "2026-12", "--csv"],  # buffered: fails at the flush
    "config": ["config"],
    "status": ["sync", "status"],
}


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_command_whose_reader_went_away_exits_quietly(args, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "DATABASE_URL", "LOG_"))}
    env.update(DATABASE_URL=database_url, LOG_LEVEL="info", SF_AUTH="none")
    process = subprocess.Popen([sys.executable, "-m", "connector.cli", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert stderr == ""
