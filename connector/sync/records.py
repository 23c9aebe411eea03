"""Engine rows → the engine-record dicts the outbound mappings read (docs/mappings.md, "Engine records").

Every loader reads the **current** state of the engine in bulk (a few queries per
batch, whatever its size), so a push after a crash, a coalesced snapshot row or a late
retry always sends the latest truth. Each dict carries every key of its source in the
contract (``None`` when empty); money stays ``Decimal``, dates stay ``date``.

External ids (the upsert keys in Salesforce) are the engine's ids as text:
``Billsync_Invoice_Id__c`` = invoice id, ``Billsync_Line_Id__c`` = invoice line id,
``Billsync_Payment_Id__c`` = payment id (``invoice_external_id`` and friends).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from billing_engine.money import round_money
from billing_engine.payments import payment_status
from billing_engine.storage.catalog import CustomerRow, ProductRow
from billing_engine.storage.invoices import Invoice, InvoiceLine
from billing_engine.storage.payments import Payment, PaymentAllocation, Refund
from billing_engine.storage.subscriptions import SubscriptionRow
from billing_engine.use_cases import payments as bs
from billing_engine.use_cases import revenue as revenue_uc
from billing_engine.use_cases import subscriptions as engine_services

ZERO = Decimal(0)
_CHUNK = 900
FINALIZED_STATUSES = ("open", "paid", "uncollectible", "void")
OPPORTUNITY_PREFIX = "006"


def invoice_external_id(invoice_id: int | str) -> str:
    return str(invoice_id)


def line_external_id(line_id: int | str) -> str:
    return str(line_id)


def payment_external_id(payment_id: int | str) -> str:
    return str(payment_id)


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _customers(session: Session, ids: Iterable[str]) -> dict[str, CustomerRow]:
    out: dict[str, CustomerRow] = {}
    for chunk in _chunks(ids):
        out.update({c.id: c for c in session.scalars(select(CustomerRow).where(CustomerRow.id.in_(chunk))).all()})
    return out


def _opportunity_id(external_key: str | None) -> str | None:
    """A subscription's external key when it is a Salesforce Opportunity id (the deal that created it)."""
    if external_key and external_key.startswith(OPPORTUNITY_PREFIX) and len(external_key) in (15, 18):
        return external_key
    return None


# ---------------------------------------------------------------- invoices


def load_invoices(session: Session, invoice_ids: Iterable[int], as_of: date) -> dict[int, dict[str, Any]]:
    """``invoice`` records by invoice id (missing invoices are absent)."""
    invoices: dict[int, Invoice] = {}
    for chunk in _chunks(int(i) for i in invoice_ids):
        invoices.update({inv.id: inv for inv in session.scalars(select(Invoice).where(Invoice.id.in_(chunk))).all()})
    if not invoices:
        return {}
    customers = _customers(session, (inv.customer_id for inv in invoices.values()))
    t = InvoiceLine.__table__
    periods: dict[int, tuple[date, date]] = {}
    first_subscription: dict[int, str] = {}
    for chunk in _chunks(invoices):
        rows = session.execute(select(t.c.invoice_id, func.min(t.c.starts_on), func.max(t.c.ends_before),
                                      func.min(t.c.subscription_id))
                               .where(t.c.invoice_id.in_(chunk), t.c.credit_note_id.is_(None))
                               .group_by(t.c.invoice_id))
        for invoice_id, starts, ends, subscription_id in rows:
            periods[invoice_id] = (starts, ends)
            first_subscription[invoice_id] = subscription_id
    deals: dict[str, str | None] = {}
    for chunk in _chunks(first_subscription.values()):
        s = SubscriptionRow.__table__
        deals.update({sid: _opportunity_id(key) for sid, key in
                      session.execute(select(s.c.id, s.c.external_key).where(s.c.id.in_(chunk)))})
    out: dict[int, dict[str, Any]] = {}
    for inv in invoices.values():
        customer = customers.get(inv.customer_id)
        starts, ends = periods.get(inv.id, (None, None))
        out[inv.id] = {
            "id": invoice_external_id(inv.id),
            "number": inv.number,
            "status": inv.status,
            "payment_status": payment_status(status=inv.status, total=inv.total, paid=inv.amount_paid,
                                             credited=inv.amount_credited, refunded=inv.amount_refunded,
                                             due_on=inv.due_on, as_of=as_of),
            "issued_on": inv.issued_on,
            "due_on": inv.due_on,
            "period_starts_on": starts,
            "period_ends_before": ends,
            "currency": inv.currency,
            "subtotal": inv.subtotal,
            "discount": inv.discount,
            "tax": inv.tax,
            "total": inv.total,
            "amount_paid": inv.amount_paid - inv.amount_refunded,
            "balance": inv.balance,
            "tax_note": inv.tax_reason or None,
            "customer_id": inv.customer_id,
            "salesforce_account_id": customer.salesforce_account_id if customer else None,
            "salesforce_opportunity_id": deals.get(first_subscription.get(inv.id, "")),
        }
    return out


