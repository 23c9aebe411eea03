"""Export use cases: what the engine tells the CRM, read in batches for the push.

- ``account_summaries`` / ``account_billing_summary``: THE Account billing summary (status as
  of a date, MRR, ARR, balance, credit, last invoice date); the push and every other
  reader use this one definition.
- ``invoices_for_export`` and ``invoice_lines_for_export``: finalized invoices with their
  figures, payment status and last dunning step, and their lines (lines moved to a credit note are left out).
- ``payments_for_export`` (with the invoices each payment paid), ``refunds_for_export``,
  ``credit_notes_for_export`` and ``credit_note_lines_for_export`` (with the invoice line each
  credits), and ``subscription_links`` (each subscription's deal and its status as of a date, by
  the Account summary's rules).
- ``subscriptions_for_export``: each subscription as the CRM's subscription record shows it
  (status, term, renewal and next invoice dates, MRR and ARR) with its current items.
- ``outbox_table``: the table the push drains.
- ``invoices_issued_between`` / ``payments_received_between`` / ``credit_notes_issued_between`` /
  ``refunds_made_between`` and ``account_summaries_of_accounts``: the same records for a period, and
  every Account summary (reconciliation); ``record_salesforce_ids`` and ``requeue_exports`` for the
  push and its repair.
- ``pushed_records`` and ``invoices_of_lines``: what identifies records already pushed, for
  moving them to new external ids in Salesforce.

Every reader costs a few queries per batch whatever its size, and reads the current state,
so a late or coalesced push always sends the latest truth. Values stay engine values
(``Decimal``, ``date``, engine ids); naming them for Salesforce is the connector's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing_engine import outbox as ob
from billing_engine.errors import NotFoundError
from billing_engine.money import round_money
from billing_engine.payments import payment_status, shown_reference
from billing_engine.periods import period_containing
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as collection_store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import outbox as outbox_store
from billing_engine.storage import payments as payment_store
from billing_engine.storage import subscriptions as subscription_store
from billing_engine.storage.database import Session
from billing_engine.subscriptions import Subscription, SubscriptionStatus
from billing_engine.tax import LineTax
from billing_engine.use_cases.revenue import mrr_and_arr_snapshots, subscription_mrr_versions

ZERO = Decimal(0)

#: ``billing_status`` values of the Account summary.
BILLING_STATUSES = ("active", "cancelling", "past_due", "cancelled", "none")


# ---------------------------------------------------------------- the Account summary


@dataclass(frozen=True)
class AccountBillingSummary:
    """What the Account push writes to Salesforce for a customer, as of a date.

    ``arr``: the yearly amount, from the unrounded MRR (docs/billing-rules.md §17 Revenue
    metrics: MRR and ARR), not ``mrr`` × 12.
    ``balance``: what the customer still owes once its unused credit is counted
    (Σ balances of open and uncollectible invoices − unused credit, never below zero);
    ``credit_balance``: its unused credit; both in the customer's currency.
    ``billing_status`` (see ``billing_status``): ``past_due``, ``active``, ``cancelling``
    (with ``ends_before``, the first day no subscription covers), ``cancelled`` or ``none``.
    """

    customer_id: str
    currency: str
    mrr: Decimal
    arr: Decimal
    balance: Decimal
    credit_balance: Decimal
    overdue_invoices: int
    last_invoice_on: date | None
    billing_status: str
    as_of: date
    ends_before: date | None = None
    salesforce_account_id: str | None = None

    def as_payload(self) -> dict[str, str | None]:
        """Strings for JSON (exact decimals, ISO dates)."""
        return {"customer_id": self.customer_id, "currency": self.currency, "mrr": str(self.mrr),
                "arr": str(self.arr), "balance": str(self.balance), "credit_balance": str(self.credit_balance),
                "overdue_invoices": str(self.overdue_invoices),
                "last_invoice_on": self.last_invoice_on.isoformat() if self.last_invoice_on else None,
                "billing_status": self.billing_status, "as_of": self.as_of.isoformat(),
                "ends_before": self.ends_before.isoformat() if self.ends_before else None}


def billing_status(subscriptions: Sequence[Subscription], overdue_invoices: int,
                   as_of: date) -> tuple[str, date | None]:
    """The billing status on ``as_of`` of a customer's subscriptions (or of one subscription) and,
    while ``cancelling`` or once ``cancelled``, the first day no subscription covers.

    ``none`` without subscriptions; ``past_due`` when an invoice with a balance is past its due
    date; ``active`` while a subscription runs (or is about to start) with no cancellation;
    ``cancelling`` when every running subscription is cancelled but one still runs until its
    end (a cancellation at the end of the term, seen mid-term: still billed and served until
    then); ``cancelled`` when every subscription has ended. The date is the latest end among
    them (exclusive, like every engine period end): ``None`` for the other statuses.
    """
    if not subscriptions:
        return "none", None
    if overdue_invoices:
        return "past_due", None
    statuses = [(s, s.status_on(as_of)) for s in subscriptions]
    if any(status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING) for _, status in statuses):
        return "active", None
    ends = max((s.ends_before for s in subscriptions if s.ends_before is not None), default=None)
    if any(status is SubscriptionStatus.CANCELLED for _, status in statuses):
        return "cancelling", ends
    return "cancelled", ends


def _overdue_invoices(session: Session, customers: dict[str, Any], as_of: date) -> dict[str, list[Any]]:
    """Per customer, its payable invoices in its currency and how many are past due on ``as_of``."""
    payable = invoice_store.payable_invoices_of_customers(session, sorted(customers))
    return {cid: [inv for inv in payable.get(cid, ()) if inv.currency == customer.currency]
            for cid, customer in customers.items()}


def _overdue_count(invoices: Iterable[Any], as_of: date) -> int:
    return sum(1 for inv in invoices if inv.balance > 0 and inv.due_on is not None and inv.due_on < as_of)


def account_summaries(session: Session, customer_ids: Iterable[str],
                      as_of: date) -> dict[str, AccountBillingSummary]:
    """The Account summary of each of these customers (missing customers are absent), in the
    customer's currency: a few queries per 900 customers."""
    customers = catalog_store.customers_by_id(session, customer_ids)
    ids = sorted(customers)
    if not ids:
        return {}
    subscriptions: dict[str, list[Subscription]] = {}
    for sub in subscription_store.subscriptions_of_customers(session, ids):
        subscriptions.setdefault(sub.customer_id, []).append(sub)
    [(mrr, arr)] = mrr_and_arr_snapshots((v for subs in subscriptions.values() for s in subs
                                          for v in subscription_mrr_versions(s, as_of)), [as_of])
    payable = _overdue_invoices(session, customers, as_of)
    credits = payment_store.credit_balances_of_customers(session, ids)
    last_invoice = invoice_store.last_invoice_dates(session, ids)
    out: dict[str, AccountBillingSummary] = {}
    for cid in ids:
        customer = customers[cid]
        currency = customer.currency
        zero = round_money(ZERO, currency)
        invoices = payable[cid]
        overdue = _overdue_count(invoices, as_of)
        owed = round_money(sum((inv.balance for inv in invoices), ZERO), currency)
        credit = credits.get((cid, currency), zero)
        monthly = mrr.get((cid, currency), zero)
        annual = arr.get((cid, currency), zero)  # from the unrounded MRR, not monthly × 12
        status, ends_before = billing_status(subscriptions.get(cid, ()), overdue, as_of)
        out[cid] = AccountBillingSummary(
            customer_id=cid, currency=currency, mrr=monthly, arr=annual, balance=max(owed - credit, zero),
            credit_balance=credit, overdue_invoices=overdue, last_invoice_on=last_invoice.get(cid),
            billing_status=status, as_of=as_of, ends_before=ends_before,
            salesforce_account_id=customer.salesforce_account_id)
    return out


