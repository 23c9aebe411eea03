"""``/api/v1/payments``: record a payment (amounts per invoice, invoices in order, or the oldest
open first; what is left becomes the customer's credit), read one, refund it.

Thin calls of ``billing_engine.use_cases.payments`` (``billsync payments`` calls the same).
A payment is recorded once per (``source``, ``reference``): the same pair sent again answers
200 with the first payment and changes nothing. Without a ``reference`` each request is a new
payment (send an ``Idempotency-Key`` to make a retry safe).
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_engine.payments import UNREFERENCED_PREFIX
from billing_engine.use_cases import payments
from connector.api.framework import ApiBlueprint, business_date, reading, record_audit, respond, write_session
from connector.api.invoices import CUSTOMER_ID_PATTERN, FIRST_DAY, LAST_DAY, MAX_ID, money
from connector.api.money import Money
from connector.api.problems import invalid
from connector.api.values import IsoDate

blueprint = ApiBlueprint("payments", __name__, tag="Payments", description="Money received and refunded.")

#: Where a payment comes from when the request does not say (the CLI's default too).
MANUAL_SOURCE = "manual"
TEXT_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"


class AllocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_id: int = Field(ge=1, le=MAX_ID)
    amount: Money = Field(description="What to apply to that invoice, in the payment's currency.")


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN)
    amount: Money = Field(description="The amount received.")
    received_on: IsoDate = Field(ge=FIRST_DAY, le=LAST_DAY)
    reference: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN,
                                  description="The bank or processor reference; a payment is recorded once per "
                                              "source and reference. Without it, every request is a new payment.")
    source: str = Field(MANUAL_SOURCE, max_length=80, pattern=TEXT_PATTERN,
                        description="Where the reference comes from (a bank, a processor).")
    method: str = Field("bank_transfer", max_length=40, pattern=TEXT_PATTERN, description="How it was paid.")
    allocations: list[AllocationIn] | None = Field(
        None, min_length=1, max_length=500,
        description="Apply these amounts to these invoices; what is left becomes credit, other invoices get nothing.")
    invoice_ids: list[int] | None = Field(
        None, min_length=1, max_length=500,
        description="Pay these invoices in this order; what is left becomes credit. Without `allocations` or "
                    "`invoice_ids`: the oldest open invoices in the payment's currency first.")


class PaymentPath(BaseModel):
    payment_id: int = Field(ge=1, le=MAX_ID, description="The payment's id.")


class AllocationOut(BaseModel):
    invoice_id: int
    number: str | None
    amount: Money


class RefundOut(BaseModel):
    id: int
    payment_id: int
    refunded_on: date
    reason: str
    amount: Money
    from_credit: Money = Field(description="Taken back from the customer's credit.")
    reopened: list[AllocationOut] = Field(description="Put back on the balance of the invoices the payment paid.")


class PaymentOut(BaseModel):
    id: int
    customer_id: str
    amount: Money
    received_on: date
    method: str
    source: str
    reference: str = Field(description="Empty when it was recorded without one.")
    allocations: list[AllocationOut] = Field(description="What it paid, invoice by invoice.")
    unapplied: Money = Field(description="What became the customer's credit.")
    refunds: list[RefundOut]
    refunded: Money
    refundable: Money = Field(description="What a refund may still take.")
    created_at: datetime
    salesforce_id: str | None = Field(description="The Payment__c record it was pushed to.")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Money = Field(description="The amount paid back, in the payment's currency.")
    reason: str = Field(min_length=1, max_length=500)
    refunded_on: IsoDate | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="Default: today.")


def _refund_out(payment_id: int, refund: payments.RefundView) -> RefundOut:
    return RefundOut(id=refund.refund_id, payment_id=payment_id, refunded_on=refund.refunded_on, reason=refund.reason,
                     amount=money(refund.amount), from_credit=money(refund.from_credit),
                     reopened=[AllocationOut(invoice_id=a.invoice_id, number=a.number, amount=money(a.amount))
                               for a in refund.reopened])


def payment_out(p: payments.PaymentDetail) -> PaymentOut:
    return PaymentOut(
        id=p.payment_id, customer_id=p.customer_id, amount=money(p.amount), received_on=p.received_on,
        method=p.method, source=p.source, reference=p.reference,
        allocations=[AllocationOut(invoice_id=a.invoice_id, number=a.number, amount=money(a.amount))
                     for a in p.allocations],
        unapplied=money(p.unapplied), refunds=[_refund_out(p.payment_id, r) for r in p.refunds],
        refunded=money(p.refunded), refundable=money(p.refundable), created_at=p.created_at,
        salesforce_id=p.salesforce_id)


@blueprint.post("/payments", scope="write", responses={200: PaymentOut, 201: PaymentOut})
def record_payment(body: PaymentIn):
    """Record a payment.

    201 when recorded; 200 with the first payment when its source and reference were recorded
    before (nothing changes)."""
    currency = body.amount.currency
    problems = [{"pointer": f"/allocations/{n}/amount/currency", "detail": "must be the payment's currency"}
                for n, a in enumerate(body.allocations or ()) if a.amount.currency != currency]
    if body.allocations and body.invoice_ids:
        problems.append({"pointer": "/invoice_ids", "detail": "give allocations or invoice_ids, not both"})
    if body.reference and body.reference.startswith(UNREFERENCED_PREFIX):
        problems.append({"pointer": "/reference", "detail": f"must not start with {UNREFERENCED_PREFIX!r}"})
    if problems:
        raise invalid(problems)
    session = write_session()
    result = payments.record_payment(
        session, customer_id=body.customer_id, amount=body.amount.decimal(), currency=currency,
        received_on=body.received_on, method=body.method, source=body.source,
        external_reference=body.reference, invoice_ids=body.invoice_ids,
        allocations=[(a.invoice_id, a.amount.decimal()) for a in body.allocations] if body.allocations else None)
    payment = payments.get_payment(session, result.payment_id)
    record_audit("payment.record", "payment", payment.payment_id, before=None, after={
        "created": result.created, "customer_id": payment.customer_id, "amount": payment.amount.amount,
        "currency": currency, "received_on": payment.received_on.isoformat(), "reference": payment.reference,
        "allocations": [{"invoice_id": a.invoice_id, "amount": a.amount.amount} for a in payment.allocations],
        "unapplied": payment.unapplied.amount})
    return respond(payment_out(payment), 201 if result.created else 200,
                   headers={"Location": f"/api/v1/payments/{payment.payment_id}"})


@blueprint.get("/payments/<int:payment_id>", scope="read", responses={200: PaymentOut})
def get_payment(path: PaymentPath):
    """Get one payment.

    Where it went (invoices, credit) and its refunds."""
    with reading() as session:
        payment = payments.get_payment(session, path.payment_id)
    return respond(payment_out(payment))


@blueprint.post("/payments/<int:payment_id>/refunds", scope="write", responses={201: RefundOut})
def refund_payment(path: PaymentPath, body: RefundIn):
    """Refund a payment, in whole or in part.

    First out of the credit it left, then reopening the invoices it paid, newest first. It
    never exceeds what is left of the payment."""
    session = write_session()
    before = payments.get_payment(session, path.payment_id)
    if body.amount.currency != before.currency:
        raise invalid([{"pointer": "/amount/currency", "detail": "must be the payment's currency"}])
    done = payments.refund_payment(session, path.payment_id, amount=body.amount.decimal(),
                                   refunded_on=body.refunded_on or business_date(), reason=body.reason)
    after = payments.get_payment(session, path.payment_id)
    [refund] = [r for r in after.refunds if r.refund_id == done.refund_id]
    record_audit("payment.refund", "payment", path.payment_id,
                 before={"refunded": before.refunded.amount, "refundable": before.refundable.amount},
                 after={"refund_id": refund.refund_id, "amount": refund.amount.amount, "reason": body.reason,
                        "refunded": after.refunded.amount, "refundable": after.refundable.amount})
    return respond(_refund_out(path.payment_id, refund), 201,
                   headers={"Location": f"/api/v1/payments/{path.payment_id}"})
