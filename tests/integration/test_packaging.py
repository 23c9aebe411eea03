"""What a production install holds: the local Salesforce sandbox is an extra
(``billsync[sandbox]``), and billsync runs without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Runs before the code under test: the named top-level modules cannot be imported, as if
# they were not installed (sfsandbox itself, or trustme: a plain `pip install billsync`).
BLOCKER = textwrap.dedent("""
    import sys

    class Blocker:
        def __init__(self, names):
            self.names = set(names)

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker(sys.argv[1].split(",")))
    del sys.argv[1]
""")


def run_without(blocked: str, code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    program = BLOCKER + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program, blocked, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        name = requirement.split(";")[0]
        for sep in "<>=![ ~":
            name = name.split(sep)[0]
        names.add(name.strip().lower())
    return names


def test_trustme_is_only_in_the_sandbox_extra():
    assert "trustme" not in requirement_names(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "trustme" in requirement_names(extras["sandbox"])
    # the test extra installs everything the tests need, the sandbox included
    assert "billsync[sandbox]" in extras["test"] or "trustme" in requirement_names(extras["test"])


def test_the_sandbox_is_a_package_of_its_own_with_its_data():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert "sfsandbox*" in setuptools["packages"]["find"]["include"]
    assert "*.yaml" in setuptools["package-data"]["sfsandbox"]
    assert (ROOT / "sfsandbox" / "schema.yaml").is_file()
    assert not (ROOT / "connector" / "sandbox").exists()


CLI = """
    from connector.cli import main
    sys.argv = ["billsync", *sys.argv[1:]]
    main()
"""


@pytest.mark.parametrize("blocked", ["sfsandbox", "trustme"])
def test_billsync_help_without_the_sandbox_says_how_to_install_it(blocked):
    result = run_without(blocked, CLI, "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "bill-run" in result.stdout and "sync" in result.stdout
    listing = result.stdout[result.stdout.index("Commands:"):]
    sandbox_entry = listing[listing.index("  sandbox"):].split("\n  ", 2)[:2]
    assert "billsync[sandbox]" in " ".join(sandbox_entry)


@pytest.mark.parametrize("blocked", ["sfsandbox", "trustme"])
def test_sandbox_commands_without_the_extra_give_one_line(blocked):
    for args in (["sandbox", "serve", "--data", "small"], ["sandbox", "--help"], ["sandbox"]):
        result = run_without(blocked, CLI, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "error: the local Salesforce sandbox is not installed: pip install 'billsync[sandbox]'"], args


def test_billsync_imports_without_the_sandbox(tmp_path):
    result = run_without("sfsandbox,trustme", """
        import connector
        import connector.cli
        import connector.demo
        import connector.wiring
        from connector import create_app
        from connector.settings import load_settings

        create_app(load_settings({"DATABASE_URL": "sqlite:///app.db", "SF_AUTH": "none"}))
        print("sfsandbox" in sys.modules, "trustme" in sys.modules)
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_the_demo_without_the_sandbox_stops_with_one_line(tmp_path):
    result = run_without("sfsandbox", """
        import os
        os.environ.pop("SF_AUTH", None)
        os.environ["BILLSYNC_DEMO"] = "1"
        from connector.demo import main
        raise SystemExit(main())
    """, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: the demo needs the local Salesforce sandbox: pip install 'billsync[sandbox]' "
        "(scripts/run installs it), or set SF_AUTH for a real org or BILLSYNC_DEMO=0"]
    assert not (tmp_path / "instance").exists()