def account_billing_summary(session: Session, customer_id: str, as_of: date) -> AccountBillingSummary:
    """One customer's Account summary (``account_summaries``); raises ``NotFoundError``."""
    summary = account_summaries(session, [customer_id], as_of).get(customer_id)
    if summary is None:
        raise NotFoundError("customer", customer_id)
    return summary


# ---------------------------------------------------------------- invoices and lines


@dataclass(frozen=True)
class InvoiceExport:
    invoice_id: int
    number: str | None
    status: str
    payment_status: str | None
    issued_on: date | None
    due_on: date | None
    period_starts_on: date | None
    period_ends_before: date | None
    currency: str
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    amount_paid: Decimal  # paid − refunded
    amount_credited: Decimal  # credit notes and customer credit applied to it
    balance: Decimal
    tax_note: str | None
    customer_id: str
    salesforce_account_id: str | None
    subscription_external_key: str | None  # of its first subscription (the deal that started it)
    dunning_step: str | None = None  # the last reminder sent (docs/payments.md)
    dunning_step_on: date | None = None
    purchase_order: str = ""  # the buyer's references (EN 16931 BT-13, BT-10)
    buyer_reference: str = ""
    attributes: dict[str, str] = field(default_factory=dict)  # custom attributes, as assembled


def _invoice_export(inv: invoice_store.Invoice, as_of: date, period: tuple[date, date, str] | None,
                    account_id: str | None, external_key: str | None,
                    dunning: tuple[str | None, date | None] = (None, None)) -> InvoiceExport:
    starts, ends = (period[0], period[1]) if period else (None, None)
    return InvoiceExport(
        invoice_id=inv.id, number=inv.number, status=inv.status,
        payment_status=payment_status(status=inv.status, total=inv.total, paid=inv.amount_paid,
                                      credited=inv.amount_credited, refunded=inv.amount_refunded,
                                      due_on=inv.due_on, as_of=as_of),
        issued_on=inv.issued_on, due_on=inv.due_on, period_starts_on=starts, period_ends_before=ends,
        currency=inv.currency, subtotal=inv.subtotal, discount=inv.discount, tax=inv.tax, total=inv.total,
        amount_paid=inv.amount_paid - inv.amount_refunded, amount_credited=inv.amount_credited,
        balance=inv.balance, tax_note=inv.tax_reason or None,
        customer_id=inv.customer_id, salesforce_account_id=account_id, subscription_external_key=external_key,
        dunning_step=dunning[0], dunning_step_on=dunning[1], purchase_order=inv.purchase_order or "",
        buyer_reference=inv.buyer_reference or "", attributes=inv.attributes)


