"""The Factur-X XML of an invoice or credit note: UN/CEFACT CII, EN 16931 profile.

Built from the engine's figures (``billing_engine.use_cases.documents.DocumentSource``), never
recomputed: BT-106 is the sum of the lines' nets (BR-CO-10), BT-109 the invoice's net (BR-CO-13),
BT-110 the sum of the groups' tax (BR-CO-14), BT-112 the total (BR-CO-15), one BG-23 per VAT group
(category, rate) with its base and its tax rounded once (BR-CO-17, BR-S-08, BR-AE-08, …).

How a line is written: the engine's quantity and unit price when they multiply to its gross
amount, else one unit at the gross amount (a prorated line: the explanation, in BT-154, shows
the computation); its discount (the line's and its share of an invoice discount) as a line
allowance (BG-27), so BT-131 is its net. A credit line (a proration credit on an invoice) is
quantity −1 at its net amount (a price is never negative, BR-27). A credit note is type 381 and
names the invoice it corrects (BT-25); an invoice is 380.

An admin's custom attributes (docs/mappings.md, Custom attributes) are notes (BT-22, subject code
ACB, "additional information"), ``Cost centre: CC-42`` in the document's language, except the one
declared ``en16931: buyer_accounting_reference``, which is BT-19 (the buyer's accounting account,
ReceivableSpecifiedTradeAccountingAccount).

EN 16931 allows at most two decimals in amounts (BR-DEC-*): an invoice in a currency with three
(KWD, BHD, …) has no Factur-X XML (``NoFacturXError``); its PDF alone is the invoice.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from lxml import etree

from billing_engine.money import MINOR_UNITS
from billing_engine.use_cases.documents import CREDIT_NOTE, DocumentLine, DocumentSource
from connector.documents.seller import Seller
from connector.documents.wording import legal_notes

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
EN16931 = "urn:cen.eu:en16931:2017"
INVOICE_TYPE, CREDIT_NOTE_TYPE = "380", "381"
CREDIT_TRANSFER = "58"  # UNTDID 4461: SEPA credit transfer
SIREN_SCHEME = "0002"  # ISO 6523 ICD of the French SIREN
FRENCH_ROUTING_SCHEME = "0225"  # electronic address by SIREN (the French directory)
ATTRIBUTE_NOTE = "ACB"  # UNTDID 4451: additional information (a credit note's reason is AAI)
BUYER_ACCOUNTING_REFERENCE = "buyer_accounting_reference"  # BT-19


class NoFacturXError(Exception):
    """This document cannot carry a Factur-X XML; ``str()`` says why, in words for the customer's file."""


def _el(parent, tag: str, text: str | None = None, **attrs: str):
    prefix, name = tag.split(":")
    node = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{name}", attrs)
    if text is not None:
        node.text = text
    return node


