"""The cut-down DejaVu Sans keeps the scripts a European invoice prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from connector.documents.fonts import prepared_fonts

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


@pytest.mark.skipif(not (DEJAVU / "DejaVuSans.ttf").is_file(), reason="fonts-dejavu-core is not installed")
def test_the_cut_fonts_keep_latin_greek_cyrillic_and_the_signs_of_an_invoice():
    text = "Müller Łódź Ştefan Ærø Ωμέγα Σπύρος Жуков Київ Ђорђе € £ – — ’ « » × − №"
    for style, path in prepared_fonts(DEJAVU).items():
        cmap = TTFont(path).getBestCmap()
        assert [c for c in text if ord(c) not in cmap] == [], style
        assert ord("東") not in cmap  # the scripts left out keep the font small
