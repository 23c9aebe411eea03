"""The one-way dependency rules of docs/architecture: checked by walking imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "billing_engine": {"connector", "mappings", "flask", "simple_salesforce", "requests"},
    "mappings": {"connector", "billing_engine", "flask", "simple_salesforce", "sqlmodel", "sqlalchemy"},
}
# The sandbox stands in for Salesforce: it must not know billsync's own code.
SANDBOX_FORBIDDEN = {"billing_engine", "mappings", "connector"}


def imported_top_modules(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module, node.lineno))
    return found


def violations(package: str, forbidden: set[str], allow_prefix: str | None = None) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module, line in imported_top_modules(path):
            top = module.split(".")[0]
            if top in forbidden:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
            if allow_prefix and top == "connector" and not module.startswith(allow_prefix):
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return problems


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_inner_packages_never_import_outward(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_sqlalchemy_stays_in_the_engine_storage_modules():
    problems = []
    for path in sorted((ROOT / "billing_engine").rglob("*.py")):
        rel = path.relative_to(ROOT / "billing_engine")
        if rel.parts[0] in ("storage", "services") or rel.name == "services.py":
            continue
        for module, line in imported_top_modules(path):
            if module.split(".")[0] in ("sqlmodel", "sqlalchemy"):
                problems.append(f"billing_engine/{rel}:{line}: imports {module} outside storage")
    assert problems == []


def test_the_sandbox_imports_nothing_from_billsync():
    sandbox = ROOT / "sfsandbox"
    assert sorted(sandbox.rglob("*.py")), "the sandbox package is missing"
    assert violations("sfsandbox", SANDBOX_FORBIDDEN) == []


def test_the_guard_itself_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom connector.settings import load_settings\n")
    assert ("connector.settings", 2) in imported_top_modules(bad)
