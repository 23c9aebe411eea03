"""The Factur-X container: the factur-x library reads each PDF back (the exact XML, XSD-valid, flavor
Factur-X, level EN 16931), and the PDF declares what the library itself declares when it attaches
the same XML to the same page (associated file, XMP, output intent), with the sRGB profile and the
fonts embedded; rendered again, it is the same file."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import facturx
from lxml import etree
from pypdf import PdfReader
from sqlmodel import Session

from billing_engine.use_cases.documents import document_sources
from connector.documents.pdf import render_pdf
from connector.documents.render import render_document
from connector.documents.seller import seller_identity
from connector.documents.wording import label

WITH_XML = ["cus-single", "cus-fr", "cus-de", "cus-us", "cus-jp", "cus-cn", "credit_note"]
FX = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
PDFAID = "http://www.aiim.org/pdfa/ns/id/"
SCHEMA = "http://www.aiim.org/pdfa/ns/schema#"
PROPERTY = "http://www.aiim.org/pdfa/ns/property#"


def _bytes(value: Any) -> bytes:
    return getattr(value, "original_bytes", None) or bytes(value)


def container(pdf: bytes) -> dict[str, Any]:
    """What a PDF declares about its attached XML."""
    root = PdfReader(io.BytesIO(pdf)).trailer["/Root"]
    [spec] = [ref.get_object() for ref in root["/AF"]]
    names = root["/Names"]["/EmbeddedFiles"]["/Names"]
    stream = spec["/EF"]["/F"].get_object()
    xmp = etree.fromstring(root["/Metadata"].get_object().get_data())
    intent = root["/OutputIntents"][0].get_object()
    profile = intent["/DestOutputProfile"].get_object()
    return {
        "file spec": (spec["/Type"], spec["/F"], spec["/UF"], spec["/AFRelationship"], spec["/Desc"]),
        "embedded files": [names[0]],
        "same spec in /AF and /EmbeddedFiles": names[1].get_object() == spec,
        "subtype": stream["/Subtype"],
        "size": stream["/Params"]["/Size"],
        "checksum is the XML's MD5": _bytes(stream["/Params"]["/CheckSum"]) == hashlib.md5(
            stream.get_data()).digest(),
        "pdfaid": (xmp.findtext(f".//{{{PDFAID}}}part"), xmp.findtext(f".//{{{PDFAID}}}conformance")),
        "fx": {el.tag.split("}")[1]: el.text for el in xmp.iter(f"{{{FX}}}*")},
        "extension schema": (xmp.findtext(f".//{{{SCHEMA}}}namespaceURI"), xmp.findtext(f".//{{{SCHEMA}}}prefix"),
                             sorted(el.text for el in xmp.iter(f"{{{PROPERTY}}}name"))),
        "title": xmp.findtext(".//{http://purl.org/dc/elements/1.1/}title//{*}li"),
        "page mode": root["/PageMode"],
        "lang": root["/Lang"],
        "output intent": (intent["/S"], intent["/OutputConditionIdentifier"], profile["/N"],
                          profile.get_data()[36:40]),  # an ICC profile's signature: b"acsp"
    }


def test_the_factur_x_library_reads_each_pdf_back(issued):
    for case in WITH_XML:
        document = issued[case].document
        name, xml = facturx.get_facturx_xml_from_pdf(io.BytesIO(document.pdf), check_xsd=True)
        assert (name, xml) == ("factur-x.xml", document.xml), case  # the library skips an XML its XSD refuses
        tree = etree.fromstring(xml)
        assert facturx.get_flavor(tree) == "factur-x", case
        assert facturx.get_level(tree, "factur-x") == "en16931", case


def test_each_pdf_declares_the_xml_as_the_factur_x_library_does(issued, seller_services, seller_settings):
    seller = seller_identity(seller_settings)
    for case in ("cus-fr", "credit_note"):
        one = issued[case]
        with Session(seller_services.engine) as session:
            [source] = document_sources(session, [(one.kind, one.row.id)])
        # The library's own container around the same page and XML.
        title = f"{label(source.language, source.kind)} {source.number}"
        reference = facturx.generate_from_binary(
            render_pdf(source, seller), one.document.xml, flavor="factur-x", level="en16931", check_xsd=False,
            pdf_metadata={"author": seller.name, "title": title,
                          "subject": f"{title} — {source.buyer.name}"}, lang=source.language)
        ours = container(one.document.pdf)
        assert ours == container(reference), case
        assert ours["file spec"] == ("/Filespec", "factur-x.xml", "factur-x.xml", "/Data", "Factur-X XML file")
        assert ours["fx"] == {"DocumentType": "INVOICE", "DocumentFileName": "factur-x.xml", "Version": "1.0",
                              "ConformanceLevel": "EN 16931"}, case
        assert ours["pdfaid"] == ("3", "B")
        assert ours["extension schema"] == (FX, "fx", ["ConformanceLevel", "DocumentFileName", "DocumentType",
                                                       "Version"])
        assert ours["output intent"] == ("/GTS_PDFA1", "sRGB", 3, b"acsp")
        assert ours["size"] == len(one.document.xml)
        # Dated by the document (not by the time it is made), the same invoice always gives the same file.
        assert render_pdf(source, seller, facturx_xml=one.document.xml) == one.document.pdf, case


def test_the_fonts_are_embedded_as_fpdf2_itself_embeds_them(issued, seller_services, seller_settings, monkeypatch):
    import fpdf.output

    import connector.documents.pdf as pdf_module

    seller = seller_identity(seller_settings)
    for case in ("cus-fr", "credit_note", "cus-kw"):
        one = issued[case]
        with Session(seller_services.engine) as session:
            [source] = document_sources(session, [(one.kind, one.row.id)])
        ours = render_pdf(source, seller, facturx_xml=one.document.xml)
        with monkeypatch.context() as patched:  # fpdf2's own writer: every font subset, map and width made anew
            patched.setattr(pdf_module, "OutputProducer", fpdf.output.OutputProducer)
            assert render_pdf(source, seller, facturx_xml=one.document.xml) == ours, case


def test_a_document_without_xml_rendered_later_is_the_same_file(issued, seller_services, seller_settings,
                                                                 monkeypatch):
    import datetime as dt

    import fpdf.output

    one = issued["cus-kw"]  # KWD: no Factur-X XML, so the XMP is fpdf2's, dated by the document
    with Session(seller_services.engine) as session:
        [source] = document_sources(session, [(one.kind, one.row.id)])

    class Clock(type):
        def __instancecheck__(cls, value):  # fpdf2's own isinstance checks still see a datetime
            return isinstance(value, dt.datetime)

    class Later(dt.datetime, metaclass=Clock):  # fpdf2 writes an hour of 2031 as the time of writing
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2031, 7, 14, 12, 0, 5, tzinfo=tz)

    monkeypatch.setattr(fpdf.output, "datetime", Later)
    again = render_document(source, seller_identity(seller_settings)).pdf
    assert again == one.document.pdf
    assert b'xmp:ModifyDate="2026-' in again and b"2031-07-14" not in again
