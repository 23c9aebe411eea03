"""The console speaks English and French: every message of the code and templates has its French
translation, and the compiled catalogue the app loads is the one of the .po file (docs/console.md
*Languages*)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[3]
TRANSLATIONS = ROOT / "connector" / "console" / "translations"
PO = TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po"
MO = TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.mo"


def _ids(catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


def test_every_message_in_the_code_has_a_french_translation(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / "connector/console/babel.cfg"), "-k", "_l", "--no-location", "-o", str(pot), "."],
                   cwd=ROOT, check=True, capture_output=True)
    extracted = _ids(read_po(pot.open("rb")))
    with PO.open("rb") as f:
        french = read_po(f, locale="fr")
    assert extracted, "no message extracted"
    assert sorted(extracted - _ids(french)) == [], "run pybabel update (docs/console.md, Languages)"
    untranslated = [m.id for m in french if m.id and not m.string]
    assert untranslated == []
    assert not [m.id for m in french if m.id and m.fuzzy]


def test_the_compiled_catalogue_is_the_po_file():
    with PO.open("rb") as f:
        source = {m.id: m.string for m in read_po(f, locale="fr") if m.id}
    with MO.open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == source, "run pybabel compile -d connector/console/translations (docs/console.md, Languages)"
