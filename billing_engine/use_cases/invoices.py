"""Invoice queries: the invoice list (filters, keyset pages), the overdue invoices and one invoice
in full.

Reads only; the changes (finalize, void, write off, credit) are in ``use_cases.billing``.
Every amount is a ``Money`` (an exact ``Decimal`` with its currency). The payment status of
an invoice is derived as of a date the caller gives (docs/billing-rules.md §16 Payments and
refunds), so the same call answers the same on any day it is replayed.

The list's order is stable and total: invoices not issued yet (drafts) first, newest first;
then issued invoices by issue date, newest first, and by id within a day. A page ends with the
key of its last invoice (``InvoiceCursor``); the next page starts after it, so a walk through
every page sees each invoice exactly once, even while new ones are added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.invoicing import InvoiceStatus
from billing_engine.money import Money, check_currency, money_of
from billing_engine.payments import invoice_balance, payment_status, shown_reference
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as collection_store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import payments as payment_store
from billing_engine.storage.database import Session
from billing_engine.use_cases.anomalies import AnomalyView, invoice_anomalies

ZERO = Decimal(0)
#: Most invoices one page may hold.
MAX_PAGE_SIZE = 1000
#: Largest invoice id (an INTEGER column): a larger one is a bad value, not a query.
MAX_INVOICE_ID = 2**31 - 1
_STATUSES = tuple(s.value for s in InvoiceStatus)
_CURSOR = re.compile(r"(\d{4}-\d{2}-\d{2}|draft)\.(\d{1,10})")


@dataclass(frozen=True)
class InvoiceCursor:
    """Where a page of the invoice list ended: the last invoice's issue date (None: not issued) and id."""

    issued_on: date | None
    invoice_id: int

    def token(self) -> str:
        """The cursor as text (``2026-01-31.1234``, ``draft.1240``), for a URL or a command line."""
        return f"{self.issued_on.isoformat() if self.issued_on else 'draft'}.{self.invoice_id}"

    @classmethod
    def parse(cls, token: str, field: str = "after") -> InvoiceCursor:
        """The cursor a ``token()`` printed; anything else is an ``InvalidInputError`` on ``field``."""
        match = _CURSOR.fullmatch(token.strip()) if isinstance(token, str) else None
        if not match:
            raise InvalidInputError(field, f"{token!r} is not a cursor of the invoice list")
        invoice_id = int(match.group(2))
        if not 1 <= invoice_id <= MAX_INVOICE_ID:
            raise InvalidInputError(field, f"{token!r} is not a cursor of the invoice list")
        try:
            issued_on = None if match.group(1) == "draft" else date.fromisoformat(match.group(1))
        except ValueError:
            raise InvalidInputError(field, f"{token!r} is not a cursor of the invoice list") from None
        return cls(issued_on, invoice_id)


@dataclass(frozen=True)
class InvoiceFilters:
    """What the list keeps: every filter given must match (``issued_before`` is exclusive)."""

    statuses: tuple[str, ...] = ()
    customer_id: str | None = None
    currency: str | None = None
    issued_from: date | None = None
    issued_before: date | None = None
    number: str | None = None  # the beginning of the number: "INV-2026-0001" finds INV-2026-000100 to 000199

    def checked(self) -> InvoiceFilters:
        """The filters, or the first bad one as an ``InvalidInputError`` naming it."""
        for status in self.statuses:
            if status not in _STATUSES:
                raise InvalidInputError("status", f"{status!r} is not an invoice status ({', '.join(_STATUSES)})")
        if self.currency is not None:
            check_currency(self.currency)
        if self.issued_from and self.issued_before and self.issued_before <= self.issued_from:
            raise InvalidInputError("issued_before", f"{self.issued_before} is not after issued_from "
                                                     f"{self.issued_from}")
        if self.number is not None and not 1 <= len(self.number) <= 40:
            raise InvalidInputError("number", "must be 1 to 40 characters")
        if self.customer_id is not None and not 1 <= len(self.customer_id) <= 64:
            raise InvalidInputError("customer", "must be 1 to 64 characters")
        return self