def invoices_for_export(session: Session, invoice_ids: Iterable[int], as_of: date) -> dict[int, InvoiceExport]:
    """Invoices by id (missing ones are absent), payment status as of ``as_of``."""
    invoices = invoice_store.invoices_by_ids(session, (int(i) for i in invoice_ids))
    if not invoices:
        return {}
    customers = catalog_store.customers_by_id(session, (inv.customer_id for inv in invoices.values()))
    periods = invoice_store.invoice_periods(session, invoices)
    keys = subscription_store.subscription_keys(session, (p[2] for p in periods.values()))
    dunning = collection_store.dunning_states(session, invoices)
    out = {}
    for inv in invoices.values():
        customer = customers.get(inv.customer_id)
        period = periods.get(inv.id)
        key = keys.get(period[2]) if period else None
        out[inv.id] = _invoice_export(inv, as_of, period, customer.salesforce_account_id if customer else None,
                                      key[0] if key else None, dunning.get(inv.id, (None, None)))
    return out


@dataclass(frozen=True)
class InvoiceLineExport:
    line_id: int
    invoice_id: int
    position: int
    product_code: str
    salesforce_product_id: str | None
    kind: str
    description: str  # its description, else the product's name
    explanation: str
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal  # line discount + its share of the invoice discount
    amount: Decimal  # net
    tax_rate: Decimal
    tax: Decimal | None  # the line's tax at its rate, rounded to the currency
    tax_category: str = ""  # EN 16931 VAT category code (S, Z, E, AE, G, O)


def invoice_lines_for_export(session: Session, invoice_ids: Iterable[int]) -> dict[int, list[InvoiceLineExport]]:
    """The lines of each invoice, in position order (lines moved to a credit note belong to the
    credit note and are left out)."""
    lines = invoice_store.lines_of_invoices(session, (int(i) for i in invoice_ids))
    currencies = invoice_store.invoice_currencies(session, {ln.invoice_id for ln in lines})
    products = catalog_store.salesforce_product_ids(session, {ln.product_code for ln in lines})
    out: dict[int, list[InvoiceLineExport]] = {}
    for ln in lines:
        currency = currencies.get(ln.invoice_id)
        out.setdefault(ln.invoice_id, []).append(InvoiceLineExport(
            line_id=ln.id, invoice_id=ln.invoice_id, position=ln.position, product_code=ln.product_code,
            salesforce_product_id=products.get(ln.product_code), kind=ln.kind,
            description=ln.description or ln.product_name, explanation=ln.explanation, starts_on=ln.starts_on,
            ends_before=ln.ends_before, quantity=ln.quantity, unit_price=ln.unit_price,
            discount=ln.line_discount + ln.invoice_discount, amount=ln.net, tax_rate=ln.tax_percent,
            tax=round_money(ln.net * ln.tax_percent / 100, currency) if currency else None,
            tax_category=LineTax.of(ln.tax_percent, "", ln.tax_category).code))
    return out


