"""``scripts/billsync``: billsync in a second shell, with no virtualenv on PATH and no setting
typed, uses the demo's settings from instance/demo.env and this folder's database."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEAN_PATH = "/usr/bin:/bin"  # a new shell: no .venv/bin


def folder(tmp_path: Path) -> Path:
    """A billsync folder holding the wrapper, the shared .venv and a demo.env as scripts/run writes it."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts/billsync", tmp_path / "scripts/billsync")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance/demo.env").write_text(
        "# Written by scripts/run\n"
        "SF_ORG_ID=00D000000000001EAA\n"
        "SF_CLIENT_SECRET='a secret with spaces'\n"
        "PULL_INTERVAL_SECONDS=30\n"
        "PUSH_INTERVAL_SECONDS=10\n")
    return tmp_path


def config(root: Path, cwd: Path, **env: str) -> dict[str, str]:
    result = subprocess.run([str(root / "scripts/billsync"), "config"], cwd=cwd, capture_output=True, text=True,
                            env={"PATH": CLEAN_PATH, **env}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_the_wrapper_runs_billsync_with_the_demo_settings_from_a_clean_shell(tmp_path):
    root = folder(tmp_path / "billsync")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert shutil.which("billsync", path=CLEAN_PATH) is None
    values = config(root, cwd=elsewhere, PUSH_INTERVAL_SECONDS="20")
    assert values["SF_ORG_ID"] == "00D000000000001EAA"
    assert values["PULL_INTERVAL_SECONDS"] == "30"
    assert values["PUSH_INTERVAL_SECONDS"] == "20"  # what the shell sets wins
    assert values["DATABASE_URL"] == f"sqlite:///{root}/instance/billsync.db"  # wherever it is typed

    # A real org (SF_AUTH set): the demo's file is not read at all.
    values = config(root, cwd=root, SF_AUTH="none")
    assert values["SF_ORG_ID"] == "" and values["PULL_INTERVAL_SECONDS"] == "300"


def test_the_wrapper_says_what_to_do_before_the_first_install(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts/billsync", tmp_path / "scripts/billsync")
    result = subprocess.run([str(tmp_path / "scripts/billsync"), "config"], capture_output=True, text=True,
                            env={"PATH": CLEAN_PATH}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: billsync is not installed in {tmp_path}/.venv yet; "
                                     "run scripts/run (or scripts/test) first")