@dataclass(frozen=True)
class InvoiceSummary:
    """One row of the invoice list."""

    invoice_id: int
    number: str | None
    customer_id: str
    customer_name: str
    status: str
    payment_status: str | None  # unpaid, partially_paid, overdue, paid, credited; None for drafts and voids
    currency: str
    issued_on: date | None
    due_on: date | None
    total: Money
    amount_due: Money

    @property
    def cursor(self) -> InvoiceCursor:
        return InvoiceCursor(self.issued_on, self.invoice_id)


@dataclass(frozen=True)
class InvoicePage:
    items: tuple[InvoiceSummary, ...]
    next: InvoiceCursor | None  # where the next page starts; None on the last page


def list_invoices(session: Session, *, as_of: date, filters: InvoiceFilters = InvoiceFilters(),
                  after: InvoiceCursor | None = None, limit: int = 100) -> InvoicePage:
    """A page of the invoices matching ``filters``, after ``after`` (the previous page's ``next``)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE_SIZE}")
    filters = filters.checked()
    rows = invoice_store.invoice_page(
        session, limit=limit + 1, after=(after.issued_on, after.invoice_id) if after else None,
        statuses=filters.statuses, customer_id=filters.customer_id, currency=filters.currency,
        issued_from=filters.issued_from, issued_before=filters.issued_before, number_prefix=filters.number)
    more = len(rows) > limit
    rows = rows[:limit]
    names = catalog_store.customer_names(session, {inv.customer_id for inv in rows})
    items = tuple(InvoiceSummary(
        inv.id, inv.number, inv.customer_id, names.get(inv.customer_id, ""), inv.status, _payment_status(inv, as_of),
        inv.currency, inv.issued_on, inv.due_on, money_of(inv.total, inv.currency),
        money_of(_amount_due(inv), inv.currency)) for inv in rows)
    return InvoicePage(items, items[-1].cursor if more else None)


@dataclass(frozen=True)
class OverdueInvoices:
    items: tuple[InvoiceSummary, ...]  # the oldest due first, at most the limit asked
    count: int  # every overdue invoice matching, beyond the limit too


def overdue_invoices(session: Session, *, as_of: date, customer_id: str | None = None,
                     limit: int = 100) -> OverdueInvoices:
    """The open invoices with a balance still due after their due date, as of ``as_of`` (their
    payment status is ``overdue`` in the invoice list), by due date and id, each as in the list."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE_SIZE}")
    if customer_id is not None and not 1 <= len(customer_id) <= 64:
        raise InvalidInputError("customer", "must be 1 to 64 characters")
    rows = [inv for inv in collection_store.open_invoices_due_before(session, as_of)
            if (customer_id is None or inv.customer_id == customer_id) and _payment_status(inv, as_of) == "overdue"]
    names = catalog_store.customer_names(session, {inv.customer_id for inv in rows[:limit]})
    return OverdueInvoices(tuple(InvoiceSummary(
        inv.id, inv.number, inv.customer_id, names.get(inv.customer_id, ""), inv.status, "overdue", inv.currency,
        inv.issued_on, inv.due_on, money_of(inv.total, inv.currency), money_of(_amount_due(inv), inv.currency))
        for inv in rows[:limit]), len(rows))


