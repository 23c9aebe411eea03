"""The self-service pages speak English and French: every message has its French translation, the
compiled catalogue is the .po file, and a message the console also translates reads the same on
both (Flask-Babel merges the two catalogues; docs/self-service.md *Languages*)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[3]
PO = ROOT / "connector/selfservice/translations/fr/LC_MESSAGES/messages.po"
MO = ROOT / "connector/selfservice/translations/fr/LC_MESSAGES/messages.mo"
CONSOLE_PO = ROOT / "connector/console/translations/fr/LC_MESSAGES/messages.po"


def _french(path: Path) -> dict[str, str]:
    with path.open("rb") as f:
        return {m.id: m.string for m in read_po(f, locale="fr") if m.id and not m.fuzzy}


def test_every_message_of_the_pages_has_a_french_translation(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(ROOT / "connector/selfservice/babel.cfg"), "--no-location", "-o", str(pot), "."],
                   cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        extracted = {m.id for m in read_po(f) if m.id}
    french = _french(PO)
    assert extracted
    assert sorted(extracted - french.keys()) == [], "run pybabel update (docs/self-service.md, Languages)"
    assert [k for k, v in french.items() if not v] == []


def test_the_compiled_catalogue_is_the_po_file():
    with MO.open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == _french(PO), "run pybabel compile -d connector/selfservice/translations"


def test_a_message_shared_with_the_console_is_translated_alike():
    console, mine = _french(CONSOLE_PO), _french(PO)
    assert {k: (console[k], mine[k]) for k in console.keys() & mine.keys() if console[k] != mine[k]} == {}
