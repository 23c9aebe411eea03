"""Billing use cases: bill runs, invoices, credit notes, payments, usage, revenue metrics.

Each use case works inside the caller's ``Session`` (the caller commits, so
outbox rows are written in the same transaction as the change), except
``run_billing``, which owns its transactions (one per batch of customers, with
a per-customer fallback) because it must survive one customer's failure.

Clock: nothing here reads the system clock. ``now`` (tz-aware) is passed in;
when omitted it is midnight UTC of the business date of the call.

The bill run reads charges through a ``ChargeSource`` (Engine I's customers,
subscriptions and ``charges_due``), so this module does not know how charges are
drawn, only how they are invoiced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from billing_engine import outbox as ob
from billing_engine import services as engine_services
from billing_engine.charges import ChargeLine, charges_due, usage_windows
from billing_engine.errors import BillingError, ConflictError, InvalidInputError, NotFoundError
from billing_engine.invoicing import (
    DEFAULT_CREDIT_NOTE_SEQUENCE,
    DEFAULT_INVOICE_SEQUENCE,
    ChargeLike,
    DraftLine,
    InvoiceDraft,
    assemble_invoice,
    build_credit_note,
    check_transition,
    due_on,
    format_number,
)
from billing_engine.money import check_currency, round_money
from billing_engine.payments import (
    OpenItem,
    aging,
    allocate_payment,
    check_amount,
    check_payment,
    payment_status,
    plan_refund,
)
from billing_engine.revenue import (
    BridgeRow,
    CustomerKey,
    ItemMrr,
    Movement,
    month_range,
    previous_month_end,
)
from billing_engine.storage import billing_tables as db
from billing_engine.tax import TaxRate
from billing_engine.usage import check_usage, usage_date

Session = db.Session  # SQLModel's, through the storage module (no ORM import outside storage)
ZERO = Decimal(0)


def _midnight(on: date) -> datetime:
    return datetime.combine(on, time(), UTC)


def _now(now: datetime | None, on: date) -> datetime:
    if now is None:
        return _midnight(on)
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    return now


def _event(topic: str, aggregate_type: str, aggregate_id: object, payload: dict[str, Any],
           created_at: datetime) -> dict[str, Any]:
    event = ob.OutboxEvent(topic, aggregate_type, str(aggregate_id), payload)
    return {"topic": topic, "aggregate_type": aggregate_type, "aggregate_id": str(aggregate_id),
            "payload": event.payload_json(), "coalesce_key": event.coalesce_key, "created_at": created_at,
            "status": ob.STATUS_PENDING, "attempts": 0}


def _summary_event(customer_id: str, created_at: datetime) -> dict[str, Any]:
    # Snapshot topic, coalesced: the push reads the current figures with customer_summary().
    return _event(ob.CUSTOMER_SUMMARY_CHANGED, "customer", customer_id, {"customer_id": customer_id}, created_at)


# ================================================================ bill run


@dataclass(frozen=True, slots=True)
class BillingAccount:
    """What the bill run needs to know about a customer."""

    customer_id: str
    tax_rate: TaxRate
    payment_terms_days: int = 30
    invoice_discount: Decimal = ZERO  # fixed discount on each invoice (same currency as the lines)


class ChargeSource(Protocol):
    """Engine I's side of the bill run.

    ``customers_due``: customers with id > ``after`` (all when None) that may have
    charges due up to ``as_of``, ordered by id, at most ``limit``.
    ``charges_due``: per customer id, the charge lines due up to ``as_of`` that are
    not billed yet (use ``billed_keys_for_subscriptions`` / ``usage_totals`` from
    the billing storage for the already-billed keys and usage quantities).
    Optional ``customer_mrr_on(session, accounts, on) -> {(customer, currency): MRR}``:
    when a source has it, the bill run announces MRR changes (``customer.summary_changed``).
    ``database_charge_source()`` is the ready-made one over the engine's tables.
    """

    def customers_due(self, session: Session, as_of: date, after: str | None,
                      limit: int) -> Sequence[BillingAccount]: ...

    def charges_due(self, session: Session, accounts: Sequence[BillingAccount],
                    as_of: date) -> Mapping[str, Sequence[ChargeLike]]: ...


@dataclass
class BillRunResult:
    as_of: date
    invoices_created: int = 0
    invoices_finalized: int = 0
    credit_notes_issued: int = 0
    customers_billed: int = 0
    customers_skipped: int = 0  # billed concurrently by another run
    failures: dict[str, str] = field(default_factory=dict)


def run_billing(
    engine: Any,
    as_of: date,
    *,
    source: ChargeSource,
    hold_for_review: bool = False,
    batch_size: int = 500,
    now: datetime | None = None,
    sequence: str = DEFAULT_INVOICE_SEQUENCE,
) -> BillRunResult:
    """Bill every customer with charges due up to ``as_of``: one invoice per currency.

    Idempotent (already-billed charge keys are not drawn again, and the UNIQUE
    charge key makes a concurrent duplicate fail). Works in batches of customers
    streamed by id, each batch in one transaction; if a batch fails (a concurrent
    run got there first, or one customer's data is bad) it is redone customer by
    customer in their own transactions, and a bad customer's reason is recorded in
    ``bill_run_errors`` without stopping the run.
    """
    created_at = _now(now, as_of)
    result = BillRunResult(as_of=as_of)
    after: str | None = None
    while True:
        with Session(engine) as session:
            accounts = list(source.customers_due(session, as_of, after, batch_size))
            session.rollback()
        if not accounts:
            break
        after = accounts[-1].customer_id
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                charges = source.charges_due(session, accounts, as_of)
                events = _mrr_changes(session, source, accounts, as_of, created_at)
                stats = _bill_batch(session, accounts, charges, as_of, created_at, hold_for_review, sequence,
                                    events)
            _merge(result, stats)
        except (db.IntegrityError, db.OperationalError, BillingError, ValueError, ArithmeticError, TypeError,
                KeyError):
            # Someone billed part of this batch concurrently, or one customer's data is bad:
            # redo it customer by customer so the others still get billed.
            for account in accounts:
                _bill_one(engine, source, account, as_of, created_at, hold_for_review, sequence, result)
    return result


def _merge(result: BillRunResult, stats: BillRunResult) -> None:
    result.invoices_created += stats.invoices_created
    result.invoices_finalized += stats.invoices_finalized
    result.credit_notes_issued += stats.credit_notes_issued
    result.customers_billed += stats.customers_billed


def _bill_one(engine: Any, source: ChargeSource, account: BillingAccount, as_of: date, created_at: datetime,
              hold: bool, sequence: str, result: BillRunResult) -> None:
    cid = account.customer_id
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            charges = source.charges_due(session, [account], as_of)
            events = _mrr_changes(session, source, [account], as_of, created_at)
            stats = _bill_batch(session, [account], charges, as_of, created_at, hold, sequence, events)
            db.clear_bill_run_error(session, as_of, cid)
        _merge(result, stats)
        if not stats.invoices_created:
            result.customers_skipped += 1
    except (db.IntegrityError, db.OperationalError):
        result.customers_skipped += 1  # another run billed these charges first
    except (BillingError, ValueError, ArithmeticError, TypeError, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        result.failures[cid] = reason
        with Session(engine) as session, session.begin():
            db.record_bill_run_error(session, as_of, cid, reason, created_at)


def _mrr_changes(session: Session, source: Any, accounts: Sequence[BillingAccount], as_of: date,
                 created_at: datetime) -> list[dict[str, Any]]:
    """``customer.summary_changed`` rows for the customers whose MRR on ``as_of`` differs from the
    MRR last announced (a cancellation or renewal taking effect, a change dated in the future);
    the announced MRR is updated in the same transaction. Only for sources that can tell MRR
    (``customer_mrr_on``, see ``ChargeSource``)."""
    mrr_on = getattr(source, "customer_mrr_on", None)
    if mrr_on is None:
        return []
    current = mrr_on(session, accounts, as_of)
    known = db.announced_mrr(session, [a.customer_id for a in accounts])
    changed = []
    for key in sorted(set(current) | set(known)):
        value = current.get(key, round_money(ZERO, key[1]))
        if known.get(key, ZERO) != value:
            changed.append({"customer_id": key[0], "currency": key[1], "mrr": value, "measured_on": as_of})
    db.save_announced_mrr(session, changed)
    return [_summary_event(cid, created_at) for cid in sorted({row["customer_id"] for row in changed})]


def _bill_batch(session: Session, accounts: Sequence[BillingAccount], charges: Mapping[str, Sequence[ChargeLike]],
                as_of: date, created_at: datetime, hold: bool, sequence: str,
                mrr_events: Sequence[dict[str, Any]] = ()) -> BillRunResult:
    stats = BillRunResult(as_of=as_of)
    pending: list[tuple[BillingAccount, list[ChargeLike], InvoiceDraft]] = []
    for account in accounts:
        lines = charges.get(account.customer_id) or ()
        by_currency: dict[str, list[ChargeLike]] = defaultdict(list)
        for line in lines:
            by_currency[line.currency].append(line)
        for currency in sorted(by_currency):
            draft = assemble_invoice(by_currency[currency], currency=currency, tax_rate=account.tax_rate,
                                     invoice_discount=account.invoice_discount)
            if draft.is_empty:
                continue
            pending.append((account, by_currency[currency], draft))
        if by_currency:
            stats.customers_billed += 1
    if not pending or hold:
        db.add_outbox(session, list(mrr_events))
    if not pending:
        return stats
    rows = [_invoice_row(account, draft, as_of, created_at) for account, _, draft in pending]
    if hold:
        ids = db.insert_invoices(session, rows)
        drafts = [draft for _, _, draft in pending]
        cn_ids: list[int | None] = [None] * len(ids)
    else:
        # Finalize in memory and insert the invoices already open: credit applied, numbered, dated.
        balances = db.lock_accounts(session, sorted({(a.customer_id, d.currency) for a, _, d in pending}))
        drafts = []
        for account, lines, draft in pending:
            key = (account.customer_id, draft.currency)
            available = balances.get(key, ZERO)
            if available > 0:
                draft = assemble_invoice(lines, currency=draft.currency, tax_rate=account.tax_rate,
                                         invoice_discount=account.invoice_discount, available_credit=available)
            balances[key] = available - draft.credit_applied + draft.credit_created
            drafts.append(draft)
        numbers = _numbers(session, sequence, as_of.year, len(drafts))
        cn_numbers = _numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, as_of.year,
                              sum(1 for d in drafts if d.credit_note is not None))
        for row, draft, number in zip(rows, drafts, numbers, strict=True):
            row.update(_final_fields(draft, number, as_of, row["payment_terms_days"], created_at))
        ids = db.insert_invoices(session, rows)
        events: list[dict[str, Any]] = []
        credit_changes: list[tuple[Any, ...]] = []
        cn_ids = [
            _finalize_effects(session, invoice_id, row, draft, cn_numbers, as_of, created_at, events, credit_changes)
            for invoice_id, row, draft in zip(ids, rows, drafts, strict=True)
        ]
        for customer_id, currency, amount, kind, refs in credit_changes:
            db.change_credit(session, customer_id, currency, amount, kind, created_at, **refs)
        db.add_outbox(session, events + list(mrr_events))
        stats.invoices_finalized = len(ids)
        stats.credit_notes_issued = sum(1 for c in cn_ids if c is not None)
    line_rows: list[dict[str, Any]] = []
    tax_rows: list[dict[str, Any]] = []
    for invoice_id, draft, cn_id in zip(ids, drafts, cn_ids, strict=True):
        line_rows.extend(_line_rows(invoice_id, draft, cn_id))
        tax_rows.extend({"invoice_id": invoice_id, "tax_percent": g.percent, "net": g.net, "tax": g.tax}
                        for g in draft.tax_groups)
    db.bulk_insert(session, db.InvoiceLine, line_rows)
    db.bulk_insert(session, db.InvoiceTax, tax_rows)
    stats.invoices_created = len(ids)
    return stats


def _numbers(session: Session, sequence: str, year: int, count: int) -> list[str]:
    if count == 0:
        return []
    first = db.next_numbers(session, sequence, year, count)
    return [format_number(sequence, year, first + i) for i in range(count)]


def _final_fields(draft: InvoiceDraft, number: str, issued_on: date, terms: int, now: datetime) -> dict[str, Any]:
    t = draft.totals
    credited = draft.credit_applied + draft.settled_by_credit_note
    return {"status": "paid" if t.total - credited == 0 else "open", "number": number, "issued_on": issued_on,
            "due_on": due_on(issued_on, terms), "subtotal": t.subtotal, "discount": t.discount, "net": t.net,
            "tax": t.tax, "total": t.total, "amount_credited": credited, "finalized_at": now,
            "status_changed_at": now}


def _finalize_effects(session: Session, invoice_id: int, row: Mapping[str, Any], draft: InvoiceDraft,
                      cn_numbers: list[str], issued_on: date, now: datetime, events: list[dict[str, Any]],
                      credit_changes: list[tuple[Any, ...]]) -> int | None:
    """Credit note, credit-balance changes and outbox events of one invoice being finalized."""
    customer_id, currency = row["customer_id"], draft.currency
    cn_id = None
    if draft.credit_note is not None:
        cn_id = _insert_credit_note(session, customer_id, invoice_id, cn_numbers.pop(0), draft.credit_note.reason,
                                    draft.credit_note, issued_on, now, applied=draft.settled_by_credit_note,
                                    to_credit=draft.credit_created, events=events)
    if draft.credit_created:
        credit_changes.append((customer_id, currency, draft.credit_created, "credit_note",
                               {"credit_note_id": cn_id, "invoice_id": invoice_id}))
    if draft.credit_applied:
        credit_changes.append((customer_id, currency, -draft.credit_applied, "applied", {"invoice_id": invoice_id}))
    t = draft.totals
    payload = {"invoice_id": invoice_id, "number": row["number"], "customer_id": customer_id, "currency": currency,
               "issued_on": issued_on, "due_on": row["due_on"], "subtotal": t.subtotal, "discount": t.discount,
               "tax": t.tax, "total": t.total, "amount_credited": row["amount_credited"],
               "amount_due": t.total - row["amount_credited"], "status": row["status"],
               "tax_breakdown": [{"rate": g.percent, "net": g.net, "tax": g.tax} for g in draft.tax_groups],
               "lines": [{"key": ln.charge_key, "description": ln.description, "kind": ln.kind,
                          "starts_on": ln.starts_on, "ends_before": ln.ends_before, "net": ln.net}
                         for ln in draft.lines]}
    events.append(_event(ob.INVOICE_FINALIZED, "invoice", invoice_id, payload, now))
    events.append(_summary_event(customer_id, now))
    return cn_id


def _invoice_row(account: BillingAccount, draft: InvoiceDraft, as_of: date, created_at: datetime) -> dict[str, Any]:
    t = draft.totals
    return {"customer_id": account.customer_id, "payment_terms_days": account.payment_terms_days, "currency": draft.currency, "status": "draft", "bill_run_on": as_of,
            "tax_percent": draft.tax_percent, "tax_reason": draft.tax_reason, "subtotal": t.subtotal,
            "discount": t.discount, "net": t.net, "tax": t.tax, "total": t.total, "amount_credited": ZERO,
            "amount_paid": ZERO, "amount_refunded": ZERO, "created_at": created_at}


def _line_rows(invoice_id: int, draft: InvoiceDraft, credit_note_id: int | None = None) -> list[dict[str, Any]]:
    lines = list(draft.lines) + (list(draft.credit_note.lines) if draft.credit_note else [])
    out = []
    for position, ln in enumerate(lines, start=1):
        is_credit_note_line = draft.credit_note is not None and ln in draft.credit_note.lines
        net = -ln.net if is_credit_note_line else ln.net
        out.append({"invoice_id": invoice_id, "charge_key": ln.charge_key, "position": position,
                    "subscription_id": ln.subscription_id, "item_id": ln.item_id, "product_code": ln.product_code,
                    "product_name": ln.product_name, "kind": ln.kind, "description": ln.description,
                    "starts_on": ln.starts_on, "ends_before": ln.ends_before, "quantity": ln.quantity,
                    "unit_price": ln.unit_price, "gross": -ln.gross if is_credit_note_line else ln.gross,
                    "line_discount": ln.line_discount, "invoice_discount": ln.invoice_discount, "net": net,
                    "tax_percent": ln.tax_percent, "explanation": ln.explanation,
                    "credit_note_id": credit_note_id if is_credit_note_line else None})
    return out


def _redraft(invoice: db.Invoice, lines: Sequence[db.InvoiceLine], available_credit: Decimal) -> InvoiceDraft:
    """Re-assemble a stored draft (deterministic) to apply credit and split off a credit note."""
    charges = [ChargeLine(ln.charge_key, ln.subscription_id, ln.item_id, ln.product_code, ln.product_name,
                          ln.kind, ln.starts_on, ln.ends_before, ln.quantity, ln.unit_price,
                          ln.gross - ln.line_discount, ln.line_discount, invoice.currency, ln.explanation,
                          ln.description)
               for ln in lines]
    invoice_discount = sum((ln.invoice_discount for ln in lines), ZERO)
    rate = TaxRate(invoice.tax_percent, invoice.tax_reason)
    return assemble_invoice(charges, currency=invoice.currency, tax_rate=rate, invoice_discount=invoice_discount,
                            available_credit=available_credit)


@dataclass(frozen=True)
class FinalizedInvoice:
    invoice_id: int
    number: str
    total: Decimal
    amount_due: Decimal
    credit_applied: Decimal
    credit_note_id: int | None


def finalize_invoice(session: Session, invoice_id: int, *, issued_on: date, now: datetime | None = None,
                     sequence: str = DEFAULT_INVOICE_SEQUENCE) -> FinalizedInvoice:
    """draft → open: apply customer credit, split off excess credits, number it, date it, emit events.

    The number is taken in this transaction, so a rollback leaves no gap.
    """
    [result] = _finalize_many(session, [invoice_id], issued_on=issued_on, now=_now(now, issued_on),
                              sequence=sequence)
    return result


def _finalize_many(session: Session, invoice_ids: Sequence[int], *, issued_on: date, now: datetime,
                   sequence: str) -> list[FinalizedInvoice]:
    invoices = db.invoices_by_ids_for_update(session, invoice_ids)
    lines_by_invoice = db.lines_by_invoice(session, invoice_ids)
    for inv in invoices:
        check_transition(inv.status, "open", f"invoice {inv.id}")
    # Lock the credit accounts once per (customer, currency), in a stable order (no deadlock).
    balances = db.lock_accounts(session, sorted({(inv.customer_id, inv.currency) for inv in invoices}))
    drafts = []
    for inv in invoices:
        key = (inv.customer_id, inv.currency)
        available = balances.get(key, ZERO)
        draft = _redraft(inv, lines_by_invoice.get(inv.id, []), available)
        balances[key] = available - draft.credit_applied + draft.credit_created
        drafts.append(draft)
    numbers = _numbers(session, sequence, issued_on.year, len(invoices))
    cn_numbers = _numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, issued_on.year,
                          sum(1 for d in drafts if d.credit_note is not None))
    out: list[Any] = []
    updates: list[Any] = []
    events: list[Any] = []
    credit_changes: list[Any] = []
    for inv, draft, number in zip(invoices, drafts, numbers, strict=True):
        fields = _final_fields(draft, number, issued_on, inv.payment_terms_days, now)
        row = {"customer_id": inv.customer_id, **fields}
        cn_id = _finalize_effects(session, inv.id, row, draft, cn_numbers, issued_on, now, events, credit_changes)
        if cn_id is not None:
            db.mark_lines_credited(session, inv.id, [ln.charge_key for ln in draft.credit_note.lines], cn_id)
        updates.append({"b_id": inv.id, **fields})
        out.append(FinalizedInvoice(inv.id, number, fields["total"], fields["total"] - fields["amount_credited"],
                                    draft.credit_applied, cn_id))
    db.update_invoices(session, updates)
    db.replace_taxes(session, {inv.id: d.tax_groups for inv, d in zip(invoices, drafts, strict=True)})
    for customer_id, currency, amount, kind, refs in credit_changes:
        db.change_credit(session, customer_id, currency, amount, kind, now, **refs)
    db.add_outbox(session, events)
    return out


def _insert_credit_note(session: Session, customer_id: str, invoice_id: int | None, number: str, reason: str,
                        note: Any, issued_on: date, now: datetime, *, applied: Decimal, to_credit: Decimal,
                        events: list[dict[str, Any]]) -> int:
    cn_id = db.insert_returning_id(session, db.CreditNote, {
        "number": number, "customer_id": customer_id, "invoice_id": invoice_id, "currency": note.currency,
        "reason": reason, "issued_on": issued_on, "net": note.net, "tax": note.tax, "total": note.total,
        "applied_to_invoice": applied, "to_credit_balance": to_credit, "created_at": now})
    db.bulk_insert(session, db.CreditNoteLine, [
        {"credit_note_id": cn_id, "charge_key": ln.charge_key, "description": ln.description, "net": ln.net,
         "tax_percent": ln.tax_percent} for ln in note.lines])
    events.append(_event(ob.CREDIT_NOTE_ISSUED, "credit_note", cn_id, {
        "credit_note_id": cn_id, "number": number, "customer_id": customer_id, "invoice_id": invoice_id,
        "currency": note.currency, "issued_on": issued_on, "reason": reason, "net": note.net, "tax": note.tax,
        "total": note.total, "applied_to_invoice": applied, "to_credit_balance": to_credit}, now))
    return cn_id


def _status_event(inv: db.Invoice, old: str, new: str, now: datetime) -> dict[str, Any]:
    return _event(ob.INVOICE_STATUS_CHANGED, "invoice", inv.id, {
        "invoice_id": inv.id, "number": inv.number, "customer_id": inv.customer_id, "from": old, "to": new,
        "balance": inv.balance}, now)


def _get_invoice(session: Session, invoice_id: int) -> db.Invoice:
    inv = db.get_invoice_for_update(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    return inv


def void_invoice(session: Session, invoice_id: int, *, on: date, reason: str = "void",
                 now: datetime | None = None) -> int | None:
    """Void an invoice that has no payment applied; returns the credit note id (None for a draft).

    An open invoice is reversed by a credit note for its total: the part still
    due is cancelled, customer credit that had been applied goes back to the balance.
    """
    now = _now(now, on)
    inv = _get_invoice(session, invoice_id)
    old = inv.status
    check_transition(old, "void", f"invoice {inv.number or inv.id}")
    if inv.amount_paid - inv.amount_refunded != 0:
        raise ConflictError(f"invoice {inv.number}", "has payments applied; refund them or issue a credit note")
    events: list[dict[str, Any]] = []
    cn_id = None
    if old != "draft" and inv.total > 0:
        note = _single_line_note(inv, reason)
        returned = inv.amount_credited
        if returned:
            db.lock_account(session, inv.customer_id, inv.currency)
        number = format_number(DEFAULT_CREDIT_NOTE_SEQUENCE, on.year,
                               db.next_numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, on.year, 1))
        cn_id = _insert_credit_note(session, inv.customer_id, inv.id, number, reason, note, on, now,
                                    applied=inv.balance, to_credit=returned, events=events)
        if returned:
            db.change_credit(session, inv.customer_id, inv.currency, returned, "credit_note", now,
                             credit_note_id=cn_id, invoice_id=inv.id)
    inv.status = "void"
    inv.status_changed_at = now
    session.add(inv)
    session.flush()
    if old != "draft":
        events.append(_status_event(inv, old, "void", now))
        events.append(_summary_event(inv.customer_id, now))
    db.add_outbox(session, events)
    return cn_id


def _single_line_note(inv: db.Invoice, reason: str):
    line = DraftLine(f"void:{inv.id}", "", "", "", "", "adjustment", reason, inv.issued_on or date.min,
                     inv.issued_on or date.min, Decimal(1), inv.net, inv.net, ZERO, ZERO, inv.net, inv.tax_percent)
    return build_credit_note(reason, inv.currency, [(line, inv.net)])


def issue_credit_note(session: Session, invoice_id: int, *, amount: Decimal, reason: str, on: date,
                      now: datetime | None = None) -> int:
    """Credit part of a finalized invoice (an adjustment): ``amount`` is the net credited, before tax.

    Tax is recomputed on the rounded credited amount at the invoice's rate. The
    credit settles the invoice's open balance first; the rest becomes customer credit.
    """
    now = _now(now, on)
    inv = _get_invoice(session, invoice_id)
    if inv.status not in ("open", "paid", "uncollectible"):
        raise ConflictError(f"invoice {inv.number or inv.id}", f"is {inv.status}; only finalized invoices are credited")
    amount = check_amount(amount, inv.currency)
    already = db.credited_net(session, inv.id)
    if already + amount > inv.net:
        raise InvalidInputError("amount", f"credits {already} + {amount} would exceed the invoice net {inv.net}")
    line = DraftLine(f"adjustment:{inv.id}", "", "", "", "", "adjustment", reason, inv.issued_on, inv.issued_on,
                     Decimal(1), amount, amount, ZERO, ZERO, amount, inv.tax_percent)
    note = build_credit_note(reason, inv.currency, [(line, amount)])
    applied = min(note.total, max(inv.balance, ZERO))
    to_credit = note.total - applied
    events: list[dict[str, Any]] = []
    number = format_number(DEFAULT_CREDIT_NOTE_SEQUENCE, on.year,
                           db.next_numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, on.year, 1))
    cn_id = _insert_credit_note(session, inv.customer_id, inv.id, number, reason, note, on, now, applied=applied,
                                to_credit=to_credit, events=events)
    if to_credit:
        db.lock_account(session, inv.customer_id, inv.currency)
        db.change_credit(session, inv.customer_id, inv.currency, to_credit, "credit_note", now,
                         credit_note_id=cn_id, invoice_id=inv.id)
    old = inv.status
    inv.amount_credited += applied
    if inv.balance == 0 and old in ("open", "uncollectible"):
        inv.status = "paid"
        inv.status_changed_at = now
        events.append(_status_event(inv, old, "paid", now))
    session.add(inv)
    events.append(_summary_event(inv.customer_id, now))
    session.flush()
    db.add_outbox(session, events)
    return cn_id


def mark_uncollectible(session: Session, invoice_id: int, *, on: date, now: datetime | None = None) -> None:
    now = _now(now, on)
    inv = _get_invoice(session, invoice_id)
    old = inv.status
    check_transition(old, "uncollectible", f"invoice {inv.number or inv.id}")
    inv.status, inv.status_changed_at = "uncollectible", now
    session.add(inv)
    session.flush()
    db.add_outbox(session, [_status_event(inv, old, "uncollectible", now), _summary_event(inv.customer_id, now)])


# ================================================================ payments


@dataclass(frozen=True)
class PaymentResult:
    payment_id: int
    created: bool  # False: the same (source, reference) was recorded before; nothing changed
    applied: tuple[tuple[int, Decimal], ...]
    unapplied: Decimal


def record_payment(session: Session, *, customer_id: str, amount: object, currency: str, received_on: date,
                   method: str, source: str, external_reference: str, invoice_ids: Sequence[int] | None = None,
                   customer_currencies: Iterable[str] | None = None, now: datetime | None = None) -> PaymentResult:
    """Record a payment and allocate it (named invoices, else oldest open first).

    A repeat of ``(source, external_reference)`` returns the first result and
    changes nothing. Bad input raises before anything is written.
    """
    now = _now(now, received_on)
    for name, text in (("method", method), ("source", source), ("external_reference", external_reference)):
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(name, "is required")
    existing = db.find_payment(session, source, external_reference)
    if existing is not None:
        return _payment_result(session, existing)
    check_currency(currency)
    if customer_currencies is None:
        customer_currencies = db.customer_currencies(session, customer_id)
    value = check_payment(amount, currency, customer_currencies)
    invoices = db.payable_invoices(session, customer_id, None)
    if invoice_ids:
        named = db.invoices_of(session, customer_id, invoice_ids)
        invoices = list({inv.id: inv for inv in [*invoices, *named]}.values())
    items = [OpenItem(inv.id, inv.currency, inv.status, inv.issued_on or date.min, inv.balance, inv.number or "")
             for inv in invoices]
    allocation = allocate_payment(value, currency, items, named=list(invoice_ids) if invoice_ids else None)
    try:
        with session.begin_nested():
            payment_id = db.insert_returning_id(session, db.Payment, {
                "customer_id": customer_id, "currency": currency, "amount": value,
                "unapplied": allocation.unapplied, "received_on": received_on, "method": method, "source": source,
                "external_reference": external_reference, "created_at": now})
    except db.IntegrityError:
        existing = db.find_payment(session, source, external_reference)
        if existing is None:  # pragma: no cover
            raise
        return _payment_result(session, existing)
    db.bulk_insert(session, db.PaymentAllocation, [{"payment_id": payment_id, "invoice_id": i, "amount": a}
                                                    for i, a in allocation.applied])
    by_id = {inv.id: inv for inv in invoices}
    events = [_event(ob.PAYMENT_RECORDED, "payment", payment_id, {
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
            events.append(_status_event(inv, old, "paid", now))
        session.add(inv)
    if allocation.unapplied:
        db.lock_account(session, customer_id, currency)
        db.change_credit(session, customer_id, currency, allocation.unapplied, "overpayment", now,
                         payment_id=payment_id)
    events.append(_summary_event(customer_id, now))
    session.flush()
    db.add_outbox(session, events)
    return PaymentResult(payment_id, True, allocation.applied, allocation.unapplied)


def _payment_result(session: Session, payment: db.Payment) -> PaymentResult:
    allocations = db.payment_allocations(session, payment.id)
    return PaymentResult(payment.id, False, tuple((a.invoice_id, a.amount) for a in allocations), payment.unapplied)


@dataclass(frozen=True)
class RefundResult:
    refund_id: int
    from_credit: Decimal
    reopened: tuple[tuple[int, Decimal], ...]


def refund_payment(session: Session, payment_id: int, *, amount: object, refunded_on: date, reason: str = "",
                   now: datetime | None = None) -> RefundResult:
    """Refund (part of) a payment: first out of its unapplied credit, then reopening what it paid."""
    now = _now(now, refunded_on)
    payment = db.get_payment_for_update(session, payment_id)
    if payment is None:
        raise NotFoundError("payment", payment_id)
    value = check_amount(amount, payment.currency)
    refunds = db.refunds_of(session, payment.id)
    already = sum((r.amount for r in refunds), ZERO)
    reopened_before: dict[int, Decimal] = defaultdict(Decimal)
    for ra in db.refund_allocations_of(session, [r.id for r in refunds]):
        reopened_before[ra.invoice_id] += ra.amount
    allocations = db.payment_allocations(session, payment.id)
    net_allocs = [(a.invoice_id, a.amount - reopened_before.pop(a.invoice_id, ZERO)) for a in reversed(allocations)]
    balance = db.lock_account(session, payment.customer_id, payment.currency)
    unapplied_left = payment.unapplied - sum((r.from_credit for r in refunds), ZERO)
    plan = plan_refund(value, payment_amount=payment.amount, already_refunded=already,
                       unapplied_available=min(unapplied_left, balance),
                       allocations_newest_first=[(i, a) for i, a in net_allocs if a > 0])
    refund_id = db.insert_returning_id(session, db.Refund, {
        "payment_id": payment.id, "customer_id": payment.customer_id, "currency": payment.currency,
        "amount": value, "from_credit": plan.from_credit, "refunded_on": refunded_on, "reason": reason,
        "created_at": now})
    db.bulk_insert(session, db.RefundAllocation, [{"refund_id": refund_id, "invoice_id": i, "amount": a}
                                                   for i, a in plan.reopened])
    events = [_event(ob.PAYMENT_REFUNDED, "payment", payment.id, {
        "refund_id": refund_id, "payment_id": payment.id, "customer_id": payment.customer_id,
        "currency": payment.currency, "amount": value, "refunded_on": refunded_on, "reason": reason}, now)]
    if plan.from_credit:
        db.change_credit(session, payment.customer_id, payment.currency, -plan.from_credit, "refund", now,
                         payment_id=payment.id, refund_id=refund_id)
    for invoice_id, reopened in plan.reopened:
        inv = _get_invoice(session, invoice_id)
        old = inv.status
        inv.amount_refunded += reopened
        if old == "paid" and inv.balance > 0:
            inv.status, inv.status_changed_at = "open", now
            events.append(_status_event(inv, old, "open", now))
        session.add(inv)
    events.append(_summary_event(payment.customer_id, now))
    session.flush()
    db.add_outbox(session, events)
    return RefundResult(refund_id, plan.from_credit, plan.reopened)


# ================================================================ read side: balances


@dataclass(frozen=True)
class CustomerSummary:
    customer_id: str
    currency: str
    open_balance: Decimal  # Σ balances of open / uncollectible invoices
    credit_balance: Decimal
    aging: dict[str, Decimal]
    overdue_invoices: int


def invoice_payment_status(session: Session, invoice_id: int, as_of: date) -> str | None:
    inv = db.find_invoice(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    return payment_status(status=inv.status, total=inv.total, paid=inv.amount_paid, credited=inv.amount_credited,
                          refunded=inv.amount_refunded, due_on=inv.due_on, as_of=as_of)


def customer_summary(session: Session, customer_id: str, as_of: date) -> list[CustomerSummary]:
    """Balance, credit and aging per currency (what ``customer.summary_changed`` pushes)."""
    invoices = db.unlocked_payable_invoices(session, customer_id)
    credits = db.credit_balances(session, customer_id)
    out = []
    for currency in sorted({inv.currency for inv in invoices} | set(credits)):
        mine = [inv for inv in invoices if inv.currency == currency]
        out.append(CustomerSummary(
            customer_id, currency, sum((inv.balance for inv in mine), ZERO), credits.get(currency, ZERO),
            aging(((inv.due_on, inv.balance) for inv in mine), as_of),
            sum(1 for inv in mine if inv.balance > 0 and inv.due_on < as_of)))
    return out


# ================================================================ usage


@dataclass(frozen=True)
class UsageResult:
    usage_id: int
    created: bool


def record_usage(session: Session, *, subscription_id: str, item_id: str, quantity: object, occurred_at: datetime, source: str,
                 idempotency_key: str, timezone: str = "UTC", now: datetime | None = None) -> UsageResult:
    """Store a usage record once per (source, idempotency key); a resent record is a no-op."""
    usage = check_usage(item_id, quantity, occurred_at, source, idempotency_key)
    now = now or occurred_at.astimezone(UTC)
    existing = db.find_usage(session, source, idempotency_key)
    if existing is not None:
        return UsageResult(existing.id, False)
    try:
        with session.begin_nested():
            usage_id = db.insert_returning_id(session, db.UsageRecord, {
                "subscription_id": subscription_id, "subscription_item_id": usage.item_id, "quantity": usage.quantity, "occurred_at": occurred_at,
                "occurred_on": usage_date(occurred_at, timezone), "source": source,
                "idempotency_key": idempotency_key, "recorded_at": now})
    except db.IntegrityError:
        existing = db.find_usage(session, source, idempotency_key)
        if existing is None:  # pragma: no cover
            raise
        return UsageResult(existing.id, False)
    return UsageResult(usage_id, True)


def usage_quantities(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                     before: date, period_start_for: Callable[[str, date], date]) -> dict[tuple[str, date], Decimal]:
    """Σ recorded usage of a subscription per (item, period start) for charges_due."""
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, on, quantity in db.usage_totals(session, subscription_id, item_ids, on_or_after, before):
        key = (item_id, period_start_for(item_id, on))
        totals[key] = totals.get(key, ZERO) + quantity
    return totals


# ================================================================ revenue metrics


class MrrSource(Protocol):
    """Engine I's side of the metrics: recurring item versions.

    Each yields ``(ItemMrr, starts_on, ends_before)``: the item's normalised monthly
    amount after discounts, valid on dates in ``[starts_on, ends_before)``
    (``ends_before`` None = open-ended). Cancellations end at the end of the paid period.
    """

    def recurring_versions(self, session: Session, until: date) -> Iterable[tuple[ItemMrr, date, date | None]]: ...


def mrr_snapshots(versions: Iterable[tuple[ItemMrr, date, date | None]],
                  dates: Sequence[date]) -> list[dict[CustomerKey, Decimal]]:
    """Rounded customer MRR at each date (pure; one pass over the versions)."""
    import bisect

    order = sorted(range(len(dates)), key=lambda i: dates[i])
    sorted_dates = [dates[i] for i in order]
    raw: list[dict[CustomerKey, Decimal]] = [defaultdict(Decimal) for _ in dates]
    for item, starts_on, ends_before in versions:
        lo = bisect.bisect_left(sorted_dates, starts_on)
        hi = len(sorted_dates) if ends_before is None else bisect.bisect_left(sorted_dates, ends_before)
        key = (item.customer_id, item.currency)
        for j in range(lo, hi):
            raw[order[j]][key] += item.mrr
    return [{key: round_money(value, key[1]) for key, value in snap.items() if value} for snap in raw]


def mrr_as_of(session: Session, on: date, *, source: MrrSource) -> dict[CustomerKey, Decimal]:
    [snapshot] = mrr_snapshots(source.recurring_versions(session, on), [on])
    return snapshot


def mrr_bridge(session: Session, from_month: str, to_month: str, *, source: MrrSource,
               collect_movements: bool = True) -> tuple[list[BridgeRow], list[Movement]]:
    """The MRR bridge month by month (measured at month ends) and the customer movements.

    Opening = MRR at the end of the month before ``from_month``. A customer with MRR > 0
    at an earlier month end counts as reactivated, not new. One pass over the versions,
    one customer at a time: ``source.recurring_versions`` must yield each customer's
    versions together (e.g. ordered by customer id). Without movements, a source with
    ``grouped_versions`` (``DatabaseMrrSource``) lets customers with identical histories be
    counted once and weighted: the same rows, in time proportional to the distinct histories.
    """
    import bisect

    from billing_engine.revenue import bridge_from_series, month_end

    months = month_range(from_month, to_month)
    opening_on = previous_month_end(from_month)
    dates = [opening_on] + [d for _, d in months]
    labels = [label for label, _ in months]

    width = len(dates)

    zeros: dict[str, Decimal] = {}

    def values_of(segments: list[tuple[int, int, Decimal]], currency: str) -> list[Decimal]:
        if all(lo == 0 and hi == width for lo, hi, _ in segments):  # the usual case: one steady amount
            return _rounded([sum((m for _, _, m in segments), ZERO)], currency) * width
        if len(segments) == 1:  # one amount from one month end to another
            lo, hi, mrr = segments[0]
            zero = zeros.get(currency)
            if zero is None:
                zero = zeros[currency] = round_money(ZERO, currency)
            return [zero] * lo + _rounded([mrr], currency) * (hi - lo) + [zero] * (width - hi)
        values = [ZERO] * width
        for lo, hi, mrr in segments:
            for j in range(lo, hi):
                values[j] += mrr
        return _rounded(values, currency)

    def add(segments: list[tuple[int, int, Decimal]], item: ItemMrr, starts_on: date,
            ends_before: date | None) -> bool:
        """Add one version's segment; True when it had MRR > 0 at a month end before the opening date."""
        lo = bisect.bisect_left(dates, starts_on)
        hi = width if ends_before is None else bisect.bisect_left(dates, ends_before)
        if lo < hi:
            segments.append((lo, hi, item.mrr))
        if starts_on < opening_on and item.mrr > 0:
            first_end = month_end(starts_on.year, starts_on.month)
            if first_end < opening_on and (ends_before is None or first_end < ends_before):
                return True
        return False

    def per_customer(versions: Iterable[tuple[ItemMrr, date, date | None]]) -> Iterable[tuple[Any, ...]]:
        done: set[CustomerKey] = set()
        current: CustomerKey | None = None
        segments: list[tuple[int, int, Decimal]] = []
        had = False
        for item, starts_on, ends_before in versions:
            key = (item.customer_id, item.currency)
            if key != current:
                if current is not None:
                    yield current, had, values_of(segments, current[1])
                    done.add(current)
                if key in done:
                    raise ValueError(f"recurring_versions must group each customer's versions ({key[0]})")
                current, segments, had = key, [], False
            had = add(segments, item, starts_on, ends_before) or had
        if current is not None:
            yield current, had, values_of(segments, current[1])

    grouped_versions = None if collect_movements else getattr(source, "grouped_versions", None)
    if grouped_versions is None:
        series = per_customer(source.recurring_versions(session, dates[-1]))
    else:
        # Customers with the same single plain subscription have the same values: one series,
        # weighted by their number (same sums, exactly: Decimal sums and products are exact here).
        groups, others = grouped_versions(session, dates[-1])

        def weighted() -> Iterable[tuple[Any, ...]]:
            for versions, n in groups:
                for key, had, values in per_customer(versions):
                    yield key, had, values, n
            yield from per_customer(others)

        series = weighted()
    moves, rows = bridge_from_series(labels, series, collect_movements=collect_movements)
    return rows, moves


def _rounded(values: list[Decimal], currency: str) -> list[Decimal]:
    quantum = round_money(ZERO, currency)  # 0.00 / 0 / 0.000: the currency's minor unit
    return [v.quantize(quantum, ROUND_HALF_UP) for v in values]


def mrr_bridge_rows(session: Session, from_month: str, to_month: str, *, source: MrrSource) -> list[dict[str, str]]:
    """Rows for ``billsync metrics mrr --from --to [--csv]``: strings, exact decimals."""
    rows, _ = mrr_bridge(session, from_month, to_month, source=source, collect_movements=False)
    return [row.as_row() for row in rows]


def usage_revenue(session: Session, from_on: date, before: date) -> dict[str, Decimal]:
    """Invoiced usage (net, before tax) per currency for lines in finalized invoices in the range."""
    return db.usage_revenue(session, from_on, before)


# ================================================================ sources over Engine I's domain


def account_for(customer: Any, default_tax_percent: Decimal = ZERO,
                invoice_discount: Decimal = ZERO) -> BillingAccount:
    """A ``BillingAccount`` from ``billing_engine.customers.Customer``."""
    percent = customer.tax_rate(default_tax_percent)
    reason = customer.tax_exempt_reason or ""
    rate = TaxRate.exempt(reason) if reason else TaxRate(percent)
    return BillingAccount(customer.customer_id, rate, customer.payment_terms_days, invoice_discount)


class SubscriptionChargeSource:
    """A ``ChargeSource`` over Engine I's ``Subscription`` objects and ``charges.charges_due``.

    ``load_accounts(session, as_of, after, limit)`` lists customers by id;
    ``load_subscriptions(session, customer_ids)`` returns their subscriptions.
    Already-billed lines and recorded usage come from the billing tables (one query
    each per batch). It also tells each customer's MRR (``customer_mrr_on``) from the
    subscriptions of the batch, so the bill run announces MRR changes.
    """

    def __init__(self, load_accounts: Callable[[Session, date, str | None, int], Sequence[BillingAccount]],
                 load_subscriptions: Callable[[Session, Sequence[str]], Sequence[Any]]):
        self.load_accounts = load_accounts
        self.load_subscriptions = load_subscriptions
        self._batch: tuple[tuple[str, ...], list[Any]] = ((), [])

    def customers_due(self, session: Session, as_of: date, after: str | None,
                      limit: int) -> Sequence[BillingAccount]:
        return self.load_accounts(session, as_of, after, limit)

    def _subscriptions(self, session: Session, accounts: Sequence[BillingAccount]) -> list[Any]:
        ids = tuple(a.customer_id for a in accounts)
        if self._batch[0] != ids:
            self._batch = (ids, list(self.load_subscriptions(session, list(ids))))
        return self._batch[1]

    def charges_due(self, session: Session, accounts: Sequence[BillingAccount],
                    as_of: date) -> Mapping[str, Sequence[ChargeLine]]:
        self._batch = ((), [])  # a new transaction: load afresh
        subs = [s for s in self._subscriptions(session, accounts) if s.starts_on <= as_of]
        billed = db.billed_lines_for_subscriptions(session, [s.subscription_id for s in subs])
        metered = [s for s in subs if _has_usage(s, as_of)]
        records = db.usage_records_for_subscriptions(session, [s.subscription_id for s in metered], as_of) \
            if metered else {}
        out: dict[str, list[ChargeLine]] = defaultdict(list)
        for sub in subs:
            sid = sub.subscription_id
            usage = _subscription_usage(session, sub, as_of, records.get(sid, [])) if sid in records else None
            out[sub.customer_id].extend(charges_due(sub, as_of, billed.get(sid, ()), usage))
        return out

    def customer_mrr_on(self, session: Session, accounts: Sequence[BillingAccount],
                        on: date) -> dict[CustomerKey, Decimal]:
        """Rounded MRR per (customer, currency) on ``on`` (customers without MRR are left out)."""
        subs = self._subscriptions(session, accounts)
        [snapshot] = mrr_snapshots((v for s in subs for v in subscription_mrr_versions(s, on)), [on])
        return snapshot


def _has_usage(sub: Any, as_of: date) -> bool:
    return any(item.price.charge_type == "usage" for v in sub.versions(as_of) for item in v.items.values())


def _subscription_usage(session: Session, sub: Any, as_of: date,
                        records: Sequence[tuple[str, date, Decimal]] | None = None) -> dict[tuple[str, date], Decimal]:
    """Σ recorded usage per (item, usage window start) of one subscription, up to ``as_of``.

    A record falls in the window ``usage_windows`` reports for its item and day (a
    record on a day its item was not on the subscription goes to the anchored billing
    period containing the day, clamped to the subscription's start). ``records``:
    ``(item id, occurred_on, quantity)``, read from the usage table when not given.
    """
    from billing_engine.periods import period_containing

    item_ids = sorted({i.item_id for v in sub.versions(as_of) for i in v.items.values()
                       if i.price.charge_type == "usage"})
    if records is None:
        records = db.usage_totals(session, sub.subscription_id, item_ids, sub.starts_on, as_of)
    records = [r for r in records if r[1] >= sub.starts_on and r[0] in item_ids]
    if not records:
        return {}
    windows: dict[str, list[Any]] = defaultdict(list)
    for item_id, window in usage_windows(sub, as_of):
        windows[item_id].append(window)
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, on, quantity in records:
        start = next((w.starts_on for w in windows.get(item_id, ()) if w.starts_on <= on < w.ends_before), None)
        if start is None:
            start = max(period_containing(sub.billing_anchor_on, sub.interval, on).starts_on, sub.starts_on)
        totals[(item_id, start)] = totals.get((item_id, start), ZERO) + quantity
    return totals


class DatabaseChargeSource(SubscriptionChargeSource):
    """The bill run's ``ChargeSource`` over the engine's own tables.

    Customers with a subscription started by the bill-run date come as ``BillingAccount``
    rows in id order, a page at a time (``after``/``limit``), taxed at their rate (an
    exempt customer at 0 % with its reason; no rate: ``default_tax_percent``). Their
    subscriptions load in three queries per batch (subscriptions, items, amendments;
    prices once per run), not one per subscription. Make one per run
    (``database_charge_source()``): it caches the catalog prices it read.
    """

    def __init__(self, default_tax_percent: Decimal = ZERO):
        self.default_tax_percent = default_tax_percent
        self._prices: dict = {}
        self._rates: dict[tuple[Any, Any], TaxRate] = {}
        super().__init__(self._load_accounts, self._load_subscriptions)

    def _rate(self, percent: Decimal | None, exempt_reason: str | None) -> TaxRate:
        key = (percent, exempt_reason)
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = TaxRate.exempt(exempt_reason) if exempt_reason else \
                TaxRate(percent if percent is not None else self.default_tax_percent)
        return rate

    def _load_accounts(self, session: Session, as_of: date, after: str | None, limit: int) -> list[BillingAccount]:
        return [BillingAccount(row.id, self._rate(row.tax_rate_percent, row.tax_exempt_reason),
                               row.payment_terms_days)
                for row in engine_services.customers_page(session, after=after, limit=limit, starts_by=as_of)]

    def _load_subscriptions(self, session: Session, customer_ids: Sequence[str]) -> list[Any]:
        return engine_services.subscriptions_of_customers(session, customer_ids, price_cache=self._prices)


def database_charge_source(default_tax_percent: Decimal = ZERO) -> DatabaseChargeSource:
    """A ready-made ``ChargeSource`` reading customers and subscriptions from the database."""
    return DatabaseChargeSource(default_tax_percent)


def bill_customers(engine: Any, as_of: date, *, hold_for_review: bool = False, now: datetime | None = None,
                   default_tax_percent: Decimal = ZERO, batch_size: int = 500) -> BillRunResult:
    """The bill run over the database: every customer's charges due up to ``as_of`` invoiced
    (finalized, or held as drafts), MRR changes announced. Owns its transactions (``run_billing``)."""
    return run_billing(engine, as_of, source=database_charge_source(default_tax_percent),
                       hold_for_review=hold_for_review, batch_size=batch_size, now=now)


_MONTHLY_CACHE: dict[tuple[Any, ...], Decimal] = {}


def item_monthly_amount(item: Any, items: Mapping[str, Any]) -> Decimal | None:
    """Normalised monthly amount of a recurring item after its discount (None if not recurring).

    A percent_of item is its percent of the covered recurring items' monthly amounts
    in the same version (so it follows their quantity and discounts).
    """
    from billing_engine.charges import rate_item
    from billing_engine.revenue import monthly_amount

    price = item.price
    if price.charge_type != "recurring" or price.interval is None:
        return None
    if price.terms.model == "percent_of":
        covered = set(price.terms.covered_product_codes)
        base = sum((item_monthly_amount(other, items) or ZERO for other in items.values()
                    if other.price.product.code in covered and other.price.terms.model != "percent_of"), ZERO)
        return base * price.terms.percent / 100
    key = (price.price_id, item.quantity, item.contract_unit_price, item.discount_percent, item.discount_amount)
    cached = _MONTHLY_CACHE.get(key)
    if cached is not None:
        return cached
    full = rate_item(item).amount
    if item.discount_percent:
        full -= full * item.discount_percent / 100
    elif item.discount_amount:
        full = max(full - item.discount_amount, ZERO)
    value = monthly_amount(full, str(price.interval.value))
    if len(_MONTHLY_CACHE) > 50000:
        _MONTHLY_CACHE.clear()
    _MONTHLY_CACHE[key] = value  # same price, quantity, contract price and discount: same amount
    return value


class SubscriptionMrrSource:
    """An ``MrrSource`` over Engine I's ``Subscription`` objects (``load(session)`` returns them all;
    Engine I's storage should stream them)."""

    def __init__(self, load: Callable[[Session], Iterable[Any]]):
        self.load = load

    def recurring_versions(self, session: Session, until: date) -> Iterable[tuple[ItemMrr, date, date | None]]:
        for sub in self.load(session):
            yield from subscription_mrr_versions(sub, until)


def subscription_mrr_versions(sub: Any, until: date) -> Iterable[tuple[ItemMrr, date, date | None]]:
    end = sub.ends_before
    versions = sub.versions(until)
    for index, version in enumerate(versions):
        starts = version.effective_on
        stops = versions[index + 1].effective_on if index + 1 < len(versions) else end
        if end is not None and stops is not None:
            stops = min(stops, end)
        if stops is not None and stops <= starts:
            continue
        for item in version.items.values():
            monthly = item_monthly_amount(item, version.items)
            if monthly:
                yield ItemMrr(sub.customer_id, sub.subscription_id, item.item_id, sub.currency, monthly), starts, stops


class DatabaseMrrSource:
    """An ``MrrSource`` over the engine's tables, streamed a batch of customers at a time, each
    customer's versions together (what ``mrr_bridge`` needs), in flat memory.

    A subscription without amendments whose items never change in the range (no uplifted
    renewal before ``until``) is read as plain rows and yields one version for the whole
    subscription (``item_id`` ``"*"``: the sum of its items' MRR); the others are loaded
    as ``Subscription`` histories and yield one version per item.
    """

    def __init__(self, batch_size: int = 2000):
        self.batch_size = batch_size

    def recurring_versions(self, session: Session, until: date) -> Iterable[tuple[ItemMrr, date, date | None]]:
        prices: dict = {}
        amounts: dict[tuple[Any, ...], Decimal] = {}
        after = None
        while True:
            page = engine_services.customers_page(session, after=after, limit=self.batch_size)
            if not page:
                return
            after = page[-1].id
            yield from self._versions_of(session, [r.id for r in page], until, prices, amounts)

    def grouped_versions(self, session: Session, until: date) -> tuple[
            Iterable[tuple[list[tuple[ItemMrr, date, date | None]], int]],
            Iterable[tuple[ItemMrr, date, date | None]]]:
        """``(groups, others)`` for aggregate figures (the bridge without movements), in flat memory:

        ``groups``: ``(versions of one customer, n)``: that customer stands for ``n`` customers whose
        only subscription has no amendments and the same terms (currency, start, term, items), so
        the same MRR on every date; ``others``: every other customer's versions, as
        ``recurring_versions`` yields them (one customer at a time, by id).
        """
        prices: dict = {}
        amounts: dict[tuple[Any, ...], Decimal] = {}
        return (self._group_versions(session, until, prices, amounts),
                self._other_versions(session, until, prices, amounts))

    def _group_versions(self, session: Session, until: date, prices: dict,
                        amounts: dict) -> Iterable[tuple[list[tuple[ItemMrr, date, date | None]], int]]:
        weights = engine_services.plain_subscription_groups(session)  # one (id, n) per group
        for start in range(0, len(weights), self.batch_size):
            chunk = weights[start:start + self.batch_size]
            versions: dict[str, list[tuple[ItemMrr, date, date | None]]] = defaultdict(list)
            for version in self._versions_of(session, [cid for cid, _ in chunk], until, prices, amounts):
                versions[version[0].customer_id].append(version)
            for cid, n in chunk:
                if versions.get(cid):
                    yield versions[cid], n

    def _other_versions(self, session: Session, until: date, prices: dict,
                        amounts: dict) -> Iterable[tuple[ItemMrr, date, date | None]]:
        after = None
        while True:
            ids = engine_services.other_subscription_customers_page(session, after=after, limit=self.batch_size)
            if not ids:
                return
            after = ids[-1]
            yield from self._versions_of(session, ids, until, prices, amounts)

    def _versions_of(self, session: Session, customer_ids: Sequence[str], until: date, prices: dict,
                     amounts: dict) -> Iterable[tuple[ItemMrr, date, date | None]]:
        from billing_engine.periods import add_months

        subs, item_rows = engine_services.subscription_terms_of_customers(session, customer_ids)
        items: dict[str, list[Any]] = defaultdict(list)
        for row in item_rows:
            items[row[0]].append(row)
        engine_services.load_prices(session, {row[2] for row in item_rows}, prices)
        histories = {}
        complex_ids = [sub.id for sub in subs if sub.amended or (
            sub.renewal_uplift_percent and sub.auto_renew and sub.term_months is not None
            and add_months(sub.starts_on, sub.term_months) <= until)]
        if complex_ids:
            histories = {h.subscription_id: h for h in engine_services.subscriptions_of_customers(
                session, (), subscription_ids=complex_ids, price_cache=prices)}
        for sub in subs:
            history = histories.get(sub.id)
            if history is not None:
                yield from subscription_mrr_versions(history, until)
                continue
            terms = tuple(tuple(row[2:]) for row in items.get(sub.id, ()))
            mrr = amounts.get(terms)
            if mrr is None:
                mrr = amounts[terms] = _subscription_monthly_amount(terms, prices)
            if mrr:
                ends = None if sub.auto_renew or sub.term_months is None else \
                    add_months(sub.starts_on, sub.term_months)
                yield ItemMrr(sub.customer_id, sub.id, "*", sub.currency, mrr), sub.starts_on, ends


class _ItemTerms:
    """The fields of a ``SubscriptionItem`` the MRR calculation reads (rows of the fast path)."""

    __slots__ = ("price", "quantity", "contract_unit_price", "discount_percent", "discount_amount")

    def __init__(self, price, quantity, contract_unit_price, discount_percent, discount_amount):
        self.price, self.quantity, self.contract_unit_price = price, quantity, contract_unit_price
        self.discount_percent, self.discount_amount = discount_percent, discount_amount


def _subscription_monthly_amount(terms: tuple[tuple[Any, ...], ...], prices: Mapping[str, Any]) -> Decimal:
    from billing_engine.storage.columns import to_decimal_value

    items = {str(n): _ItemTerms(prices[t[0]], *(to_decimal_value(v) for v in t[1:])) for n, t in enumerate(terms)}
    return sum((item_monthly_amount(item, items) or ZERO for item in items.values()), ZERO)


def database_mrr_source(batch_size: int = 2000) -> DatabaseMrrSource:
    """A ready-made ``MrrSource`` reading subscriptions from the database."""
    return DatabaseMrrSource(batch_size)


def mrr_bridge_report(session_or_engine: Any, from_month: str, to_month: str) -> list[dict[str, str]]:
    """The MRR bridge per month and currency from the database: rows of exact decimal strings
    (``month, currency, opening, new, expansion, reactivation, contraction, churn, closing, arr,
    customers``). Takes a ``Session`` or an engine (then reads in its own session)."""
    if isinstance(session_or_engine, Session):
        return mrr_bridge_rows(session_or_engine, from_month, to_month, source=database_mrr_source())
    with Session(session_or_engine) as session:
        return mrr_bridge_rows(session, from_month, to_month, source=database_mrr_source())


def customer_mrr(session: Session, customer_id: str, on: date) -> Decimal:
    """The customer's MRR on ``on``: Σ item MRR rounded half up once, in the customer's currency
    (``Decimal("0.00")`` for none; rules "Revenue metrics")."""
    currency = engine_services.get_customer(session, customer_id).currency
    return _customer_mrr(engine_services.subscriptions_of_customers(session, [customer_id]), customer_id,
                         currency, on)


def _customer_mrr(subs: Sequence[Any], customer_id: str, currency: str, on: date) -> Decimal:
    [snapshot] = mrr_snapshots((v for s in subs for v in subscription_mrr_versions(s, on)), [on])
    return snapshot.get((customer_id, currency), round_money(ZERO, currency))


BILLING_STATUSES = ("active", "past_due", "cancelled", "none")


@dataclass(frozen=True)
class AccountBillingSummary:
    """What the Account push writes to Salesforce for a customer, as of a date.

    ``balance``: what the customer owes (Σ balances of open and uncollectible invoices);
    ``credit_balance``: customer credit not yet used; ``billing_status``: ``past_due`` when
    an invoice with a balance is past its due date, else ``active`` while a subscription
    runs or is about to start, ``cancelled`` when every subscription has ended, ``none``
    without subscriptions.
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

    def as_payload(self) -> dict[str, str | None]:
        """Strings for JSON (exact decimals, ISO dates)."""
        return {"customer_id": self.customer_id, "currency": self.currency, "mrr": str(self.mrr),
                "arr": str(self.arr), "balance": str(self.balance), "credit_balance": str(self.credit_balance),
                "overdue_invoices": str(self.overdue_invoices),
                "last_invoice_on": self.last_invoice_on.isoformat() if self.last_invoice_on else None,
                "billing_status": self.billing_status, "as_of": self.as_of.isoformat()}


def account_billing_summary(session: Session, customer_id: str, as_of: date) -> AccountBillingSummary:
    """Everything the Account push needs (MRR, ARR, balance, last invoice, billing status, currency)."""
    from billing_engine.subscriptions import SubscriptionStatus

    currency = engine_services.get_customer(session, customer_id).currency
    subs = engine_services.subscriptions_of_customers(session, [customer_id])
    mrr = _customer_mrr(subs, customer_id, currency, as_of)
    invoices = [inv for inv in db.unlocked_payable_invoices(session, customer_id) if inv.currency == currency]
    overdue = sum(1 for inv in invoices if inv.balance > 0 and inv.due_on is not None and inv.due_on < as_of)
    if not subs:
        status = "none"
    elif overdue:
        status = "past_due"
    elif any(s.status_on(as_of) is not SubscriptionStatus.ENDED for s in subs):
        status = "active"
    else:
        status = "cancelled"
    return AccountBillingSummary(
        customer_id=customer_id, currency=currency, mrr=mrr, arr=mrr * 12,
        balance=round_money(sum((inv.balance for inv in invoices), ZERO), currency),
        credit_balance=db.credit_balances(session, customer_id).get(currency, round_money(ZERO, currency)),
        overdue_invoices=overdue, last_invoice_on=db.last_invoice_on(session, customer_id),
        billing_status=status, as_of=as_of)


__all__ = [
    "BillingAccount", "ChargeSource", "BillRunResult", "run_billing", "finalize_invoice", "void_invoice",
    "issue_credit_note", "mark_uncollectible", "record_payment", "refund_payment", "PaymentResult",
    "RefundResult", "customer_summary", "CustomerSummary", "invoice_payment_status", "record_usage",
    "usage_quantities", "MrrSource", "mrr_snapshots", "mrr_as_of", "mrr_bridge", "mrr_bridge_rows",
    "usage_revenue", "FinalizedInvoice", "SubscriptionChargeSource", "SubscriptionMrrSource", "account_for",
    "subscription_mrr_versions", "item_monthly_amount", "DatabaseChargeSource", "database_charge_source",
    "bill_customers", "DatabaseMrrSource", "database_mrr_source", "mrr_bridge_report", "customer_mrr",
    "AccountBillingSummary", "account_billing_summary", "BILLING_STATUSES",
]