def utc(moment: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite gives them back without their zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _payment_status(inv: Any, as_of: date) -> str | None:
    return payment_status(status=inv.status, total=inv.total, paid=inv.amount_paid, credited=inv.amount_credited,
                          refunded=inv.amount_refunded, due_on=inv.due_on, as_of=as_of)


def _amount_due(inv: Any) -> Decimal:
    """What is still to pay: the balance (a draft's total before any credit), nothing on a void invoice.
    ``inv``: an invoice or a row of ``invoice_store.LIST_COLUMNS``."""
    if inv.status == "void":
        return ZERO
    return max(invoice_balance(inv.total, inv.amount_paid, inv.amount_credited, inv.amount_refunded), ZERO)


# ================================================================ one invoice


@dataclass(frozen=True)
class InvoiceLineView:
    position: int
    kind: str
    product_code: str
    product_name: str
    description: str
    explanation: str  # how the amount was computed
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Money
    gross: Money
    discount: Money  # the line's own discount and its share of the invoice's
    net: Money
    tax_percent: Decimal
    credited: Money  # net credited on this line by credit notes


@dataclass(frozen=True)
class TaxView:
    percent: Decimal
    net: Money
    tax: Money


@dataclass(frozen=True)
class AppliedPayment:
    payment_id: int
    reference: str
    method: str
    received_on: date
    amount: Money  # what this payment applied to the invoice


@dataclass(frozen=True)
class ReopenedByRefund:
    refund_id: int
    payment_id: int
    refunded_on: date
    reason: str
    amount: Money  # what this refund put back on the invoice's balance


@dataclass(frozen=True)
class CreditNoteLineView:
    description: str
    net: Money
    tax_percent: Decimal
    line_position: int | None  # the invoice line it credits; None for an adjustment of the invoice


@dataclass(frozen=True)
class CreditNoteView:
    credit_note_id: int
    number: str
    invoice_id: int | None
    issued_on: date
    reason: str
    net: Money
    tax: Money
    total: Money
    applied_to_invoice: Money
    to_credit_balance: Money
    lines: tuple[CreditNoteLineView, ...]


@dataclass(frozen=True)
class InvoiceDetail:
    invoice_id: int
    number: str | None
    customer_id: str
    customer_name: str
    status: str
    payment_status: str | None
    currency: str
    bill_run_on: date | None
    issued_on: date | None
    due_on: date | None
    payment_terms_days: int
    tax_percent: Decimal
    tax_reason: str
    subtotal: Money
    discount: Money
    net: Money
    tax: Money
    total: Money
    amount_paid: Money  # payment money applied, before refunds
    amount_refunded: Money  # put back on the balance by refunds
    amount_credited: Money  # customer credit and credit notes applied
    amount_due: Money
    created_at: datetime
    finalized_at: datetime | None
    salesforce_id: str | None
    lines: tuple[InvoiceLineView, ...]
    taxes: tuple[TaxView, ...]
    payments: tuple[AppliedPayment, ...]
    refunds: tuple[ReopenedByRefund, ...]
    credit_notes: tuple[CreditNoteView, ...]
    attributes: tuple[tuple[str, str], ...] = ()  # the custom attributes it carries (cost centre, …)
    # The anomaly guard's findings (docs/intelligence.md): why it was held, and its release.
    anomalies: tuple[AnomalyView, ...] = ()


def find_invoice_id(session: Session, number_or_id: str) -> int:
    """The id of the invoice with this number (``INV-2026-000001``) or id (``42``); raises ``NotFoundError``."""
    key = number_or_id.strip() if isinstance(number_or_id, str) else ""
    if key.isdigit() and len(key) <= 10 and 1 <= int(key) <= MAX_INVOICE_ID:
        if invoice_store.find_invoice(session, int(key)) is not None:
            return int(key)
    elif key and len(key) <= 40:
        found = invoice_store.find_invoice_by_number(session, key)
        if found is not None and found.id is not None:
            return found.id
    raise NotFoundError("invoice", number_or_id)


def get_invoice(session: Session, invoice_id: int, *, as_of: date) -> InvoiceDetail:
    """An invoice with its lines (and how each was computed), tax breakdown, the payments and
    refunds that moved its balance and its credit notes with their lines; raises ``NotFoundError``."""
    inv = invoice_store.find_invoice(session, invoice_id) if 1 <= invoice_id <= MAX_INVOICE_ID else None
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    cur = inv.currency

    def money(amount: Decimal) -> Money:
        return money_of(amount, cur)

    customer = catalog_store.find_customer(session, inv.customer_id)
    all_lines = invoice_store.invoice_lines(session, inv.id)
    credited = invoice_store.credited_by_charge_key(session, inv.id)
    position_of = {ln.charge_key: ln.position for ln in all_lines}
    lines = tuple(InvoiceLineView(
        ln.position, ln.kind, ln.product_code, ln.product_name, ln.description, ln.explanation, ln.starts_on,
        ln.ends_before, ln.quantity, money(ln.unit_price), money(ln.gross), money(ln.line_discount + ln.invoice_discount),
        money(ln.net), ln.tax_percent, money(credited.get(ln.charge_key, ZERO)))
        for ln in all_lines if ln.credit_note_id is None)
    taxes = tuple(TaxView(t.tax_percent, money(t.net), money(t.tax)) for t in invoice_store.invoice_taxes(session, inv.id))
    payments = tuple(AppliedPayment(p.id, shown_reference(p.external_reference), p.method, p.received_on, money(a.amount))
                     for a, p in payment_store.payments_to_invoice(session, inv.id))
    refunds = tuple(ReopenedByRefund(r.id, r.payment_id, r.refunded_on, r.reason, money(a.amount))
                    for a, r in payment_store.refunds_to_invoice(session, inv.id))
    notes = invoice_store.credit_notes_of_invoice(session, inv.id)
    note_lines = invoice_store.credit_note_lines(session, [n.id for n in notes])
    credit_notes = tuple(_credit_note_view(n, note_lines.get(n.id, []), position_of) for n in notes)
    return InvoiceDetail(
        inv.id, inv.number, inv.customer_id, customer.name if customer else "", inv.status,
        _payment_status(inv, as_of), cur, inv.bill_run_on, inv.issued_on, inv.due_on, inv.payment_terms_days,
        inv.tax_percent, inv.tax_reason, money(inv.subtotal), money(inv.discount), money(inv.net), money(inv.tax),
        money(inv.total), money(inv.amount_paid), money(inv.amount_refunded), money(inv.amount_credited),
        money(_amount_due(inv)), utc(inv.created_at),
        utc(inv.finalized_at) if inv.finalized_at else None, inv.salesforce_id, lines, taxes, payments, refunds,
        credit_notes, tuple(inv.attributes.items()), tuple(invoice_anomalies(session, inv.id)))


def get_credit_note(session: Session, credit_note_id: int) -> CreditNoteView:
    """A credit note with its lines; raises ``NotFoundError``."""
    note = invoice_store.find_credit_note(session, credit_note_id) if 1 <= credit_note_id <= MAX_INVOICE_ID else None
    if note is None:
        raise NotFoundError("credit note", credit_note_id)
    positions: dict[str, int] = {}
    if note.invoice_id is not None:
        positions = {ln.charge_key: ln.position for ln in invoice_store.invoice_lines(session, note.invoice_id)}
    return _credit_note_view(note, invoice_store.credit_note_lines(session, [note.id]).get(note.id, []), positions)


def _credit_note_view(note: invoice_store.CreditNote, lines: list[invoice_store.CreditNoteLine],
                      position_of: dict[str, int]) -> CreditNoteView:
    cur = note.currency
    return CreditNoteView(
        note.id, note.number, note.invoice_id, note.issued_on, note.reason, money_of(note.net, cur), money_of(note.tax, cur),
        money_of(note.total, cur), money_of(note.applied_to_invoice, cur), money_of(note.to_credit_balance, cur),
        tuple(CreditNoteLineView(ln.description, money_of(ln.net, cur), ln.tax_percent,
                                 position_of.get(ln.charge_key) if ln.charge_key else None) for ln in lines))
