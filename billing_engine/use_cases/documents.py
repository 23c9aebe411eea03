"""Invoice documents: what each finalized invoice and credit note prints, and their stored files.

``documents_due`` lists the finalized invoices and credit notes that have no document yet;
``document_sources`` reads everything a document shows, as plain values (``DocumentSource``:
the buyer, the lines with their explanations and VAT, the VAT groups, the totals, the dates,
the buyer's references, the invoice a credit note corrects); the connector renders them
(``connector.documents``) and ``store_documents`` keeps the files, once per invoice or credit
note (immutable, each with its SHA-256), writing ``document.stored`` for the push to attach the
PDF in Salesforce, in the same transaction. ``get_document`` serves a stored one.

Nothing here computes a figure: every amount is the engine's, as stored at finalization.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.errors import NotFoundError
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import documents as document_store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events
from billing_engine.tax import LineTax, TaxGroup, vat_breakdown

ZERO = Decimal(0)
INVOICE, CREDIT_NOTE = "invoice", "credit_note"


@dataclass(frozen=True)
class DocumentParty:
    name: str
    street: str = ""
    street2: str = ""
    postal_code: str = ""
    city: str = ""
    region: str = ""
    country: str = ""
    vat_id: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    position: int
    kind: str
    description: str
    explanation: str
    product_code: str
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Decimal
    gross: Decimal
    discount: Decimal  # line discount + its share of an invoice discount, with the line's sign
    net: Decimal
    tax: LineTax


@dataclass(frozen=True)
class AttributeDeclaration:
    """How an admin declared a custom attribute (the mappings' ``attributes:``): its labels by
    language and its place in the Factur-X XML (``note``, or ``buyer_accounting_reference``: BT-19)."""

    labels: tuple[tuple[str, str], ...] = ()
    en16931: str = "note"


@dataclass(frozen=True)
class DocumentAttribute:
    """A custom attribute a document prints: the invoice's value, labelled as declared."""

    name: str
    value: str
    labels: tuple[tuple[str, str], ...] = ()
    en16931: str = "note"

    def label(self, language: str) -> str:
        """Its label in this language, else in English, else its name in words (no longer declared)."""
        found = dict(self.labels)
        return found.get(language) or found.get("en") or self.name.replace("_", " ").capitalize()


def document_attributes(values: Mapping[str, str],
                        declarations: Mapping[str, AttributeDeclaration]) -> tuple[DocumentAttribute, ...]:
    """The attributes of a document, in the order they are declared (undeclared ones last, by name)."""
    order = {name: n for n, name in enumerate(declarations)}
    names = sorted((name for name, value in values.items() if value), key=lambda n: (order.get(n, len(order)), n))
    out = []
    for name in names:
        declared = declarations.get(name, AttributeDeclaration())
        out.append(DocumentAttribute(name, values[name], declared.labels, declared.en16931))
    return tuple(out)


@dataclass(frozen=True)
class DocumentSource:
    """Everything one document shows, as the engine has it."""

    kind: str  # INVOICE or CREDIT_NOTE
    record_id: int  # the invoice's or the credit note's id
    invoice_id: int | None  # the invoice (for a credit note: the one it corrects)
    number: str
    issued_on: date
    due_on: date | None
    currency: str
    language: str
    buyer: DocumentParty
    customer_id: str
    lines: tuple[DocumentLine, ...]
    groups: tuple[TaxGroup, ...]
    subtotal: Decimal
    discount: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal
    prepaid: Decimal  # customer credit and credit notes applied when it was issued
    amount_due: Decimal
    payment_terms_days: int
    purchase_order: str = ""
    buyer_reference: str = ""
    period_starts_on: date | None = None
    period_ends_before: date | None = None
    reason: str = ""  # a credit note's reason
    corrects_number: str | None = None  # a credit note: the invoice it corrects (BT-25) and its date
    corrects_issued_on: date | None = None
    salesforce_account_id: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    attributes: tuple[DocumentAttribute, ...] = ()  # an admin's custom attributes (cost centre, …)


@dataclass(frozen=True)
class RenderedDocument:
    """The files of one document, as the connector rendered them."""

    kind: str
    record_id: int
    number: str
    language: str
    pdf: bytes
    xml: bytes | None = None
    note: str = ""  # why there is no XML


@dataclass(frozen=True)
class StoredDocument:
    document_id: int
    kind: str
    record_id: int
    invoice_id: int | None
    number: str
    language: str
    pdf: bytes
    pdf_sha256: str
    xml: bytes | None
    xml_sha256: str | None
    note: str
    created_at: datetime


def documents_due(session: Session, limit: int = 500, *, after_invoice: int = 0,
                  after_credit_note: int = 0) -> list[tuple[str, int]]:
    """Finalized invoices and credit notes without a document, oldest first (ids after those given)."""
    return document_store.documents_due(session, limit, after_invoice=after_invoice,
                                        after_credit_note=after_credit_note)


def _party(customer) -> DocumentParty:
    a = customer.billing_address
    return DocumentParty(customer.name, a.line1, a.line2, a.postal_code, a.city, a.region, a.country,
                         customer.vat_id)


def _line(ln, position: int) -> DocumentLine:
    return DocumentLine(position, ln.kind, ln.description or ln.product_name, ln.explanation, ln.product_code,
                        ln.starts_on, ln.ends_before, ln.quantity, ln.unit_price, ln.gross,
                        ln.line_discount + ln.invoice_discount, ln.net, LineTax.of(ln.tax_percent, ln.tax_reason,
                                                                                  ln.tax_category))


def document_sources(session: Session, refs: Sequence[tuple[str, int]],
                     declarations: Mapping[str, AttributeDeclaration] | None = None) -> list[DocumentSource]:
    """What each ``(kind, id)`` document shows, in the order given (missing records left out).
    ``declarations``: how the custom attributes are labelled (a credit note shows its invoice's)."""
    declared = declarations or {}
    invoice_ids = [i for kind, i in refs if kind == INVOICE]
    note_ids = [i for kind, i in refs if kind == CREDIT_NOTE]
    notes = {n.id: n for n in (invoice_store.find_credit_note_row(session, i) for i in note_ids) if n}
    invoices = invoice_store.invoices_by_ids(session, set(invoice_ids) | {n.invoice_id for n in notes.values()
                                                                          if n.invoice_id})
    customers = catalog_store.customers_by_id(session, {i.customer_id for i in invoices.values()}
                                              | {n.customer_id for n in notes.values()})
    lines = invoice_store.lines_by_invoice(session, invoice_ids)
    note_lines = invoice_store.credit_note_lines_of(session, list(notes))
    later_credits = invoice_store.later_credit_notes_applied(session, invoice_ids)
    out = []
    for kind, record_id in refs:
        if kind == INVOICE and record_id in invoices:
            inv = invoices[record_id]
            out.append(replace(_invoice_source(inv, customers[inv.customer_id], lines.get(record_id, []),
                                               later_credits.get(record_id, ZERO)),
                               attributes=document_attributes(inv.attributes, declared)))
        elif kind == CREDIT_NOTE and record_id in notes:
            note = notes[record_id]
            inv = invoices.get(note.invoice_id) if note.invoice_id else None
            source = _credit_note_source(note, customers[note.customer_id], note_lines.get(record_id, []), inv,
                                         lines_of=lambda iid: invoice_store.lines_by_invoice(session, [iid]),
                                         corrected=_corrected_invoice(session, inv))
            out.append(replace(source, attributes=document_attributes(inv.attributes, declared))
                       if inv is not None else source)
    return out


def _invoice_source(inv, customer, rows, later_credited: Decimal) -> DocumentSource:
    own = [ln for ln in rows if ln.credit_note_id is None]
    lines = tuple(_line(ln, n) for n, ln in enumerate(own, start=1))
    groups = vat_breakdown(((ln.net, ln.tax) for ln in lines), inv.currency)
    prepaid = inv.amount_credited - later_credited
    starts = min((ln.starts_on for ln in own), default=None)
    ends = max((ln.ends_before for ln in own), default=None)
    return DocumentSource(
        kind=INVOICE, record_id=inv.id, invoice_id=inv.id, number=inv.number, issued_on=inv.issued_on,
        due_on=inv.due_on, currency=inv.currency, language=customer.document_language, buyer=_party(customer),
        customer_id=inv.customer_id, lines=lines, groups=groups, subtotal=inv.subtotal, discount=inv.discount,
        net=inv.net, tax=inv.tax, total=inv.total, prepaid=prepaid, amount_due=inv.total - prepaid,
        payment_terms_days=inv.payment_terms_days, purchase_order=inv.purchase_order or "",
        buyer_reference=inv.buyer_reference or "", period_starts_on=starts, period_ends_before=ends,
        salesforce_account_id=customer.salesforce_account_id)


def _corrected_invoice(session: Session, inv):
    """The invoice a credit note corrects (BT-25): its own invoice, unless the credit note holds the
    credits that exceeded an invoice with nothing else on it: then the invoice that billed the period
    they credit."""
    if inv is None:
        return None
    rows = invoice_store.lines_by_invoice(session, [inv.id]).get(inv.id, [])
    if any(ln.credit_note_id is None for ln in rows) or not rows:
        return inv
    credit = rows[0]
    return invoice_store.invoice_that_billed(session, credit.subscription_id, credit.item_id, credit.starts_on) or inv


def _credit_note_source(note, customer, rows, inv, *, lines_of, corrected=None) -> DocumentSource:
    """A credit note shows the lines it credits, each with the category of the line it credits; the
    lines of a split-off credit note (credits that exceeded an invoice) keep their periods."""
    invoice_rows = {ln.charge_key: ln for ln in lines_of(inv.id).get(inv.id, [])} if inv is not None else {}
    lines = []
    for n, ln in enumerate(rows, start=1):
        source = invoice_rows.get(ln.charge_key or "")
        tax = LineTax.of(ln.tax_percent, ln.tax_reason or (inv.tax_reason if inv is not None else ""),
                         ln.tax_category)
        on = note.issued_on
        lines.append(DocumentLine(
            n, source.kind if source else "adjustment", ln.description or (source.description if source else ""),
            source.explanation if source else "", source.product_code if source else "",
            source.starts_on if source else on, source.ends_before if source else on, Decimal(1), ln.net, ln.net,
            ZERO, ln.net, tax))
    groups = vat_breakdown(((ln.net, ln.tax) for ln in lines), note.currency)
    return DocumentSource(
        kind=CREDIT_NOTE, record_id=note.id, invoice_id=note.invoice_id, number=note.number,
        issued_on=note.issued_on, due_on=None, currency=note.currency, language=customer.document_language,
        buyer=_party(customer), customer_id=note.customer_id, lines=tuple(lines), groups=groups, subtotal=note.net,
        discount=ZERO, net=note.net, tax=note.tax, total=note.total, prepaid=ZERO, amount_due=ZERO,
        payment_terms_days=0, purchase_order=(inv.purchase_order or "") if inv is not None else "",
        buyer_reference=(inv.buyer_reference or "") if inv is not None else "", reason=note.reason,
        corrects_number=(corrected or inv).number if inv is not None else None,
        corrects_issued_on=(corrected or inv).issued_on if inv is not None else None,
        salesforce_account_id=customer.salesforce_account_id)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_documents(session: Session, documents: Sequence[RenderedDocument], *, now: datetime) -> list[int]:
    """Keep each document once (a document already stored for its invoice or credit note is left as it
    is) and announce each new one (``document.stored``) in the same transaction; returns the new ids."""
    rows = [{"invoice_id": d.record_id if d.kind == INVOICE else None,
             "credit_note_id": d.record_id if d.kind == CREDIT_NOTE else None, "number": d.number,
             "language": d.language, "pdf": d.pdf, "pdf_sha256": sha256(d.pdf), "xml": d.xml,
             "xml_sha256": sha256(d.xml) if d.xml is not None else None, "note": d.note[:500], "created_at": now}
            for d in documents]
    written = document_store.insert_documents(session, rows)
    add_events(session, [ob.new_event(ob.DOCUMENT_STORED, "document", row["id"], {
        "document_id": row["id"], "number": row["number"], "invoice_id": row["invoice_id"],
        "credit_note_id": row["credit_note_id"], "pdf_sha256": row["pdf_sha256"]}, now) for row in written])
    return [row["id"] for row in written]


def _stored(doc) -> StoredDocument:
    kind = INVOICE if doc.invoice_id is not None else CREDIT_NOTE
    return StoredDocument(doc.id, kind, doc.invoice_id if kind == INVOICE else doc.credit_note_id, doc.invoice_id,
                          doc.number, doc.language, bytes(doc.pdf), doc.pdf_sha256,
                          bytes(doc.xml) if doc.xml is not None else None, doc.xml_sha256, doc.note, doc.created_at)


def get_document(session: Session, *, invoice_id: int | None = None,
                 credit_note_id: int | None = None) -> StoredDocument:
    """The stored document of an invoice or credit note; ``NotFoundError`` when there is none yet."""
    doc = document_store.find_document(session, invoice_id=invoice_id, credit_note_id=credit_note_id)
    if doc is None:
        what = f"invoice {invoice_id}" if invoice_id is not None else f"credit note {credit_note_id}"
        raise NotFoundError("document", f"of {what}")
    return _stored(doc)


def documents_by_ids(session: Session, ids: Sequence[int]) -> dict[int, StoredDocument]:
    return {i: _stored(d) for i, d in document_store.documents_by_ids(session, ids).items()}


@dataclass(frozen=True)
class DocumentExport:
    """What the push attaches in Salesforce: a stored PDF, on the record of its invoice or credit note."""

    document: StoredDocument

    @property
    def kind(self) -> str:
        return self.document.kind

    @property
    def record_id(self) -> int:
        return self.document.record_id


def documents_for_export(session: Session, ids: Sequence[int]) -> dict[int, DocumentExport]:
    """The stored documents with these ids (missing ones are absent)."""
    return {document_id: DocumentExport(doc) for document_id, doc in documents_by_ids(session, ids).items()}
