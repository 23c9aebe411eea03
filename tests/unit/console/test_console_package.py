"""A ``pip install billsync`` ships the console's templates, stylesheet, script and compiled
translations (package data in pyproject.toml)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "connector" / "console"


def test_every_console_asset_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["connector.console"]
    assets = [p.relative_to(CONSOLE).as_posix() for folder in ("templates", "static", "translations")
              for p in (CONSOLE / folder).rglob("*") if p.is_file() and p.suffix in (".html", ".css", ".js", ".mo")]
    assert len(assets) >= 10
    shipped = [a for a in assets
               if any(fnmatch.fnmatch(a, pattern) and a.count("/") == pattern.count("/") for pattern in patterns)]
    assert sorted(shipped) == sorted(assets)
