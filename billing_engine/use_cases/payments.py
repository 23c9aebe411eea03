"""Payment use cases: record a payment (allocated to open invoices, the rest to credit), refund
it, and read a customer's balances and an invoice's payment status.

A payment is recorded once per ``(source, external reference)``: a resent one returns the
first result and changes nothing; one recorded without a reference is a new payment each time.
Credit moves through the customer's account row, locked
first, so concurrent payments and refunds never lose an update.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.money import Money, check_currency, money_of
from billing_engine.payments import (
    UNREFERENCED_PREFIX,
    OpenItem,
    aging,
    allocate_amounts,
    allocate_payment,
    check_amount,
    check_payment,
    payment_status,
    plan_refund,
    shown_reference,
)
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import database
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import payments as payment_store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events
from billing_engine.use_cases.billing import get_invoice_for_update, invoice_status_event
from billing_engine.use_cases.invoices import utc

ZERO = Decimal(0)


@dataclass(frozen=True)
class PaymentResult:
    payment_id: int
    created: bool  # False: the same (source, reference) was recorded before; nothing changed
    applied: tuple[tuple[int, Decimal], ...]
    unapplied: Decimal


def record_payment(session: Session, *, customer_id: str, amount: object, currency: str, received_on: date,
                   method: str, source: str, external_reference: str | None,
                   invoice_ids: Sequence[int] | None = None,
                   allocations: Sequence[tuple[int, object]] | None = None,
                   customer_currencies: Iterable[str] | None = None, now: datetime | None = None) -> PaymentResult:
    """Record a payment and allocate it: ``allocations`` (invoice id, amount) exactly, else the
    invoices named in ``invoice_ids`` in order, else the oldest open first; the rest becomes
    customer credit (docs/billing-rules.md §16 Payments and refunds).

    A repeat of ``(source, external_reference)`` returns the first result and
    changes nothing; ``external_reference=None`` (no reference) records a new payment every
    time. Bad input raises before anything is written.
    """
    now = ob.changed_at(now, received_on)
    if external_reference is None:
        external_reference = f"{UNREFERENCED_PREFIX}{uuid.uuid4().hex}"
    elif isinstance(external_reference, str) and external_reference.startswith(UNREFERENCED_PREFIX):
        raise InvalidInputError("external_reference", f"must not start with {UNREFERENCED_PREFIX!r}")
    for name, text in (("method", method), ("source", source), ("external_reference", external_reference)):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(name, "is required")
    if invoice_ids and allocations:
        raise InvalidInputError("allocations", "give amounts per invoice or invoices to pay in order, not both")
    existing = payment_store.find_payment(session, source, external_reference)
    if existing is not None:
        return _payment_result(session, existing)
    check_currency(currency)
    if catalog_store.find_customer(session, customer_id) is None:
        raise InvalidInputError("customer_id", f"there is no customer {customer_id!r}")
    if customer_currencies is None:
        customer_currencies = payment_store.customer_currencies(session, customer_id)
    value = check_payment(amount, currency, customer_currencies)
    invoices = invoice_store.payable_invoices(session, customer_id, None)
    named_ids = [*(invoice_ids or ()), *(invoice_id for invoice_id, _ in allocations or ())]
    if named_ids:
        named = invoice_store.invoices_of(session, customer_id, named_ids)
        invoices = list({inv.id: inv for inv in [*invoices, *named]}.values())
    items = [OpenItem(inv.id, inv.currency, inv.status, inv.issued_on or date.min, inv.balance, inv.number or "")
             for inv in invoices]
    if allocations:
        allocation = allocate_amounts(value, currency, items, allocations)
    else:
        allocation = allocate_payment(value, currency, items, named=list(invoice_ids) if invoice_ids else None)
    try:
        with session.begin_nested():
            payment_id = database.insert_returning_id(session, payment_store.Payment, {
                "customer_id": customer_id, "currency": currency, "amount": value,
                "unapplied": allocation.unapplied, "received_on": received_on, "method": method, "source": source,
                "external_reference": external_reference, "created_at": now})
    except database.IntegrityError:
        existing = payment_store.find_payment(session, source, external_reference)
        if existing is None:  # pragma: no cover
            raise
        return _payment_result(session, existing)
    database.bulk_insert(session, payment_store.PaymentAllocation, [{"payment_id": payment_id, "invoice_id": i, "amount": a}
                                                    for i, a in allocation.applied])
    by_id = {inv.id: inv for inv in invoices}
    events = [ob.new_event(ob.PAYMENT_RECORDED, "payment", payment_id, {
        "payment_id": payment_id, "customer_id": customer_id, "currency": currency, "amount": value,
        "received_on": received_on, "method": method, "source": source, "external_reference": external_reference,
        "allocations": [{"invoice_id": i, "number": by_id[i].number, "amount": a} for i, a in allocation.applied],
        "unapplied": allocation.unapplied}, now)]
    for invoice_id, applied in allocation.applied:
        inv = by_id[invoice_id]
        old = inv.status
        inv.amount_paid += applied
        if inv.balance == 0:
            inv.status, inv.status_changed_at = "paid", now
            events.append(invoice_status_event(inv, old, "paid", now))
        session.add(inv)
    if allocation.unapplied:
        payment_store.lock_account(session, customer_id, currency)
        payment_store.change_credit(session, customer_id, currency, allocation.unapplied, "overpayment", now,
                         payment_id=payment_id)
    events.append(ob.customer_summary_event(customer_id, now))
    session.flush()
    add_events(session, events)
    return PaymentResult(payment_id, True, allocation.applied, allocation.unapplied)


def _payment_result(session: Session, payment: payment_store.Payment) -> PaymentResult:
    allocations = payment_store.payment_allocations(session, payment.id)
    return PaymentResult(payment.id, False, tuple((a.invoice_id, a.amount) for a in allocations), payment.unapplied)


@dataclass(frozen=True)
class RefundResult:
    refund_id: int
    from_credit: Decimal
    reopened: tuple[tuple[int, Decimal], ...]


def refund_payment(session: Session, payment_id: int, *, amount: object, refunded_on: date, reason: str = "",
                   now: datetime | None = None) -> RefundResult:
    """Refund (part of) a payment: first out of its unapplied credit, then reopening what it paid."""
    now = ob.changed_at(now, refunded_on)
    payment = payment_store.get_payment_for_update(session, payment_id)
    if payment is None:
        raise NotFoundError("payment", payment_id)
    value = check_amount(amount, payment.currency)
    refunds = payment_store.refunds_of(session, payment.id)
    already = sum((r.amount for r in refunds), ZERO)
    reopened_before: dict[int, Decimal] = defaultdict(Decimal)
    for ra in payment_store.refund_allocations_of(session, [r.id for r in refunds]):
        reopened_before[ra.invoice_id] += ra.amount
    allocations = payment_store.payment_allocations(session, payment.id)
    net_allocs = [(a.invoice_id, a.amount - reopened_before.pop(a.invoice_id, ZERO)) for a in reversed(allocations)]
    balance = payment_store.lock_account(session, payment.customer_id, payment.currency)
    unapplied_left = payment.unapplied - sum((r.from_credit for r in refunds), ZERO)
    plan = plan_refund(value, payment_amount=payment.amount, already_refunded=already,
                       unapplied_available=min(unapplied_left, balance),
                       allocations_newest_first=[(i, a) for i, a in net_allocs if a > 0])
    refund_id = database.insert_returning_id(session, payment_store.Refund, {
        "payment_id": payment.id, "customer_id": payment.customer_id, "currency": payment.currency,
        "amount": value, "from_credit": plan.from_credit, "refunded_on": refunded_on, "reason": reason,
        "created_at": now})
    database.bulk_insert(session, payment_store.RefundAllocation, [{"refund_id": refund_id, "invoice_id": i, "amount": a}
                                                   for i, a in plan.reopened])
    events = [ob.new_event(ob.PAYMENT_REFUNDED, "payment", payment.id, {
        "refund_id": refund_id, "payment_id": payment.id, "customer_id": payment.customer_id,
        "currency": payment.currency, "amount": value, "refunded_on": refunded_on, "reason": reason}, now)]
    if plan.from_credit:
        payment_store.change_credit(session, payment.customer_id, payment.currency, -plan.from_credit, "refund", now,
                         payment_id=payment.id, refund_id=refund_id)
    for invoice_id, reopened in plan.reopened:
        inv = get_invoice_for_update(session, invoice_id)
        old = inv.status
        inv.amount_refunded += reopened
        if old == "paid" and inv.balance > 0:
            inv.status, inv.status_changed_at = "open", now
            events.append(invoice_status_event(inv, old, "open", now))
        session.add(inv)
    events.append(ob.customer_summary_event(payment.customer_id, now))
    session.flush()
    add_events(session, events)
    return RefundResult(refund_id, plan.from_credit, plan.reopened)


@dataclass(frozen=True)
class CustomerSummary:
    customer_id: str
    currency: str
    open_balance: Decimal  # Σ balances of open / uncollectible invoices
    credit_balance: Decimal
    aging: dict[str, Decimal]
    overdue_invoices: int


def invoice_payment_status(session: Session, invoice_id: int, as_of: date) -> str | None:
    inv = invoice_store.find_invoice(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    return payment_status(status=inv.status, total=inv.total, paid=inv.amount_paid, credited=inv.amount_credited,
                          refunded=inv.amount_refunded, due_on=inv.due_on, as_of=as_of)


def customer_summary(session: Session, customer_id: str, as_of: date) -> list[CustomerSummary]:
    """Balance, credit and aging per currency (what ``customer.summary_changed`` pushes)."""
    invoices = invoice_store.unlocked_payable_invoices(session, customer_id)
    credits = payment_store.credit_balances(session, customer_id)
    out = []
    for currency in sorted({inv.currency for inv in invoices} | set(credits)):
        mine = [inv for inv in invoices if inv.currency == currency]
        out.append(CustomerSummary(
            customer_id, currency, sum((inv.balance for inv in mine), ZERO), credits.get(currency, ZERO),
            aging(((inv.due_on, inv.balance) for inv in mine), as_of),
            sum(1 for inv in mine if inv.balance > 0 and inv.due_on < as_of)))
    return out


@dataclass(frozen=True)
class AllocationView:
    invoice_id: int
    number: str | None
    amount: Money


@dataclass(frozen=True)
class RefundView:
    refund_id: int
    refunded_on: date
    reason: str
    amount: Money
    from_credit: Money  # taken back from the customer's credit
    reopened: tuple[AllocationView, ...]  # put back on the balance of the invoices the payment paid


@dataclass(frozen=True)
class PaymentDetail:
    payment_id: int
    customer_id: str
    currency: str
    amount: Money
    received_on: date
    method: str
    source: str
    reference: str
    allocations: tuple[AllocationView, ...]
    unapplied: Money  # became customer credit
    refunds: tuple[RefundView, ...]
    refunded: Money
    refundable: Money  # what a refund may still take
    created_at: datetime
    salesforce_id: str | None


#: Largest payment id (an INTEGER column): a larger one is a bad value, not a query.
MAX_PAYMENT_ID = 2**31 - 1


def get_payment(session: Session, payment_id: int) -> PaymentDetail:
    """A payment with where it went (invoices, credit) and its refunds; raises ``NotFoundError``."""
    payment = payment_store.find_payment_by_id(session, payment_id) if 1 <= payment_id <= MAX_PAYMENT_ID else None
    if payment is None:
        raise NotFoundError("payment", payment_id)
    cur = payment.currency
    allocations = payment_store.payment_allocations(session, payment.id)
    refunds = sorted(payment_store.refunds_of(session, payment.id), key=lambda r: r.id)
    reopened = payment_store.refund_allocations_of(session, [r.id for r in refunds])
    numbers = invoice_store.invoice_numbers(session, [a.invoice_id for a in allocations])
    refunded = sum((r.amount for r in refunds), ZERO)
    return PaymentDetail(
        payment.id, payment.customer_id, cur, money_of(payment.amount, cur), payment.received_on, payment.method,
        payment.source, shown_reference(payment.external_reference),
        tuple(AllocationView(a.invoice_id, numbers.get(a.invoice_id), money_of(a.amount, cur)) for a in allocations),
        money_of(payment.unapplied, cur),
        tuple(RefundView(r.id, r.refunded_on, r.reason, money_of(r.amount, cur), money_of(r.from_credit, cur),
                         tuple(AllocationView(ra.invoice_id, numbers.get(ra.invoice_id), money_of(ra.amount, cur))
                               for ra in sorted(reopened, key=lambda x: x.id) if ra.refund_id == r.id))
              for r in refunds),
        money_of(refunded, cur), money_of(payment.amount - refunded, cur), utc(payment.created_at),
        payment.salesforce_id)
