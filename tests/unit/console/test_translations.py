"""The console and the customer portal speak English and French: every message of their code and
templates has its French translation, and the compiled catalogue the app loads is the one of the .po
file (docs/console.md *Languages*)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[3]
#: The web pages with a catalogue of their own.
PACKAGES = ("console", "portal")


def _po(package: str) -> Path:
    return ROOT / "connector" / package / "translations" / "fr" / "LC_MESSAGES" / "messages.po"


def _ids(catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_message_in_the_code_has_a_french_translation(tmp_path, package):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / f"connector/{package}/babel.cfg"), "-k", "_l", "--no-location", "-o", str(pot), "."],
                   cwd=ROOT, check=True, capture_output=True)
    extracted = _ids(read_po(pot.open("rb")))
    with _po(package).open("rb") as f:
        french = read_po(f, locale="fr")
    assert extracted, "no message extracted"
    assert sorted(extracted - _ids(french)) == [], "run pybabel update (docs/console.md, Languages)"
    untranslated = [m.id for m in french if m.id and not m.string]
    assert untranslated == []
    assert not [m.id for m in french if m.id and m.fuzzy]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_compiled_catalogue_is_the_po_file(package):
    with _po(package).open("rb") as f:
        source = {m.id: m.string for m in read_po(f, locale="fr") if m.id}
    with _po(package).with_suffix(".mo").open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == source, f"run pybabel compile -d connector/{package}/translations (docs/console.md, Languages)"
