"""The PDF of every case: its text shows the number, every line, the VAT breakdown and the totals as
the engine has them; its fonts are embedded; its XMP declares Factur-X (PDF/A-3); a picture of its
first page is kept under test-artifacts/documents/ to look at."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from connector.documents.wording import money, reason

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "documents"
CASES = ["cus-single", "cus-fr", "cus-de", "cus-us", "cus-jp", "cus-cn", "credit_note", "cus-kw"]


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_text_shows_the_number_every_line_the_breakdown_and_the_totals(issued):
    for case in CASES:
        one = issued[case]
        text = text_of(one.document.pdf)
        lang, cur = one.document.language, one.row.currency
        assert one.number in text, case
        for line in one.lines:
            if line.credit_note_id is None:
                assert line.description in text, (case, line.description)
                assert money(line.net, cur, lang).rsplit(" ", 1)[0] in text, (case, line.net)
        for group in one.taxes:
            assert money(group.net, cur, lang) in text and money(group.tax, cur, lang) in text, case
            if group.reason:
                assert reason(lang, group.reason) in text, case
        assert money(one.row.total, cur, lang) in text, case


def test_english_and_french_documents_print_their_own_words(issued):
    english, french = text_of(issued["cus-fr"].document.pdf), text_of(issued["cus-single"].document.pdf)
    assert "INVOICE" in english and "Total incl. VAT" in english and "131.09 EUR" in english
    assert "PO-2026-0042" in english and "ACME-FIN" in english
    assert "FACTURE" in french and "Total TTC" in french and "Indemnité forfaitaire" in french
    assert "Pas d'escompte pour paiement anticipé" in french
    assert "FR76 3000 6000 0112 3456 7890 189" in french and "AGRIFRPP" in french
    reverse = text_of(issued["cus-de"].document.pdf)
    assert "Reverse charge" in reverse and "DE136695976" in reverse
    note = text_of(issued["credit_note"].document.pdf)
    assert "AVOIR" in note and issued["cus-cn"].number in note and "Unused time 11/31 days" in note


def test_the_kwd_invoice_is_an_exact_pdf_without_factur_x(issued):
    one = issued["cus-kw"]
    assert one.document.xml is None and one.document.xml_sha256 is None
    assert one.document.note.startswith("EN 16931 allows at most two decimals in amounts (rules BR-DEC); KWD")
    text = text_of(one.document.pdf)
    # 3 × 3.125 = 9.375 KWD exported (0 %): three decimals, as the engine has them.
    assert "9.375 KWD" in text and "No Factur-X XML" in text
    assert "/EmbeddedFiles" not in one.document.pdf.decode("latin-1")


def test_fonts_are_embedded_and_the_xmp_declares_factur_x(issued):
    for case in CASES:
        reader = PdfReader(io.BytesIO(issued[case].document.pdf))
        fonts = reader.pages[0]["/Resources"]["/Font"]
        for font in fonts.values():
            descendant = font.get_object()["/DescendantFonts"][0].get_object()
            assert "/FontFile2" in descendant["/FontDescriptor"], case
        xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode("utf-8")
        assert "<pdfaid:part>3</pdfaid:part>" in xmp and "<pdfaid:conformance>B</pdfaid:conformance>" in xmp, case
        if issued[case].document.xml is not None:
            assert "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#" in xmp, case
            assert "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in xmp, case
            assert "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>" in xmp, case
        assert reader.trailer["/Root"]["/OutputIntents"][0].get_object()["/S"] == "/GTS_PDFA1", case


def test_a_picture_of_each_first_page_is_kept(issued):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed; scripts/test installs it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        pdf = ARTIFACTS / f"{case}.pdf"
        pdf.write_bytes(issued[case].document.pdf)
        subprocess.run(["pdftoppm", "-png", "-r", "100", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                        str(ARTIFACTS / case)], check=True, timeout=60)
        picture = ARTIFACTS / f"{case}.png"
        assert picture.stat().st_size > 10_000, case
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reference_too_long_for_its_box_is_printed_whole_under_the_band(issued, seller_services, seller_settings):
    from dataclasses import replace

    from sqlmodel import Session

    from billing_engine.use_cases.documents import DocumentAttribute, document_sources
    from connector.documents.pdf import render_pdf
    from connector.documents.seller import seller_identity

    one = issued["cus-fr"]
    with Session(seller_services.engine) as session:
        [source] = document_sources(session, [(one.kind, one.row.id)])
    order = "PO-" + "7" * 77  # the longest purchase order number the mappings accept
    centre = "Direction des systèmes d'information, programme de modernisation " * 3
    source = replace(source, purchase_order=order,
                     attributes=(DocumentAttribute("cost_centre", centre.strip(), (("en", "Cost centre"),
                                                                                   ("fr", "Centre de coûts"))),))
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(source, seller_identity(
        seller_settings)))).pages)
    flat = " ".join(text.split())
    assert order in flat.replace(" ", "")
    assert " ".join(centre.split()) in flat
    assert one.row.number in text
    assert ("Centre de coûts" if source.language == "fr" else "Cost centre") in text
