"""One document's files: the PDF/A-3 with its Factur-X XML attached.

``render_document`` lays out the PDF (``pdf.py``), builds the EN 16931 CII XML (``cii.py``),
checks it against the Factur-X XSD, and attaches it with the ``factur-x`` library (the
``factur-x.xml`` file, ``/AFRelationship /Data``, and the XMP that declares the Factur-X
profile). A document in a currency EN 16931 cannot express (three decimals) is a plain PDF/A
that says so; its note is stored with it.
"""

from __future__ import annotations

import facturx

from billing_engine.use_cases.documents import DocumentSource, RenderedDocument
from connector.documents.cii import NoFacturXError, build_cii, check_facturx
from connector.documents.pdf import render_pdf
from connector.documents.seller import Seller
from connector.documents.wording import label


def render_document(source: DocumentSource, seller: Seller) -> RenderedDocument:
    """The stored form of one invoice or credit note."""
    try:
        check_facturx(source)
    except NoFacturXError as refused:
        note = str(refused)
        pdf = render_pdf(source, seller, xml_note=label(source.language, "no_facturx", reason=note))
        return RenderedDocument(source.kind, source.record_id, source.number, source.language, pdf, None, note)
    xml = build_cii(source, seller)
    plain = render_pdf(source, seller)
    pdf = facturx.generate_from_binary(
        plain, xml, flavor="factur-x", level="en16931", check_xsd=True, check_schematron=False,
        pdf_metadata={"author": seller.name, "keywords": "Factur-X, EN 16931",
                      "title": f"{label(source.language, source.kind)} {source.number}",
                      "subject": f"{label(source.language, source.kind)} {source.number} — {source.buyer.name}"},
        lang=source.language)
    return RenderedDocument(source.kind, source.record_id, source.number, source.language, pdf, xml, "")
