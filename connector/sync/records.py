"""Engine exports → the engine-record dicts the outbound mappings read (docs/mappings.md, "Engine records").

The figures come from the engine's export use cases (``billing_engine.use_cases.exports``),
read in bulk (a few queries per batch, whatever its size) from the **current** state, so a
push after a crash, a coalesced snapshot row or a late retry always sends the latest truth.
This module only names them for the mappings: each dict carries every key of its source in
the contract (``None`` when empty); money stays ``Decimal``, dates stay ``date``.

External ids (the upsert keys in Salesforce) are the engine's ids prefixed with this
installation's id (``connector.sync.installation.Keys``): ``Billsync_Invoice_Id__c`` =
``<installation>-inv-<invoice id>``, ``Billsync_Line_Id__c`` = ``<installation>-line-<line id>``,
``Billsync_Payment_Id__c`` = ``<installation>-pay-<payment id>``, ``Billsync_Credit_Note_Id__c`` =
``<installation>-cn-<id>``, ``Billsync_Credit_Note_Line_Id__c`` = ``<installation>-cnl-<id>``,
``Billsync_Refund_Id__c`` = ``<installation>-ref-<id>``, unique across installations.

Names people read in Salesforce: a payment is named by its reference as it was recorded (the
bank's or the processor's), else ``PAY-<year received>-<id>`` (``payment_name``); a refund
``RFD-<year refunded>-<id>``; an invoice and a credit note by their numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sqlmodel import Session

from billing_engine.payments import payment_name
from billing_engine.use_cases import exports
from billing_engine.use_cases.churn import churn_summaries
from connector.sync.installation import Keys

OPPORTUNITY_PREFIX = "006"


def last_day(ends_before: date | None) -> date | None:
    """The last day billed and served of a period that ends before ``ends_before`` (Salesforce's
    ``*_Ends_On__c`` dates: a term cancelled at its end on Jan 1 2027 ends on Dec 31 2026)."""
    return ends_before - timedelta(days=1) if ends_before is not None else None


def _opportunity_id(external_key: str | None) -> str | None:
    """A subscription's external key when it is a Salesforce Opportunity id (the deal that created it)."""
    if external_key and external_key.startswith(OPPORTUNITY_PREFIX) and len(external_key) in (15, 18):
        return external_key
    return None


# ---------------------------------------------------------------- invoices


def invoice_record(inv: exports.InvoiceExport, keys: Keys) -> dict[str, Any]:
    return {
        "id": keys.invoice(inv.invoice_id),
        "number": inv.number,
        "status": inv.status,
        "payment_status": inv.payment_status,
        "issued_on": inv.issued_on,
        "due_on": inv.due_on,
        "period_starts_on": inv.period_starts_on,
        "period_ends_before": inv.period_ends_before,
        "currency": inv.currency,
        "subtotal": inv.subtotal,
        "discount": inv.discount,
        "tax": inv.tax,
        "total": inv.total,
        "amount_paid": inv.amount_paid,
        "amount_credited": inv.amount_credited,
        "balance": inv.balance,
        "tax_note": inv.tax_note,
        "customer_id": inv.customer_id,
        "salesforce_account_id": inv.salesforce_account_id,
        "salesforce_opportunity_id": _opportunity_id(inv.subscription_external_key),
        "dunning_step": inv.dunning_step,
        "dunning_step_on": inv.dunning_step_on,
        "purchase_order": inv.purchase_order,
        "buyer_reference": inv.buyer_reference,
        "attributes": dict(inv.attributes),  # read as attributes.<name>
    }


def load_invoices(session: Session, invoice_ids: Iterable[int], as_of: date,
                  keys: Keys) -> dict[int, dict[str, Any]]:
    """``invoice`` records by invoice id (missing invoices are absent)."""
    return {iid: invoice_record(inv, keys)
            for iid, inv in exports.invoices_for_export(session, invoice_ids, as_of).items()}


def load_invoice_lines(session: Session, invoice_ids: Iterable[int], keys: Keys) -> dict[int, list[dict[str, Any]]]:
    """``invoice_line`` records per invoice id, in position order (lines moved to a credit note are
    left out: they belong to the credit note)."""
    return {iid: [{
        "id": keys.line(ln.line_id),
        "invoice_id": keys.invoice(ln.invoice_id),
        "product_code": ln.product_code,
        "salesforce_product_id": ln.salesforce_product_id,
        "kind": ln.kind,
        "description": ln.description,
        "explanation": ln.explanation,
        "starts_on": ln.starts_on,
        "ends_before": ln.ends_before,
        "quantity": ln.quantity,
        "unit_price": ln.unit_price,
        "discount": ln.discount,
        "amount": ln.amount,
        "tax_rate": ln.tax_rate,
        "tax": ln.tax,
        "tax_category": ln.tax_category,
    } for ln in lines] for iid, lines in exports.invoice_lines_for_export(session, invoice_ids).items()}