# ---------------------------------------------------------------- payments


@dataclass(frozen=True)
class PaymentExport:
    payment_id: int
    customer_id: str
    salesforce_account_id: str | None
    invoice_ids: tuple[int, ...]  # the invoices it paid, in allocation order
    currency: str
    amount: Decimal
    unapplied_amount: Decimal  # its credit not used or refunded
    received_on: date
    method: str
    external_reference: str  # empty when recorded without one
    status: str  # succeeded | partially_refunded | refunded


def refund_status(amount: Decimal, refunded: Decimal) -> str:
    """A payment's status from what was refunded of it."""
    if refunded <= 0:
        return "succeeded"
    return "refunded" if refunded >= amount else "partially_refunded"


def paid_invoice_ids(session: Session, payment_ids: Iterable[int]) -> dict[int, list[int]]:
    """The invoices each payment was applied to (allocation order)."""
    return payment_store.invoice_ids_of_payments(session, (int(i) for i in payment_ids))


def payments_for_export(session: Session, payment_ids: Iterable[int]) -> dict[int, PaymentExport]:
    """Payments by id (missing ones are absent)."""
    payments = payment_store.payments_by_ids(session, (int(i) for i in payment_ids))
    if not payments:
        return {}
    customers = catalog_store.customers_by_id(session, (p.customer_id for p in payments.values()))
    invoices = payment_store.invoice_ids_of_payments(session, payments)
    refunds = payment_store.refund_totals(session, payments)
    out = {}
    for p in payments.values():
        refunded, from_credit = refunds.get(p.id, (ZERO, ZERO))
        customer = customers.get(p.customer_id)
        out[p.id] = PaymentExport(
            payment_id=p.id, customer_id=p.customer_id,
            salesforce_account_id=customer.salesforce_account_id if customer else None,
            invoice_ids=tuple(invoices.get(p.id, ())), currency=p.currency, amount=p.amount,
            unapplied_amount=max(p.unapplied - from_credit, ZERO), received_on=p.received_on, method=p.method,
            external_reference=shown_reference(p.external_reference), status=refund_status(p.amount, refunded))
    return out


@dataclass(frozen=True)
class RefundExport:
    refund_id: int
    payment_id: int
    customer_id: str
    salesforce_account_id: str | None
    currency: str
    amount: Decimal
    from_credit: Decimal  # taken back from the customer's unused credit (the rest reopened invoices)
    refunded_on: date
    reason: str


def refunds_for_export(session: Session, refund_ids: Iterable[int]) -> dict[int, RefundExport]:
    """Refunds by id (missing ones are absent)."""
    refunds = payment_store.refunds_by_ids(session, (int(i) for i in refund_ids))
    customers = catalog_store.customers_by_id(session, (r.customer_id for r in refunds.values()))
    out = {}
    for r in refunds.values():
        customer = customers.get(r.customer_id)
        out[r.id] = RefundExport(
            refund_id=r.id, payment_id=r.payment_id, customer_id=r.customer_id,
            salesforce_account_id=customer.salesforce_account_id if customer else None, currency=r.currency,
            amount=r.amount, from_credit=r.from_credit, refunded_on=r.refunded_on, reason=r.reason)
    return out


# ---------------------------------------------------------------- credit notes


@dataclass(frozen=True)
class CreditNoteExport:
    credit_note_id: int
    number: str
    customer_id: str
    salesforce_account_id: str | None
    invoice_id: int | None
    currency: str
    issued_on: date
    reason: str
    net: Decimal
    tax: Decimal
    total: Decimal
    applied_to_invoice: Decimal  # settled the invoice's balance
    to_credit_balance: Decimal  # became customer credit
    status: str  # applied | partially_applied | customer_credit (credit_note_status)