def amount(value: Decimal, currency: str) -> str:
    places = MINOR_UNITS[currency]
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _percent(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text if text != "-0" else "0"


def _date(parent, tag: str, on: date, qualified: bool = False) -> None:
    node = _el(parent, tag)
    _el(node, "qdt:DateTimeString" if qualified else "udt:DateTimeString", on.strftime("%Y%m%d"), format="102")


def check_facturx(source: DocumentSource) -> None:
    """Raise ``NoFacturXError`` when the document cannot be a Factur-X (EN 16931) invoice."""
    places = MINOR_UNITS[source.currency]
    if not source.lines:
        raise NoFacturXError(
            "an EN 16931 invoice has at least one line (rule BR-16); every line of this one moved to its credit "
            "note, so this document has no Factur-X XML")
    if places > 2:
        raise NoFacturXError(
            f"EN 16931 allows at most two decimals in amounts (rules BR-DEC); {source.currency} amounts have "
            f"{places}, so this document has no Factur-X XML: its PDF is the {source.kind.replace('_', ' ')}")


def build_cii(source: DocumentSource, seller: Seller) -> bytes:
    """The EN 16931 CII XML of the document (UTF-8 bytes)."""
    check_facturx(source)
    cur = source.currency
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = _el(root, "rsm:ExchangedDocumentContext")
    if seller.country == "FR":
        # BT-23, the French "cadre de facturation": S1, an invoice for services.
        _el(_el(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID", "S1")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)

    document = _el(root, "rsm:ExchangedDocument")
    _el(document, "ram:ID", source.number)
    _el(document, "ram:TypeCode", CREDIT_NOTE_TYPE if source.kind == CREDIT_NOTE else INVOICE_TYPE)
    _date(document, "ram:IssueDateTime", source.issued_on)
    for subject, text in legal_notes(source, seller):
        note = _el(document, "ram:IncludedNote")
        _el(note, "ram:Content", text)
        _el(note, "ram:SubjectCode", subject)
    for attribute in source.attributes:
        if attribute.en16931 != BUYER_ACCOUNTING_REFERENCE:
            note = _el(document, "ram:IncludedNote")
            colon = " : " if source.language == "fr" else ": "
            _el(note, "ram:Content", f"{attribute.label(source.language)}{colon}{attribute.value}")
            _el(note, "ram:SubjectCode", ATTRIBUTE_NOTE)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in source.lines:
        _line(transaction, line, cur)

    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if source.buyer_reference:
        _el(agreement, "ram:BuyerReference", source.buyer_reference)
    _seller(agreement, seller)
    _buyer(agreement, source)
    if source.purchase_order:
        _el(_el(agreement, "ram:BuyerOrderReferencedDocument"), "ram:IssuerAssignedID", source.purchase_order)

    delivery = _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    del delivery  # the service period is the invoice's billing period (BG-14) below

    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    _el(settlement, "ram:InvoiceCurrencyCode", cur)
    means = _el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    _el(means, "ram:TypeCode", CREDIT_TRANSFER)
    _el(_el(means, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID", seller.iban)
    _el(_el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", seller.bic)
    for group in source.groups:
        tax = _el(settlement, "ram:ApplicableTradeTax")
        _el(tax, "ram:CalculatedAmount", amount(group.tax, cur))
        _el(tax, "ram:TypeCode", "VAT")
        if group.category not in ("S", "Z"):
            _el(tax, "ram:ExemptionReason", group.reason or group.category)
        _el(tax, "ram:BasisAmount", amount(group.net, cur))
        _el(tax, "ram:CategoryCode", group.category)
        if group.reason_code:
            _el(tax, "ram:ExemptionReasonCode", group.reason_code)
        if group.category != "O":
            _el(tax, "ram:RateApplicablePercent", _percent(group.percent))
    if source.period_starts_on and source.period_ends_before and source.kind != CREDIT_NOTE:
        period = _el(settlement, "ram:BillingSpecifiedPeriod")
        _date(period, "ram:StartDateTime", source.period_starts_on)
        _date(period, "ram:EndDateTime", _last_day(source.period_ends_before, source.period_starts_on))
    terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
    if source.kind == CREDIT_NOTE:
        _el(terms, "ram:Description", f"Credit note for invoice {source.corrects_number}"
            if source.corrects_number else "Credit note")
    else:
        _el(terms, "ram:Description", f"Net {source.payment_terms_days} days, by credit transfer to "
                                      f"{seller.formatted_iban}")
        if source.due_on:
            _date(terms, "ram:DueDateDateTime", source.due_on)
    sums = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(sums, "ram:LineTotalAmount", amount(sum((ln.net for ln in source.lines), Decimal(0)), cur))
    _el(sums, "ram:ChargeTotalAmount", amount(Decimal(0), cur))
    _el(sums, "ram:AllowanceTotalAmount", amount(Decimal(0), cur))
    _el(sums, "ram:TaxBasisTotalAmount", amount(source.net, cur))
    _el(sums, "ram:TaxTotalAmount", amount(source.tax, cur), currencyID=cur)
    _el(sums, "ram:GrandTotalAmount", amount(source.total, cur))
    _el(sums, "ram:TotalPrepaidAmount", amount(source.prepaid, cur))
    _el(sums, "ram:DuePayableAmount", amount(source.amount_due if source.kind != CREDIT_NOTE else source.total,
                                             cur))
    if source.kind == CREDIT_NOTE and source.corrects_number:
        referenced = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(referenced, "ram:IssuerAssignedID", source.corrects_number)
        if source.corrects_issued_on:
            _date(referenced, "ram:FormattedIssueDateTime", source.corrects_issued_on, qualified=True)
    for attribute in source.attributes:
        if attribute.en16931 == BUYER_ACCOUNTING_REFERENCE:
            _el(_el(settlement, "ram:ReceivableSpecifiedTradeAccountingAccount"), "ram:ID", attribute.value)
            break
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _last_day(ends_before: date, starts_on: date) -> date:
    """A half-open period's last day (EN 16931 periods include their end date)."""
    from datetime import timedelta

    return max(ends_before - timedelta(days=1), starts_on)


def line_quantity_and_price(line: DocumentLine) -> tuple[Decimal, Decimal, Decimal]:
    """``(quantity, net price, allowance)`` of a line in the XML: quantity × price − allowance = net."""
    if line.net < 0:
        return Decimal(-1), -line.net, Decimal(0)
    if line.quantity > 0 and line.quantity * line.unit_price == line.gross:
        return line.quantity, line.unit_price, line.discount
    return Decimal(1), line.gross, line.discount


def _line(transaction, line: DocumentLine, cur: str) -> None:
    item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
    _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(line.position))
    product = _el(item, "ram:SpecifiedTradeProduct")
    if line.product_code:
        _el(product, "ram:SellerAssignedID", line.product_code)
    _el(product, "ram:Name", line.description or line.product_code or line.kind)
    if line.explanation:
        _el(product, "ram:Description", line.explanation)
    quantity, price, allowance = line_quantity_and_price(line)
    agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
    _el(_el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", _plain(price))
    _el(_el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", _plain(quantity), unitCode="C62")
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:TypeCode", "VAT")
    _el(tax, "ram:CategoryCode", line.tax.code)
    if line.tax.code != "O":
        _el(tax, "ram:RateApplicablePercent", _percent(line.tax.percent))
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", line.starts_on)
    _date(period, "ram:EndDateTime", _last_day(line.ends_before, line.starts_on))
    if allowance:
        charge = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(charge, "ram:ChargeIndicator"), "udt:Indicator", "false")
        _el(charge, "ram:ActualAmount", amount(allowance, cur))
        _el(charge, "ram:Reason", "Discount")
    _el(_el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount",
        amount(line.net, cur))


def _address(party, street: str, street2: str, postal_code: str, city: str, country: str) -> None:
    address = _el(party, "ram:PostalTradeAddress")
    if postal_code:
        _el(address, "ram:PostcodeCode", postal_code)
    if street:
        _el(address, "ram:LineOne", street)
    if street2:
        _el(address, "ram:LineTwo", street2)
    if city:
        _el(address, "ram:CityName", city)
    _el(address, "ram:CountryID", country)


def _seller(agreement, seller: Seller) -> None:
    party = _el(agreement, "ram:SellerTradeParty")
    _el(party, "ram:Name", seller.name)
    legal = _el(party, "ram:SpecifiedLegalOrganization")
    if seller.country == "FR":
        _el(legal, "ram:ID", seller.company_id[:9], schemeID=SIREN_SCHEME)
    else:
        _el(legal, "ram:ID", seller.company_id)
    _address(party, seller.street, "", seller.postal_code, seller.city, seller.country)
    if seller.country == "FR":
        _el(_el(party, "ram:URIUniversalCommunication"), "ram:URIID", seller.company_id[:9],
            schemeID=FRENCH_ROUTING_SCHEME)
    _el(_el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", seller.vat_id, schemeID="VA")


def buyer_siren(source: DocumentSource) -> str | None:
    """A French buyer's SIREN, read from its French VAT number (FR + key + SIREN)."""
    vat_id = source.buyer.vat_id or ""
    return vat_id[4:13] if vat_id.startswith("FR") and len(vat_id) == 13 else None


def _buyer(agreement, source: DocumentSource) -> None:
    buyer = source.buyer
    party = _el(agreement, "ram:BuyerTradeParty")
    _el(party, "ram:Name", buyer.name)
    siren = buyer_siren(source)
    if siren:
        _el(_el(party, "ram:SpecifiedLegalOrganization"), "ram:ID", siren, schemeID=SIREN_SCHEME)
    _address(party, buyer.street, buyer.street2, buyer.postal_code, buyer.city, buyer.country)
    if siren:
        _el(_el(party, "ram:URIUniversalCommunication"), "ram:URIID", siren, schemeID=FRENCH_ROUTING_SCHEME)
    if buyer.vat_id:
        _el(_el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", buyer.vat_id, schemeID="VA")
