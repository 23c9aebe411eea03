"""``/api/v1/invoices``: the invoice list (filters, keyset pages), one invoice in full, and
finance's actions on it: finalize a draft, void, mark uncollectible, issue a credit note; the drafts
held by the anomaly guard with their reasons, and their release (``use_cases.anomalies``).

Reads call ``billing_engine.use_cases.invoices``; actions call ``billing_engine.use_cases.billing``
(the ``billsync invoices`` commands call the same). Actions are dated today in
BILLSYNC_TIMEZONE, except a credit note and a void, which may give their date.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billing_engine.errors import InvalidInputError
from billing_engine.money import Money as EngineMoney
from billing_engine.use_cases import anomalies as anomaly_cases
from billing_engine.use_cases import billing
from billing_engine.use_cases import invoices as invoice_queries
from connector.api.framework import ApiBlueprint, business_date, reading, record_audit, respond, write_session
from connector.api.money import Money, amount_text
from connector.api.pagination import Page, PageQuery, decode_cursor, encode_cursor, next_url, page
from connector.api.problems import invalid, malformed
from connector.api.values import Absent, IsoDate

blueprint = ApiBlueprint("invoices", __name__, tag="Invoices",
                         description="Invoices with their lines, tax, payments and credit notes; finalize, void, "
                                     "write off, credit.")

#: A customer id as the engine stores it.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
STATUSES = "draft|open|paid|void|uncollectible"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
#: The dates a request may carry.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)
MAX_ID = 2**31 - 1
LISTING = "invoices"


def money(value: EngineMoney) -> Money:
    return Money.of(value.amount, value.currency)


def on_query_field(what: str) -> Any:
    return Field(None, ge=FIRST_DAY, le=LAST_DAY,
                 description=f"The date {what} (default: today in BILLSYNC_TIMEZONE).")


# ---------------------------------------------------------------- models


class InvoiceQuery(PageQuery):
    status: str | Absent = Field(None, pattern=rf"^({STATUSES})(,({STATUSES}))*$", max_length=80,
                                 description="Only these statuses, comma-separated: draft, open, paid, void, "
                                             "uncollectible.")
    customer_id: str | Absent = Field(None, pattern=CUSTOMER_ID_PATTERN, description="Only this customer's.")
    currency: str | Absent = Field(None, pattern=r"^[A-Z]{3}$", description="Only this currency (ISO 4217).")
    issued_from: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY,
                                       description="Issued on or after this day (drafts have no issue date).")
    issued_to: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="Issued on or before this day.")
    number: str | Absent = Field(None, pattern=r"^[A-Za-z0-9._/-]{1,40}$",
                                 description="Numbers starting with this: `INV-2026-0001` finds INV-2026-000100 to "
                                             "INV-2026-000199.")
    on: IsoDate | Absent = on_query_field("payment statuses are read on")


class InvoicePath(BaseModel):
    invoice_id: int = Field(ge=1, le=MAX_ID, description="The invoice's id.")


class InvoiceOnQuery(BaseModel):
    on: IsoDate | Absent = on_query_field("the payment status is read on")


class InvoiceSummaryOut(BaseModel):
    id: int
    number: str | None = Field(description="Null until the invoice is finalized.")
    customer_id: str
    customer_name: str
    status: str = Field(description="draft, open, paid, void or uncollectible.")
    payment_status: str | None = Field(description="unpaid, partially_paid, overdue, paid or credited on `on`; "
                                                    "null for drafts and void invoices.")
    currency: str
    issued_on: date | None
    due_on: date | None
    total: Money
    amount_due: Money = Field(description="What is still to pay (0 for a void invoice).")


class InvoicePageOut(Page[InvoiceSummaryOut]):
    pass


class LineOut(BaseModel):
    line: int = Field(description="The line's number on the invoice (what a credit note names).")
    kind: str = Field(description="recurring, proration_credit, proration_charge, usage, one_time, "
                                  "minimum_true_up.")
    product_code: str
    product_name: str
    description: str
    explanation: str = Field(description="How the amount was computed.")
    starts_on: date
    ends_before: date
    quantity: str = Field(pattern=DECIMAL_PATTERN)
    unit_price: Money
    gross: Money
    discount: Money
    net: Money
    tax_percent: str = Field(pattern=DECIMAL_PATTERN)
    credited: Money = Field(description="Net credited on this line by credit notes.")


class TaxOut(BaseModel):
    percent: str = Field(pattern=DECIMAL_PATTERN)
    net: Money
    tax: Money


class AppliedPaymentOut(BaseModel):
    payment_id: int
    reference: str
    method: str
    received_on: date
    amount: Money = Field(description="What the payment applied to this invoice.")


class ReopenedOut(BaseModel):
    refund_id: int
    payment_id: int
    refunded_on: date
    reason: str
    amount: Money = Field(description="What the refund put back on this invoice's balance.")


class CreditNoteLineOut(BaseModel):
    description: str
    net: Money
    tax_percent: str = Field(pattern=DECIMAL_PATTERN)
    line: int | None = Field(description="The invoice line it credits; null for an adjustment of the invoice.")


class CreditNoteOut(BaseModel):
    id: int
    number: str
    invoice_id: int | None
    issued_on: date
    reason: str
    net: Money
    tax: Money
    total: Money
    applied_to_invoice: Money = Field(description="The part that settled the invoice's balance.")
    to_credit_balance: Money = Field(description="The part that became the customer's credit.")
    lines: list[CreditNoteLineOut]


class AnomalyOut(BaseModel):
    kind: str = Field(description="currency, tax_rate, duplicate, back_billed, quantity, usage, total or price.")
    score: str = Field(pattern=DECIMAL_PATTERN, description="How far past the check's threshold (docs/intelligence.md).")
    reason: str = Field(description="What was found, in plain words.")
    released_at: datetime | None = Field(description="When finance released the invoice held for it; null if not.")
    release_note: str = Field(description="Why it was released.")


class HeldInvoiceOut(BaseModel):
    id: int
    customer_id: str
    customer_name: str
    currency: str
    bill_run_on: date | None
    total: Money
    anomalies: list[AnomalyOut]


class HeldInvoicePageOut(Page[HeldInvoiceOut]):
    pass


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=500, pattern=r"\S",
                      description="Why the invoice is right after all; kept with the reasons it was held for.")


class InvoiceOut(BaseModel):
    id: int
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
    tax_percent: str = Field(pattern=DECIMAL_PATTERN)
    tax_note: str = Field(description="Why the tax is what it is (reverse charge, exemption); often empty.")
    subtotal: Money
    discount: Money
    net: Money
    tax: Money
    total: Money
    amount_paid: Money = Field(description="Payment money applied, before refunds.")
    amount_refunded: Money = Field(description="Put back on the balance by refunds.")
    amount_credited: Money = Field(description="Customer credit and credit notes applied.")
    amount_due: Money
    created_at: datetime
    finalized_at: datetime | None
    salesforce_id: str | None = Field(description="The Invoice__c record it was pushed to.")
    attributes: dict[str, str] = Field(description="The custom attributes it carries (an admin's fields of the deal, "
                                                   "such as a cost centre), as they were when it was assembled.")
    lines: list[LineOut]
    taxes: list[TaxOut]
    payments: list[AppliedPaymentOut]
    refunds: list[ReopenedOut]
    credit_notes: list[CreditNoteOut]
    anomalies: list[AnomalyOut] = Field(description="The anomaly guard's findings: why the bill run held it (or "
                                                    "flagged it), and its release.")


class VoidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; printed on the credit note that reverses "
                                                                  "a finalized invoice.")
    on: IsoDate | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="Default: today.")


class CreditLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: int = Field(ge=1, le=MAX_ID, description="The invoice line (`lines[].line`).")
    amount: Money | None = Field(None, description="Net to credit on it; default: all that is left on the line.")


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why; printed on the credit note.")
    lines: list[CreditLineIn] | None = Field(None, min_length=1, max_length=500,
                                             description="Credit these lines; or give `amount`; neither credits "
                                                         "all that is left.")
    amount: Money | None = Field(None, description="A net amount of the invoice to credit (an adjustment).")
    issued_on: IsoDate | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="Default: today.")


# ---------------------------------------------------------------- conversions


def summary_out(item: invoice_queries.InvoiceSummary) -> InvoiceSummaryOut:
    return InvoiceSummaryOut(id=item.invoice_id, number=item.number, customer_id=item.customer_id,
                             customer_name=item.customer_name, status=item.status,
                             payment_status=item.payment_status, currency=item.currency, issued_on=item.issued_on,
                             due_on=item.due_on, total=money(item.total), amount_due=money(item.amount_due))


def credit_note_out(note: invoice_queries.CreditNoteView) -> CreditNoteOut:
    return CreditNoteOut(
        id=note.credit_note_id, number=note.number, invoice_id=note.invoice_id, issued_on=note.issued_on,
        reason=note.reason, net=money(note.net), tax=money(note.tax), total=money(note.total),
        applied_to_invoice=money(note.applied_to_invoice), to_credit_balance=money(note.to_credit_balance),
        lines=[CreditNoteLineOut(description=ln.description, net=money(ln.net), tax_percent=amount_text(ln.tax_percent),
                                 line=ln.line_position) for ln in note.lines])


def invoice_out(inv: invoice_queries.InvoiceDetail) -> InvoiceOut:
    return InvoiceOut(
        id=inv.invoice_id, number=inv.number, customer_id=inv.customer_id, customer_name=inv.customer_name,
        status=inv.status, payment_status=inv.payment_status, currency=inv.currency, bill_run_on=inv.bill_run_on,
        issued_on=inv.issued_on, due_on=inv.due_on, payment_terms_days=inv.payment_terms_days,
        tax_percent=amount_text(inv.tax_percent), tax_note=inv.tax_reason, subtotal=money(inv.subtotal),
        discount=money(inv.discount), net=money(inv.net), tax=money(inv.tax), total=money(inv.total),
        amount_paid=money(inv.amount_paid), amount_refunded=money(inv.amount_refunded),
        amount_credited=money(inv.amount_credited), amount_due=money(inv.amount_due), created_at=inv.created_at,
        finalized_at=inv.finalized_at, salesforce_id=inv.salesforce_id, attributes=dict(inv.attributes),
        lines=[LineOut(line=ln.position, kind=ln.kind, product_code=ln.product_code, product_name=ln.product_name,
                       description=ln.description, explanation=ln.explanation, starts_on=ln.starts_on,
                       ends_before=ln.ends_before, quantity=amount_text(ln.quantity), unit_price=money(ln.unit_price),
                       gross=money(ln.gross), discount=money(ln.discount), net=money(ln.net),
                       tax_percent=amount_text(ln.tax_percent), credited=money(ln.credited)) for ln in inv.lines],
        taxes=[TaxOut(percent=amount_text(t.percent), net=money(t.net), tax=money(t.tax)) for t in inv.taxes],
        payments=[AppliedPaymentOut(payment_id=p.payment_id, reference=p.reference, method=p.method,
                                    received_on=p.received_on, amount=money(p.amount)) for p in inv.payments],
        refunds=[ReopenedOut(refund_id=r.refund_id, payment_id=r.payment_id, refunded_on=r.refunded_on,
                             reason=r.reason, amount=money(r.amount)) for r in inv.refunds],
        credit_notes=[credit_note_out(n) for n in inv.credit_notes],
        anomalies=[anomaly_out(a) for a in inv.anomalies])


def anomaly_out(finding: anomaly_cases.AnomalyView) -> AnomalyOut:
    return AnomalyOut(kind=finding.kind, score=amount_text(finding.score), reason=finding.reason,
                      released_at=finding.released_at, release_note=finding.release_note)


def held_out(inv: anomaly_cases.HeldInvoice) -> HeldInvoiceOut:
    return HeldInvoiceOut(id=inv.invoice_id, customer_id=inv.customer_id, customer_name=inv.customer_name,
                          currency=inv.currency, bill_run_on=inv.bill_run_on, total=money(inv.total),
                          anomalies=[anomaly_out(a) for a in inv.anomalies])


#: Engine filter names → the query parameters that carry them.
_PARAMETERS = {"customer": "customer_id", "issued_before": "issued_to", "statuses": "status"}


# ---------------------------------------------------------------- reads


@blueprint.get("/invoices", scope="read", responses={200: InvoicePageOut})
def list_invoices(query: InvoiceQuery):
    """List invoices.

    Drafts first, then the newest issued; filtered by status, customer, currency, issue dates
    and number."""
    after = decode_cursor(query.cursor, LISTING, (str,))
    cursor = None
    if after is not None:
        try:
            cursor = invoice_queries.InvoiceCursor.parse(after[0], "cursor")
        except InvalidInputError:
            raise malformed("the cursor is not valid: it does not decode; start again without one",
                            [{"parameter": "cursor", "detail": "it does not decode"}]) from None
    filters = invoice_queries.InvoiceFilters(
        statuses=tuple(query.status.split(",")) if query.status else (), customer_id=query.customer_id,
        currency=query.currency, issued_from=query.issued_from,
        issued_before=query.issued_to + timedelta(days=1) if query.issued_to else None, number=query.number)
    try:
        with reading() as session:
            result = invoice_queries.list_invoices(session, as_of=query.on or business_date(), filters=filters,
                                                   after=cursor, limit=query.limit)
    except InvalidInputError as exc:
        raise invalid([{"parameter": _PARAMETERS.get(exc.field, exc.field), "detail": exc.reason}]) from None
    following = next_url(query, encode_cursor(LISTING, [result.next.token()])) if result.next else None
    return respond(InvoicePageOut(data=[summary_out(i) for i in result.items], next=following))


@blueprint.get("/invoices/anomalies", scope="read", responses={200: HeldInvoicePageOut})
def list_held_invoices(query: PageQuery):
    """List the drafts held for anomalies.

    The bill run's drafts the anomaly guard held, by id, each with the reasons in plain words;
    release one (`POST /invoices/{id}/release`) or void it (`POST /invoices/{id}/void`)."""
    after = decode_cursor(query.cursor, "anomalies", (int,))
    with reading() as session:
        rows = anomaly_cases.list_held_invoices(session, after=after[0] if after else None, limit=query.limit + 1)
    return respond(HeldInvoicePageOut(**page(rows, query, "anomalies", key=lambda i: [i.invoice_id], item=held_out)))


@blueprint.get("/invoices/<int:invoice_id>", scope="read", responses={200: InvoiceOut})
def get_invoice(path: InvoicePath, query: InvoiceOnQuery):
    """Get one invoice in full.

    Its lines with how each was computed, tax, the payments and refunds that moved its balance,
    and its credit notes with their lines."""
    with reading() as session:
        inv = invoice_queries.get_invoice(session, path.invoice_id, as_of=query.on or business_date())
    return respond(invoice_out(inv))


# ---------------------------------------------------------------- actions


def _audited(action: str, before: invoice_queries.InvoiceDetail, after: invoice_queries.InvoiceDetail,
             **extra: Any) -> None:
    def state(inv: invoice_queries.InvoiceDetail) -> dict[str, Any]:
        return {"status": inv.status, "number": inv.number, "total": inv.total.amount,
                "amount_due": inv.amount_due.amount, "currency": inv.currency}

    record_audit(action, "invoice", before.invoice_id, before=state(before), after={**state(after), **extra})


@blueprint.post("/invoices/<int:invoice_id>/finalize", scope="write", responses={200: InvoiceOut})
def finalize_invoice(path: InvoicePath):
    """Finalize a draft.

    A draft held for review: customer credit applied, numbered, issued today."""
    session, today = write_session(), business_date()
    before = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    billing.finalize_invoice(session, path.invoice_id, issued_on=today)
    after = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    _audited("invoice.finalize", before, after)
    return respond(invoice_out(after))


@blueprint.post("/invoices/<int:invoice_id>/release", scope="write", responses={200: InvoiceOut})
def release_invoice(path: InvoicePath, body: ReleaseIn):
    """Release a draft held for anomalies.

    The note is kept with the reasons it was held for; the draft is finalized today (customer
    credit applied, numbered) and sent on to Salesforce. A 409 for an invoice not held."""
    session, today = write_session(), business_date()
    before = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    anomaly_cases.release_invoice(session, path.invoice_id, note=body.note, on=today)
    after = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    _audited("invoice.release", before, after, note=body.note.strip())
    return respond(invoice_out(after))


@blueprint.post("/invoices/<int:invoice_id>/void", scope="write", responses={200: InvoiceOut})
def void_invoice(path: InvoicePath, body: VoidIn):
    """Void an invoice.

    Only without payments on it. A finalized invoice is reversed by a credit note for its total
    (credit applied to it goes back to the customer); a draft is simply dropped."""
    session, today = write_session(), business_date()
    before = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    note_id = billing.void_invoice(session, path.invoice_id, on=body.on or today, reason=body.reason)
    after = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    _audited("invoice.void", before, after, reason=body.reason, credit_note_id=note_id)
    return respond(invoice_out(after))


@blueprint.post("/invoices/<int:invoice_id>/mark-uncollectible", scope="write", responses={200: InvoiceOut})
def mark_invoice_uncollectible(path: InvoicePath):
    """Mark an invoice uncollectible.

    An open invoice written off today; it can still be paid later."""
    session, today = write_session(), business_date()
    before = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    billing.mark_uncollectible(session, path.invoice_id, on=today)
    after = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    _audited("invoice.mark_uncollectible", before, after)
    return respond(invoice_out(after))


@blueprint.post("/invoices/<int:invoice_id>/credit-notes", scope="write", responses={201: CreditNoteOut})
def create_credit_note(path: InvoicePath, body: CreditNoteIn):
    """Issue a credit note on an invoice.

    On given lines (whole or part), for an amount, or for all that is left of a finalized invoice.
    Amounts are nets before tax; tax is added at the invoice's rate. The credit settles the
    invoice's balance first, the rest becomes the customer's credit."""
    currencies = [(f"/lines/{n}/amount/currency", ln.amount.currency)
                  for n, ln in enumerate(body.lines or ()) if ln.amount is not None]
    if body.amount is not None:
        currencies.append(("/amount/currency", body.amount.currency))
    if body.lines and body.amount is not None:
        raise invalid([{"pointer": "/amount", "detail": "give lines or an amount, not both"}])
    odd = [pointer for pointer, currency in currencies if currency != currencies[0][1]]
    if odd:
        raise invalid([{"pointer": pointer, "detail": "every amount must be in the same currency"} for pointer in odd])
    session, today = write_session(), business_date()
    before = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    note_id = billing.credit_invoice(
        session, path.invoice_id, reason=body.reason, on=body.issued_on or today,
        lines=[(ln.line, ln.amount.decimal() if ln.amount else None) for ln in body.lines] if body.lines else None,
        amount=body.amount.decimal() if body.amount else None,
        currency=currencies[0][1] if currencies else None)
    note = invoice_queries.get_credit_note(session, note_id)
    after = invoice_queries.get_invoice(session, path.invoice_id, as_of=today)
    _audited("invoice.credit", before, after, credit_note_id=note_id, credit_note=note.number,
             credited_total=note.total.amount, reason=body.reason)
    return respond(credit_note_out(note), 201, headers={"Location": f"/api/v1/invoices/{path.invoice_id}"})