def credit_note_status(applied_to_invoice: Decimal, to_credit_balance: Decimal) -> str:
    """Where a credit note went: ``applied`` (all of it settled its invoice), ``customer_credit`` (all of
    it became customer credit: the invoice was already settled), else ``partially_applied``."""
    if to_credit_balance <= 0:
        return "applied"
    return "customer_credit" if applied_to_invoice <= 0 else "partially_applied"


def credit_notes_for_export(session: Session, credit_note_ids: Iterable[int]) -> dict[int, CreditNoteExport]:
    """Credit notes by id (missing ones are absent)."""
    notes = invoice_store.credit_notes_by_ids(session, (int(i) for i in credit_note_ids))
    customers = catalog_store.customers_by_id(session, (cn.customer_id for cn in notes.values()))
    return {cn.id: _credit_note_export(cn, customers.get(cn.customer_id)) for cn in notes.values()}


def _credit_note_export(cn: invoice_store.CreditNote, customer: Any) -> CreditNoteExport:
    return CreditNoteExport(
        credit_note_id=cn.id, number=cn.number, customer_id=cn.customer_id,
        salesforce_account_id=customer.salesforce_account_id if customer else None, invoice_id=cn.invoice_id,
        currency=cn.currency, issued_on=cn.issued_on, reason=cn.reason, net=cn.net, tax=cn.tax, total=cn.total,
        applied_to_invoice=cn.applied_to_invoice, to_credit_balance=cn.to_credit_balance,
        status=credit_note_status(cn.applied_to_invoice, cn.to_credit_balance))


@dataclass(frozen=True)
class CreditNoteLineExport:
    line_id: int
    credit_note_id: int
    invoice_line_id: int | None  # the invoice line it credits, when it credits one line of its invoice
    description: str
    amount: Decimal  # net credited, positive
    tax_rate: Decimal
    tax: Decimal  # the line's tax at its rate, rounded to the currency


def credit_note_lines_for_export(session: Session,
                                 credit_note_ids: Iterable[int]) -> dict[int, list[CreditNoteLineExport]]:
    """The lines of each credit note, in the order they were written. A line that credits one line of
    the credit note's invoice (same charge key, a line still on the invoice) names it; a credit of an
    amount, a void, or credits that exceeded an invoice's charges name none."""
    lines = invoice_store.lines_of_credit_notes(session, (int(i) for i in credit_note_ids))
    notes = invoice_store.credit_notes_by_ids(session, {ln.credit_note_id for ln in lines})
    credited = invoice_store.invoice_lines_by_charge_key(
        session, {(notes[ln.credit_note_id].invoice_id, ln.charge_key) for ln in lines
                  if ln.charge_key and notes[ln.credit_note_id].invoice_id is not None})
    out: dict[int, list[CreditNoteLineExport]] = {}
    for ln in lines:
        note = notes[ln.credit_note_id]
        invoice_line = credited.get((note.invoice_id, ln.charge_key)) if ln.charge_key else None
        out.setdefault(ln.credit_note_id, []).append(CreditNoteLineExport(
            line_id=ln.id, credit_note_id=ln.credit_note_id, invoice_line_id=invoice_line,
            description=ln.description or note.reason, amount=ln.net, tax_rate=ln.tax_percent,
            tax=round_money(ln.net * ln.tax_percent / 100, note.currency)))
    return out


# ---------------------------------------------------------------- subscriptions


@dataclass(frozen=True)
class SubscriptionLink:
    """A subscription, the deal it came from, and its status on ``as_of`` in the vocabulary of
    the Account summary (``billing_status`` applied to this subscription alone, with its customer's
    overdue invoices): ``active``, ``cancelling`` or ``cancelled`` with ``ends_before`` (its exclusive
    end), or ``past_due``."""

    subscription_id: str
    external_key: str | None  # the deal it came from (e.g. the Salesforce Opportunity id)
    status: str
    as_of: date
    ends_before: date | None = None
    customer_id: str = ""


def _links(session: Session, subscriptions: Sequence[Subscription], as_of: date) -> list[SubscriptionLink]:
    customers = catalog_store.customers_by_id(session, {s.customer_id for s in subscriptions})
    payable = _overdue_invoices(session, customers, as_of)
    overdue = {cid: _overdue_count(invoices, as_of) for cid, invoices in payable.items()}
    out = []
    for sub in subscriptions:
        status, ends_before = billing_status([sub], overdue.get(sub.customer_id, 0), as_of)
        out.append(SubscriptionLink(sub.subscription_id, sub.external_key, status, as_of, ends_before,
                                    sub.customer_id))
    return out


