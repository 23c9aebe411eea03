"""The Factur-X XMP of a document is the one the factur-x library prepares for the same title,
author and subject, dated by the document, naming fpdf2 as its producer."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from facturx.facturx import generate_xmp_bytes

from connector.documents.pdf import facturx_xmp


@pytest.mark.parametrize(("title", "author", "subject"), [
    ("Facture INV-2026-000001", "Billsync Demo SAS", "Facture INV-2026-000001 — Martin Conseil SARL"),
    ("Invoice INV-7", "Dupont & Fils <SAS>", "Invoice INV-7 — Société « Été » 東京 \"quoted\" 'a'"),
])
def test_the_xmp_is_the_factur_x_librarys(title, author, subject):
    packet = generate_xmp_bytes("factur-x", "en16931", None,
                                {"title": title, "author": author, "subject": subject}).decode("utf-8")
    library = packet[packet.index("<x:xmpmeta"):packet.rindex("</x:xmpmeta>") + len("</x:xmpmeta>")]
    stamp = re.search(r"<xmp:CreateDate>([^<]+)<", library).group(1)
    expected = library.replace(stamp, "2026-01-31T00:00:00+00:00").replace(
        "<pdf:Producer>pypdf</pdf:Producer>", "<pdf:Producer>fpdf2</pdf:Producer>")
    assert facturx_xmp(title, author, subject, datetime(2026, 1, 31, tzinfo=UTC)) == expected
    assert "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in expected