# ---------------------------------------------------------------- payments


def payment_invoice_ids(session: Session, payment_ids: Iterable[int]) -> dict[int, list[int]]:
    """The invoices each payment was applied to (allocation order)."""
    return exports.paid_invoice_ids(session, payment_ids)


def refund_name(refund_id: int, refunded_on: date) -> str:
    """``RFD-<year refunded>-<id, six digits>``."""
    return f"RFD-{refunded_on.year}-{refund_id:06d}"


def load_payments(session: Session, payment_ids: Iterable[int], keys: Keys) -> dict[int, dict[str, Any]]:
    """``payment`` records by payment id (missing payments are absent)."""
    return {pid: {
        "id": keys.payment(p.payment_id),
        "name": payment_name(p.payment_id, p.received_on, p.external_reference),
        "salesforce_account_id": p.salesforce_account_id,
        "first_invoice_id": keys.invoice(p.invoice_ids[0]) if p.invoice_ids else None,
        "currency": p.currency,
        "amount": p.amount,
        "unapplied_amount": p.unapplied_amount,
        "paid_on": p.received_on,
        "method": p.method,
        "reference": p.external_reference or None,
        "status": p.status,
    } for pid, p in exports.payments_for_export(session, payment_ids).items()}


def load_refunds(session: Session, refund_ids: Iterable[int], keys: Keys) -> dict[int, dict[str, Any]]:
    """``refund`` records by refund id (missing refunds are absent)."""
    return {rid: {
        "id": keys.refund(r.refund_id),
        "name": refund_name(r.refund_id, r.refunded_on),
        "payment_id": keys.payment(r.payment_id),
        "salesforce_account_id": r.salesforce_account_id,
        "currency": r.currency,
        "amount": r.amount,
        "from_credit": r.from_credit,
        "refunded_on": r.refunded_on,
        "reason": r.reason or None,
    } for rid, r in exports.refunds_for_export(session, refund_ids).items()}


def refund_payment_ids(session: Session, refund_ids: Iterable[int]) -> dict[int, int]:
    """The payment each refund was made from (missing refunds are absent)."""
    return {rid: r.payment_id for rid, r in exports.refunds_for_export(session, refund_ids).items()}


# ---------------------------------------------------------------- credit notes


def credit_note_invoice_ids(session: Session, credit_note_ids: Iterable[int]) -> dict[int, int | None]:
    """The invoice each credit note credits (``None`` for one without an invoice)."""
    return {cid: cn.invoice_id for cid, cn in exports.credit_notes_for_export(session, credit_note_ids).items()}


def load_credit_notes(session: Session, credit_note_ids: Iterable[int], keys: Keys) -> dict[int, dict[str, Any]]:
    """``credit_note`` records by credit note id (missing credit notes are absent)."""
    return {cid: {
        "id": keys.credit_note(cn.credit_note_id),
        "number": cn.number,
        "invoice_id": keys.invoice(cn.invoice_id) if cn.invoice_id is not None else None,
        "customer_id": cn.customer_id,
        "salesforce_account_id": cn.salesforce_account_id,
        "currency": cn.currency,
        "issued_on": cn.issued_on,
        "reason": cn.reason or None,
        "net": cn.net,
        "tax": cn.tax,
        "total": cn.total,
        "applied_to_invoice": cn.applied_to_invoice,
        "to_credit_balance": cn.to_credit_balance,
        "status": cn.status,
    } for cid, cn in exports.credit_notes_for_export(session, credit_note_ids).items()}


def load_credit_note_lines(session: Session, credit_note_ids: Iterable[int],
                           keys: Keys) -> dict[int, list[dict[str, Any]]]:
    """``credit_note_line`` records per credit note id, in the order they were written."""
    return {cid: [{
        "id": keys.credit_note_line(ln.line_id),
        "credit_note_id": keys.credit_note(ln.credit_note_id),
        "invoice_line_id": keys.line(ln.invoice_line_id) if ln.invoice_line_id is not None else None,
        "description": ln.description,
        "amount": ln.amount,
        "tax_rate": ln.tax_rate,
        "tax": ln.tax,
    } for ln in lines] for cid, lines in exports.credit_note_lines_for_export(session, credit_note_ids).items()}


# ---------------------------------------------------------------- account summary


def account_summary_record(summary: exports.AccountBillingSummary,
                           churn_risk: tuple[int, str] | None = None) -> dict[str, Any]:
    """The Account summary, with the customer's churn risk when it is scored (``churn_risk``: the
    score and its reasons in one line; empty fields when not scored, docs/intelligence.md)."""
    return {
        "salesforce_account_id": summary.salesforce_account_id,
        "customer_id": summary.customer_id,
        "currency": summary.currency,
        "mrr": summary.mrr,
        "arr": summary.arr,
        "balance": summary.balance,
        "last_invoice_on": summary.last_invoice_on,
        "billing_status": summary.billing_status,
        "billing_ends_on": last_day(summary.ends_before),
        "churn_risk": churn_risk[0] if churn_risk else None,
        "churn_risk_reasons": churn_risk[1] if churn_risk else None,
    }