def subscription_links(session: Session, subscription_ids: Iterable[str],
                       as_of: date) -> dict[str, SubscriptionLink]:
    """Subscriptions by id (missing ones are absent) with the key of the deal they came from and
    their status on ``as_of``: a few queries per batch."""
    subs = subscription_store.subscriptions_of_customers(session, (), subscription_ids=sorted(set(subscription_ids)))
    return {link.subscription_id: link for link in _links(session, subs, as_of)}


def subscription_links_of_customers(session: Session, customer_ids: Iterable[str],
                                    as_of: date) -> dict[str, list[SubscriptionLink]]:
    """Per customer, the links of its subscriptions (``subscription_links``), by currency and id."""
    subs = subscription_store.subscriptions_of_customers(session, sorted(set(customer_ids)))
    out: dict[str, list[SubscriptionLink]] = {}
    for link in _links(session, subs, as_of):
        out.setdefault(link.customer_id, []).append(link)
    return out


# ---------------------------------------------------------------- subscriptions as the CRM shows them


@dataclass(frozen=True)
class SubscriptionItemExport:
    item_id: str
    product_code: str
    salesforce_product_id: str | None
    quantity: Decimal
    pricing_model: str
    contract_unit_price: Decimal | None
    discount_percent: Decimal | None


@dataclass(frozen=True)
class SubscriptionExport:
    """A subscription as of a date, for the CRM's subscription record and its items.

    ``status`` and ``ends_before`` follow the Account summary's rules (``billing_status``);
    ``term_ends_before``: the first day after the current term (None when evergreen);
    ``renews_on``: the day the next term starts when it renews (None when it does not);
    ``next_invoice_on``: the start of the next billing period it is billed for (None once
    nothing is left to bill); ``mrr`` and ``arr`` its own recurring revenue, in its currency;
    ``items``: what it bills as of the date (before its start: what it will bill; after its
    end: what it billed last).
    """

    subscription_id: str
    external_key: str | None
    customer_id: str
    salesforce_account_id: str | None
    currency: str
    status: str
    ends_before: date | None
    starts_on: date
    term_months: int | None
    auto_renew: bool
    term_ends_before: date | None
    renews_on: date | None
    next_invoice_on: date | None
    mrr: Decimal
    arr: Decimal
    items: tuple[SubscriptionItemExport, ...]


def subscriptions_for_export(session: Session, subscription_ids: Iterable[str],
                             as_of: date) -> dict[str, SubscriptionExport]:
    """Subscriptions by id (missing ones are absent), as of ``as_of``: a few queries per batch."""
    subs = subscription_store.subscriptions_of_customers(session, (), subscription_ids=sorted(set(subscription_ids)))
    if not subs:
        return {}
    links = {link.subscription_id: link for link in _links(session, subs, as_of)}
    customers = catalog_store.customers_by_id(session, {s.customer_id for s in subs})
    out: dict[str, SubscriptionExport] = {}
    for sub in subs:
        link = links[sub.subscription_id]
        [(mrr, arr)] = mrr_and_arr_snapshots(subscription_mrr_versions(sub, as_of), [as_of])
        zero = round_money(ZERO, sub.currency)
        key = (sub.customer_id, sub.currency)
        customer = customers.get(sub.customer_id)
        out[sub.subscription_id] = SubscriptionExport(
            subscription_id=sub.subscription_id, external_key=sub.external_key, customer_id=sub.customer_id,
            salesforce_account_id=customer.salesforce_account_id if customer else None, currency=sub.currency,
            status=link.status, ends_before=link.ends_before, starts_on=sub.starts_on, term_months=sub.term_months,
            auto_renew=sub.auto_renew, **subscription_dates(sub, as_of), mrr=mrr.get(key, zero),
            arr=arr.get(key, zero), items=_export_items(sub, as_of))
    return out


