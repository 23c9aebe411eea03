"""docs/mappings.md stays in step with the registry, the contract and the default files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mappings import COMMANDS, DEFAULTS_DIR, ENGINE_RECORDS, TRANSFORMS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "mappings.md").read_text()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_and_its_parameters_are_documented(name):
    section = DOC.split("## Transforms")[1].split("\n## ")[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
    for param in TRANSFORMS[name].params:
        assert f"`{param}`" in row, f"{name}: parameter {param} undocumented"


def test_every_default_file_command_and_engine_record_key_is_documented():
    missing = [p.name for p in DEFAULTS_DIR.glob("*.yaml") if f"**`{p.name}`**" not in DOC]
    missing += [c for c in COMMANDS if f"`{c}`" not in DOC]
    for contract in {id(c): c for c in COMMANDS.values()}.values():
        missing += [k for k in contract.data_keys | contract.item_keys if f"`{k.split('.')[-1]}`" not in DOC]
    for source, keys in ENGINE_RECORDS.items():
        [row] = [line for line in DOC.splitlines() if line.startswith(f"| `{source}` |")]
        missing += [f"{source}.{k}" for k in keys if f"`{k}`" not in row]
    assert missing == []