def load_account_summaries(session: Session, customer_ids: Iterable[str],
                           as_of: date) -> dict[str, dict[str, Any] | None]:
    """``account_summary`` records by customer id (the engine's Account summary as of ``as_of``,
    ``exports.account_summaries``); ``None`` for a customer without a Salesforce Account."""
    summaries = exports.account_summaries(session, customer_ids, as_of)
    risks = churn_summaries(session, list(summaries))
    return {cid: account_summary_record(summary, risks.get(cid)) if summary.salesforce_account_id else None
            for cid, summary in summaries.items()}


# ---------------------------------------------------------------- subscription link


def subscription_link_record(link: exports.SubscriptionLink) -> dict[str, Any] | None:
    """``None`` when the subscription did not come from an Opportunity."""
    opportunity = _opportunity_id(link.external_key)
    if not opportunity:
        return None
    return {"salesforce_opportunity_id": opportunity, "subscription_id": link.subscription_id,
            "status": link.status, "ends_on": last_day(link.ends_before)}


def load_subscription_links(session: Session, subscription_ids: Iterable[str],
                            as_of: date) -> dict[str, dict[str, Any] | None]:
    """``subscription_link`` records by subscription id, status as of ``as_of`` (missing subscriptions
    are absent); ``None`` when the subscription did not come from an Opportunity."""
    return {sid: subscription_link_record(link)
            for sid, link in exports.subscription_links(session, subscription_ids, as_of).items()}


def load_customer_subscription_links(session: Session, customer_ids: Iterable[str],
                                     as_of: date) -> dict[str, dict[str, dict[str, Any]]]:
    """Per customer, the ``subscription_link`` records of its subscriptions that came from an
    Opportunity, by subscription id (what its Account summary refreshes with it)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cid, links in exports.subscription_links_of_customers(session, customer_ids, as_of).items():
        for link in links:
            record = subscription_link_record(link)
            if record is not None:
                out.setdefault(cid, {})[link.subscription_id] = record
    return out


# ---------------------------------------------------------------- subscription records and their items


def subscription_key(keys: Keys, subscription_id: str) -> str:
    """``Billsync_Subscription_Key__c``: ``<installation>-<subscription id>`` (``k3f9x2ab7q-sub-006…``)."""
    return f"{keys.prefix}{subscription_id}"


def subscription_item_key(keys: Keys, item_id: str) -> str:
    """``Billsync_Item_Key__c``: ``<installation>-item-<item id>``."""
    return f"{keys.prefix}item-{item_id}"


def subscription_record(sub: exports.SubscriptionExport, keys: Keys) -> dict[str, Any]:
    return {
        "id": subscription_key(keys, sub.subscription_id),
        "subscription_id": sub.subscription_id,
        "salesforce_account_id": sub.salesforce_account_id,
        "salesforce_opportunity_id": _opportunity_id(sub.external_key),
        "currency": sub.currency,
        "status": sub.status,
        "ends_on": last_day(sub.ends_before),
        "starts_on": sub.starts_on,
        "term_months": sub.term_months,
        "auto_renew": sub.auto_renew,
        "term_ends_on": last_day(sub.term_ends_before),
        "renews_on": sub.renews_on,
        "next_invoice_on": sub.next_invoice_on,
        "mrr": sub.mrr,
        "arr": sub.arr,
    }


def subscription_item_records(sub: exports.SubscriptionExport, keys: Keys) -> list[dict[str, Any]]:
    return [{
        "id": subscription_item_key(keys, item.item_id),
        "subscription_key": subscription_key(keys, sub.subscription_id),
        "item_id": item.item_id,
        "product_code": item.product_code,
        "salesforce_product_id": item.salesforce_product_id,
        "quantity": item.quantity,
        "pricing_model": item.pricing_model,
        "contract_price": item.contract_unit_price,
        "discount_percent": item.discount_percent,
        "currency": sub.currency,
    } for item in sub.items]


def load_subscription_records(session: Session, subscription_ids: Iterable[str], as_of: date,
                              keys: Keys) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]] | None]:
    """``subscription`` records with their ``subscription_item`` records, by subscription id, as of
    ``as_of`` (missing subscriptions are absent); ``None`` for one whose customer has no Salesforce
    Account (nothing to hang it on)."""
    out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]] | None] = {}
    for sid, sub in exports.subscriptions_for_export(session, subscription_ids, as_of).items():
        out[sid] = (subscription_record(sub, keys), subscription_item_records(sub, keys)) \
            if sub.salesforce_account_id else None
    return out