def subscription_dates(sub: Subscription, as_of: date) -> dict[str, date | None]:
    """``term_ends_before``, ``renews_on`` and ``next_invoice_on`` of ``SubscriptionExport``."""
    end = sub.ends_before
    day = max(as_of, sub.starts_on)
    if end is not None and day >= end:
        return {"term_ends_before": end, "renews_on": None, "next_invoice_on": None}
    term_end = sub.term_end_after(day) if sub.term_months is not None else None
    if term_end is not None and end is not None:
        term_end = min(term_end, end)
    renews = term_end if term_end is not None and sub.auto_renew and sub.cancellation is None else None
    if as_of < sub.starts_on:
        following: date | None = max(sub.starts_on, sub.bills_from or sub.starts_on)
    else:
        following = period_containing(sub.billing_anchor_on or sub.starts_on, sub.interval, as_of).ends_before
        if sub.bills_from is not None and sub.bills_from > following:
            following = sub.bills_from
    if following is not None and end is not None and following >= end:
        following = None
    return {"term_ends_before": term_end, "renews_on": renews, "next_invoice_on": following}


def _export_items(sub: Subscription, as_of: date) -> tuple[SubscriptionItemExport, ...]:
    """The items as of ``as_of``; an item an amendment removed stays, with quantity 0 (its CRM record
    is updated, never left showing what is no longer billed)."""
    items: Mapping[str, Any]
    removed: dict[str, Any] = {}
    if as_of < sub.starts_on:
        items = {item.item_id: item for item in sub.items}
    else:
        last = sub.ends_before - timedelta(days=1) if sub.ends_before is not None else as_of
        versions = sub.versions(min(as_of, last))
        items = versions[-1].items
        for version in versions[:-1]:
            removed.update({key: item for key, item in version.items.items() if key not in items})
    return tuple(SubscriptionItemExport(
        item_id=item.item_id, product_code=item.price.product.code,
        salesforce_product_id=item.price.product.salesforce_product_id,
        quantity=item.quantity if key in items else Decimal(0), pricing_model=item.price.model,
        contract_unit_price=item.contract_unit_price, discount_percent=item.discount_percent)
        for key, item in [*items.items(), *removed.items()])


# ---------------------------------------------------------------- a period, for reconciliation


def invoices_issued_between(session: Session, starts_on: date, ends_before: date,
                            as_of: date) -> list[InvoiceExport]:
    """Finalized invoices issued in ``[starts_on, ends_before)``, by issue date and number (payment
    status as of ``as_of``; no period or account: reconciliation compares figures only)."""
    return [_invoice_export(inv, as_of, None, None, None)
            for inv in invoice_store.invoices_issued_between(session, starts_on, ends_before)]


def payments_received_between(session: Session, starts_on: date, ends_before: date) -> list[PaymentExport]:
    """Payments received in ``[starts_on, ends_before)``, by date and id."""
    ids = [p.id for p in payment_store.payments_received_between(session, starts_on, ends_before)]
    exported = payments_for_export(session, ids)
    return [exported[i] for i in ids]


def credit_notes_issued_between(session: Session, starts_on: date, ends_before: date) -> list[CreditNoteExport]:
    """Credit notes issued in ``[starts_on, ends_before)``, by issue date and number."""
    notes = invoice_store.credit_notes_issued_between(session, starts_on, ends_before)
    customers = catalog_store.customers_by_id(session, (cn.customer_id for cn in notes))
    return [_credit_note_export(cn, customers.get(cn.customer_id)) for cn in notes]


def refunds_made_between(session: Session, starts_on: date, ends_before: date) -> list[RefundExport]:
    """Refunds made in ``[starts_on, ends_before)``, by date and id."""
    ids = [r.id for r in payment_store.refunds_made_between(session, starts_on, ends_before)]
    exported = refunds_for_export(session, ids)
    return [exported[i] for i in ids]


def account_summaries_of_accounts(session: Session, as_of: date,
                                  batch_size: int = 900) -> Iterator[AccountBillingSummary]:
    """The Account summary as of ``as_of`` of every customer that has a Salesforce Account, by
    customer id, read ``batch_size`` customers at a time."""
    ids = catalog_store.customer_ids_with_accounts(session)
    for start in range(0, len(ids), batch_size):
        found = account_summaries(session, ids[start:start + batch_size], as_of)
        yield from (found[cid] for cid in ids[start:start + batch_size] if cid in found)


# ---------------------------------------------------------------- after the push


def outbox_table() -> Any:
    """The outbox table the push drains; its rows follow the contract in ``billing_engine.outbox``."""
    return outbox_store.OutboxRow.__table__  # type: ignore[attr-defined]  # SQLModel sets it on table classes


#: The kinds of records whose Salesforce id the engine keeps.
PUSHED_KINDS = tuple(payment_store.PUSHED_TABLES)


