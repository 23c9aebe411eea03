"""The import rules of docs/architecture.md §2 are import-linter contracts in pyproject.toml.

``lint-imports`` keeps them on the real tree, and refuses a copy of the tree into which a
forbidden import was written: the contracts are not a formality.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("billing_engine", "mappings", "connector", "sfsandbox")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


def copy_of_the_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("billing_engine/money.py", "import connector.settings",
     "connector is the outer layer"),
    ("mappings/spec.py", "import billing_engine.money",
     "connector is the outer layer"),
    ("billing_engine/pricing.py", "import billing_engine.storage.catalog",
     "calculations are pure"),
    ("connector/sync/push.py", "import billing_engine.storage.outbox",
     "never its storage"),
    ("connector/sync/push.py", "import connector.webhooks.processing",
     "sync and webhooks are independent"),
    ("sfsandbox/org.py", "import connector.settings",
     "knows nothing of billsync"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    tree = copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), result.stdout