def load_invoice_lines(session: Session, invoice_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """``invoice_line`` records per invoice id, in position order.

    Lines moved to a credit note (``credit_note_id`` set) belong to the credit note, not
    to the invoice, and are left out.
    """
    t = InvoiceLine.__table__
    columns = (t.c.id, t.c.invoice_id, t.c.position, t.c.product_code, t.c.product_name, t.c.kind, t.c.description,
               t.c.starts_on, t.c.ends_before, t.c.quantity, t.c.unit_price, t.c.line_discount,
               t.c.invoice_discount, t.c.net, t.c.tax_percent, t.c.explanation)
    lines: list[Any] = []  # Core rows: 5 lines an invoice make this the biggest read of a push
    for chunk in _chunks(int(i) for i in invoice_ids):
        lines.extend(session.execute(select(*columns).where(t.c.invoice_id.in_(chunk),
                                                            t.c.credit_note_id.is_(None))).all())
    currencies: dict[int, str] = {}
    for chunk in _chunks({ln.invoice_id for ln in lines}):
        i = Invoice.__table__
        currencies.update(dict(session.execute(select(i.c.id, i.c.currency).where(i.c.id.in_(chunk))).all()))
    products: dict[str, str | None] = {}
    for chunk in _chunks({ln.product_code for ln in lines}):
        p = ProductRow.__table__
        products.update(dict(session.execute(select(p.c.code, p.c.salesforce_product_id)
                                             .where(p.c.code.in_(chunk))).all()))
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ln in sorted(lines, key=lambda x: (x.invoice_id, x.position, x.id)):
        currency = currencies.get(ln.invoice_id)
        tax = round_money(ln.net * ln.tax_percent / 100, currency) if currency else None
        out[ln.invoice_id].append({
            "id": line_external_id(ln.id),
            "invoice_id": invoice_external_id(ln.invoice_id),
            "product_code": ln.product_code,
            "salesforce_product_id": products.get(ln.product_code),
            "kind": ln.kind,
            "description": ln.description or ln.product_name,
            "explanation": ln.explanation,
            "starts_on": ln.starts_on,
            "ends_before": ln.ends_before,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price,
            "discount": ln.line_discount + ln.invoice_discount,
            "amount": ln.net,
            "tax_rate": ln.tax_percent,
            "tax": tax,
        })
    return dict(out)


# ---------------------------------------------------------------- payments


def payment_invoice_ids(session: Session, payment_ids: Iterable[int]) -> dict[int, list[int]]:
    """The invoices each payment was applied to (allocation order)."""
    out: dict[int, list[int]] = defaultdict(list)
    t = PaymentAllocation.__table__
    for chunk in _chunks(int(i) for i in payment_ids):
        for payment_id, invoice_id in session.execute(select(t.c.payment_id, t.c.invoice_id)
                                                      .where(t.c.payment_id.in_(chunk)).order_by(t.c.id)):
            if invoice_id not in out[payment_id]:
                out[payment_id].append(invoice_id)
    return dict(out)


def load_payments(session: Session, payment_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``payment`` records by payment id (missing payments are absent)."""
    payments: dict[int, Payment] = {}
    for chunk in _chunks(int(i) for i in payment_ids):
        payments.update({p.id: p for p in session.scalars(select(Payment).where(Payment.id.in_(chunk))).all()})
    if not payments:
        return {}
    customers = _customers(session, (p.customer_id for p in payments.values()))
    invoices = payment_invoice_ids(session, payments)
    refunded: dict[int, Decimal] = defaultdict(Decimal)
    from_credit: dict[int, Decimal] = defaultdict(Decimal)
    r = Refund.__table__
    for chunk in _chunks(payments):
        for payment_id, amount, credit in session.execute(select(r.c.payment_id, r.c.amount, r.c.from_credit)
                                                          .where(r.c.payment_id.in_(chunk))):
            refunded[payment_id] += amount
            from_credit[payment_id] += credit
    out: dict[int, dict[str, Any]] = {}
    for p in payments.values():
        done = refunded.get(p.id, ZERO)
        status = "refunded" if done >= p.amount else "partially_refunded" if done > 0 else "succeeded"
        customer = customers.get(p.customer_id)
        first = invoices.get(p.id)
        out[p.id] = {
            "id": payment_external_id(p.id),
            "salesforce_account_id": customer.salesforce_account_id if customer else None,
            "first_invoice_id": invoice_external_id(first[0]) if first else None,
            "currency": p.currency,
            "amount": p.amount,
            "unapplied_amount": max(p.unapplied - from_credit.get(p.id, ZERO), ZERO),
            "paid_on": p.received_on,
            "method": p.method,
            "reference": p.external_reference,
            "status": status,
        }
    return out


# ---------------------------------------------------------------- account summary


def _subscriptions_of(session: Session, customer_ids: Sequence[str]) -> list[Any]:
    t = SubscriptionRow.__table__
    cache: dict = {}
    ids: list[str] = []
    for chunk in _chunks(customer_ids):
        ids.extend(session.execute(select(t.c.id).where(t.c.customer_id.in_(chunk))
                                   .order_by(t.c.customer_id, t.c.id)).scalars())
    return [engine_services.get_subscription(session, sid, price_cache=cache) for sid in ids]


def load_account_summaries(session: Session, customer_ids: Iterable[str],
                           as_of: date) -> dict[str, dict[str, Any] | None]:
    """``account_summary`` records by customer id; ``None`` for a customer without a Salesforce Account.

    Balance = open invoices − unapplied credit, MRR/ARR as of ``as_of``, in the
    customer's currency; ``billing_status``: ``past_due`` (an invoice is overdue),
    ``active`` (an active subscription), ``cancelled`` (only cancelled ones), ``none``.
    """
    wanted = sorted(set(customer_ids))
    customers = _customers(session, wanted)
    linked = [cid for cid in wanted if cid in customers and customers[cid].salesforce_account_id]
    out: dict[str, dict[str, Any] | None] = {cid: None for cid in wanted if cid in customers}
    if not linked:
        return out
    subs = _subscriptions_of(session, linked)
    mrr = revenue_uc.mrr_as_of(session, as_of, source=revenue_uc.SubscriptionMrrSource(lambda _session: subs))
    statuses: dict[str, set[str]] = defaultdict(set)
    s = SubscriptionRow.__table__
    for chunk in _chunks(linked):
        for cid, status in session.execute(select(s.c.customer_id, s.c.status).where(s.c.customer_id.in_(chunk))):
            statuses[cid].add(status)
    last_invoice: dict[str, date] = {}
    i = Invoice.__table__
    for chunk in _chunks(linked):
        last_invoice.update(dict(session.execute(
            select(i.c.customer_id, func.max(i.c.issued_on))
            .where(i.c.customer_id.in_(chunk), i.c.status.in_(FINALIZED_STATUSES)).group_by(i.c.customer_id)).all()))
    for cid in linked:
        customer = customers[cid]
        currency = customer.currency
        summary = next((x for x in bs.customer_summary(session, cid, as_of) if x.currency == currency), None)
        monthly = mrr.get((cid, currency), ZERO)
        if summary is not None and summary.overdue_invoices:
            billing = "past_due"
        elif "active" in statuses.get(cid, ()):
            billing = "active"
        elif statuses.get(cid):
            billing = "cancelled"
        else:
            billing = "none"
        out[cid] = {
            "salesforce_account_id": customer.salesforce_account_id,
            "customer_id": cid,
            "currency": currency,
            "mrr": monthly,
            "arr": monthly * 12,
            "balance": (summary.open_balance - summary.credit_balance) if summary else ZERO,
            "last_invoice_on": last_invoice.get(cid),
            "billing_status": billing,
        }
    return out


# ---------------------------------------------------------------- subscription link


def load_subscription_links(session: Session, subscription_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """``subscription_link`` records; ``None`` when the subscription did not come from an Opportunity."""
    out: dict[str, dict[str, Any] | None] = {}
    s = SubscriptionRow.__table__
    for chunk in _chunks(subscription_ids):
        for sid, key, status in session.execute(select(s.c.id, s.c.external_key, s.c.status)
                                                .where(s.c.id.in_(chunk))):
            opportunity = _opportunity_id(key)
            out[sid] = ({"salesforce_opportunity_id": opportunity, "subscription_id": sid, "status": status}
                        if opportunity else None)
    return out