def record_salesforce_ids(session: Session, kind: str, ids: dict[int, str]) -> None:
    """Remember the Salesforce record each invoice, payment, credit note or refund was pushed to
    (``kind``: one of ``PUSHED_KINDS``; ``ids``: engine id → 18-character Salesforce id)."""
    payment_store.record_salesforce_ids(session, kind, ids)


@dataclass(frozen=True)
class PushedRecord:
    """What tells an invoice or payment in Salesforce is this one: the Salesforce id its push
    returned (``None`` when it was pushed before those were kept), its customer's Account, and
    its label there (an invoice's number, ``DRAFT-<id>`` for a draft; a payment's amount)."""

    record_id: int
    salesforce_id: str | None
    salesforce_account_id: str | None
    label: str


def pushed_records(session: Session, kind: str, ids: Iterable[int]) -> dict[int, PushedRecord]:
    """Invoices (``kind="invoice"``) or payments (``"payment"``) by id; missing ids are absent."""
    rows: dict[int, Any] = (invoice_store.invoices_by_ids(session, (int(i) for i in ids)) if kind == "invoice"
                            else payment_store.payments_by_ids(session, (int(i) for i in ids)))
    customers = catalog_store.customers_by_id(session, (r.customer_id for r in rows.values()))
    out = {}
    for rid, row in rows.items():
        customer = customers.get(row.customer_id)
        label = (row.number or f"DRAFT-{rid}") if kind == "invoice" else str(row.amount)
        out[rid] = PushedRecord(rid, row.salesforce_id, customer.salesforce_account_id if customer else None, label)
    return out


def invoices_of_lines(session: Session, line_ids: Iterable[int]) -> dict[int, int]:
    """The invoice each invoice line belongs to (missing lines are absent)."""
    return invoice_store.invoice_ids_of_lines(session, (int(i) for i in line_ids))


#: The topics whose events carry each exported record: (aggregate type of the events, topics).
EXPORT_TOPICS = {
    "invoice": ("invoice", (ob.INVOICE_FINALIZED, ob.INVOICE_STATUS_CHANGED, ob.INVOICE_OVERDUE,
                            ob.INVOICE_REMINDED)),
    "payment": ("payment", (ob.PAYMENT_RECORDED, ob.PAYMENT_REFUNDED)),
    "credit_note": ("credit_note", (ob.CREDIT_NOTE_ISSUED,)),
    "refund": ("payment", (ob.PAYMENT_REFUNDED,)),  # a refund's event is about its payment
}


def requeue_exports(session: Session, records: Sequence[tuple[str, int | str]], *,
                    now: datetime) -> list[tuple[str, int | str]]:
    """Push these records again (``("invoice", 42)``, ``("payment", 7)``, ``("credit_note", 3)``,
    ``("refund", 2)``, ``("customer", "cus-1")`` for an Account summary): their delivered or dead
    outbox events go back to pending, in their original order, and the Account summary of their
    customers is announced again. Returns the records that have no event to replay (an Account
    summary always has one: it is announced)."""
    ids = {kind: sorted({int(i) for k, i in records if k == kind and str(i).isdigit()})
           for kind in EXPORT_TOPICS}
    refunds = payment_store.refunds_by_ids(session, ids["refund"])
    missing = []
    for kind, record_id in records:
        if kind == "customer":
            continue
        aggregate_type, topics = EXPORT_TOPICS[kind]
        aggregate_id = str(record_id)
        if kind == "refund":
            refund = refunds.get(int(record_id)) if str(record_id).isdigit() else None
            if refund is None:
                missing.append((kind, record_id))
                continue
            aggregate_id = str(refund.payment_id)
        if not outbox_store.requeue(session, aggregate_type, aggregate_id, topics, now=now):
            missing.append((kind, record_id))
    customers = invoice_store.customers_of_invoices(session, ids["invoice"]) \
        | payment_store.customers_of_payments(session, ids["payment"]) \
        | {cn.customer_id for cn in invoice_store.credit_notes_by_ids(session, ids["credit_note"]).values()} \
        | {r.customer_id for r in refunds.values()} \
        | {str(i) for k, i in records if k == "customer"}
    known = catalog_store.customers_by_id(session, customers)
    outbox_store.add_events(session, [ob.customer_summary_event(cid, now) for cid in sorted(known)])
    return missing
