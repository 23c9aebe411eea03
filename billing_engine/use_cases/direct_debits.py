"""SEPA direct debits: mandates, the export of what is due, booking what was collected, and
returns (docs/payments.md).

- ``create_mandate`` / ``revoke_mandate``: a customer's mandate (its reference, the RUM, signature
  date, IBAN checked by schwifty, BIC, sequence type); at most one active mandate per customer.
- ``export_direct_debits``: every open EUR invoice due on or before the collection date whose
  customer has an active mandate and that was never debited becomes one direct debit of its
  balance, in one export; ``render`` (the connector's pain.008 writer) turns the plan into the
  file, which is kept with the export. ``direct_debits.invoice_id`` is UNIQUE: an invoice is
  never collected twice, whatever runs at the same time.
- ``collect_due_debits``: on the collection date the money is booked: each pending debit
  becomes a payment of its invoice (source ``sepa``, reference its end-to-end id, so booking it
  twice records nothing).
- ``return_direct_debit``: a return or reject (an R-transaction with its reason code) refunds
  the payment, which reopens the invoice, and keeps the reason on it; reasons that end the
  mandate (closed account, no mandate, refusal...) revoke it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.collections import (
    MANDATE_ENDING_REASONS,
    check_mandate_reference,
    check_return_reason,
    check_sequence_type,
    check_signed_on,
    describe_return,
)
from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as store
from billing_engine.storage import database
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage.database import Session
from billing_engine.use_cases.payments import record_payment, refund_payment

#: Where the payments of collected direct debits come from (their reference: the end-to-end id).
SEPA_SOURCE = "sepa"
SEPA_METHOD = "sepa_direct_debit"
SEPA_CURRENCY = "EUR"


def check_iban(value: object, field_name: str = "iban") -> str:
    """An IBAN in its compact form, checked by schwifty (country format, check digits, national
    format where known); it must belong to the SEPA zone."""
    from schwifty import IBAN

    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(field_name, "is required")
    try:
        iban = IBAN(value.strip(), validate_bban=True)
    except ValueError as exc:
        raise InvalidInputError(field_name, f"is not a valid IBAN ({exc})") from None
    if not iban.in_sepa_zone:
        raise InvalidInputError(field_name, f"{iban.country_code} accounts are outside the SEPA zone")
    return str(iban.compact)


def check_bic(value: object, field_name: str = "bic") -> str:
    from schwifty import BIC

    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(field_name, "is required")
    try:
        return str(BIC(value.strip()).compact)
    except ValueError as exc:
        raise InvalidInputError(field_name, f"is not a valid BIC ({exc})") from None


# ---------------------------------------------------------------- mandates


@dataclass(frozen=True)
class MandateView:
    mandate_id: int
    customer_id: str
    reference: str
    signed_on: date
    iban: str
    bic: str | None
    account_holder: str
    sequence_type: str
    status: str
    revoked_on: date | None
    revoked_reason: str
    created_at: datetime


def _view(m: store.Mandate) -> MandateView:
    return MandateView(m.id, m.customer_id, m.reference, m.signed_on, m.iban, m.bic, m.account_holder,
                       m.sequence_type, m.status, m.revoked_on, m.revoked_reason, m.created_at)


def create_mandate(session: Session, customer_id: str, *, reference: object, signed_on: object, iban: object,
                   bic: object = None, account_holder: str | None = None, sequence_type: object = "FRST",
                   today: date, now: datetime) -> MandateView:
    """Record a signed SEPA mandate for a customer billed in euros; every field is checked before
    anything is written. A reference is used once; a customer has at most one active mandate
    (revoke the old one first)."""
    customer = catalog_store.find_customer(session, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    ref = check_mandate_reference(reference)
    signed = check_signed_on(signed_on, today)
    account = check_iban(iban)
    bank = None if bic in (None, "") else check_bic(bic)
    sequence = check_sequence_type(sequence_type)
    holder = (account_holder or customer.name).strip()
    if not holder or len(holder) > 70:
        raise InvalidInputError("account_holder", "must be 1 to 70 characters")
    if customer.currency != SEPA_CURRENCY:
        raise InvalidInputError("customer_id", f"SEPA direct debits collect euros; customer {customer_id} is billed "
                                               f"in {customer.currency}")
    if store.mandate_by_reference(session, ref) is not None:
        raise ConflictError(f"mandate {ref}", "this reference is already recorded")
    if store.active_mandates(session, [customer_id]):
        raise ConflictError(f"customer {customer_id}", "already has an active mandate; revoke it first")
    mandate = store.Mandate(customer_id=customer_id, reference=ref, signed_on=signed, iban=account, bic=bank,
                            account_holder=holder, sequence_type=sequence, status="active", created_at=now)
    session.add(mandate)
    try:
        with session.begin_nested():
            session.flush()
    except database.IntegrityError:
        raise ConflictError(f"mandate {ref}", "a mandate with this reference, or an active one for this "
                                               "customer, was recorded at the same time") from None
    return _view(mandate)


def revoke_mandate(session: Session, mandate_id: int, *, on: date, reason: str) -> MandateView:
    """End a mandate (the customer revoked it, or its account closed): no new debit uses it."""
    mandate = store.mandate_for_update(session, mandate_id)
    if mandate is None:
        raise NotFoundError("mandate", mandate_id)
    if mandate.status == "revoked":
        raise ConflictError(f"mandate {mandate.reference}", f"was already revoked on {mandate.revoked_on}")
    if len(reason or "") > 200:
        raise InvalidInputError("reason", "is longer than 200 characters")
    mandate.status, mandate.revoked_on, mandate.revoked_reason = "revoked", on, (reason or "").strip()
    session.add(mandate)
    session.flush()
    return _view(mandate)


def get_mandate(session: Session, mandate_id: int) -> MandateView:
    mandate = store.mandate_by_id(session, mandate_id)
    if mandate is None:
        raise NotFoundError("mandate", mandate_id)
    return _view(mandate)


def list_mandates(session: Session, *, customer_id: str | None = None, status: str | None = None,
                  after_id: int | None = None, limit: int = 50) -> list[MandateView]:
    return [_view(m) for m in store.list_mandates(session, customer_id=customer_id, status=status,
                                                   after_id=after_id, limit=limit)]


# ---------------------------------------------------------------- the export


@dataclass(frozen=True)
class DebitLine:
    """One direct debit of an export: an invoice's balance, from its customer's mandate."""

    invoice_id: int
    number: str
    customer_id: str
    amount: Decimal
    due_on: date
    mandate_id: int
    mandate_reference: str
    mandate_signed_on: date
    debtor_name: str
    iban: str
    bic: str | None
    sequence_type: str
    end_to_end_id: str
    remittance: str


@dataclass(frozen=True)
class ExportPlan:
    """What a pain.008 file must hold: its message id, the collection date, one batch id per
    sequence type, and the debits."""

    message_id: str
    collect_on: date
    created_at: datetime
    batch_ids: dict[str, str]  # sequence type → PmtInfId
    lines: tuple[DebitLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class ExportResult:
    export_id: int | None  # None: nothing was due
    message_id: str | None
    collect_on: date
    lines: tuple[DebitLine, ...]
    total: Decimal
    document: str | None


def message_id_for(collect_on: date, number: int) -> str:
    """``BILLSYNC-SDD-20261210-0001``: the n-th export for a collection date (Max35)."""
    return f"BILLSYNC-SDD-{collect_on:%Y%m%d}-{number:04d}"


def export_direct_debits(session: Session, collect_on: date, *, render: Callable[[ExportPlan], str],
                         now: datetime) -> ExportResult:
    """Put every due invoice with an active mandate into one export collected on ``collect_on``.

    Due: open, in euros, a balance, due on or before ``collect_on``, never in a direct debit.
    Each becomes one debit of its balance, end-to-end id = its number, with its mandate's sequence
    type (a mandate's first export is FRST, it is RCUR afterwards). ``render`` writes the file;
    nothing is recorded when it raises. With nothing due, nothing is written (``export_id`` None).
    """
    invoices = [inv for inv in store.collectable_invoices(session, collect_on, SEPA_CURRENCY) if inv.balance > 0]
    if not invoices:
        return ExportResult(None, None, collect_on, (), Decimal(0), None)
    mandates = store.active_mandates(session, sorted({inv.customer_id for inv in invoices}))
    lines = tuple(DebitLine(
        invoice_id=inv.id, number=inv.number, customer_id=inv.customer_id, amount=inv.balance, due_on=inv.due_on,
        mandate_id=mandates[inv.customer_id].id, mandate_reference=mandates[inv.customer_id].reference,
        mandate_signed_on=mandates[inv.customer_id].signed_on, debtor_name=mandates[inv.customer_id].account_holder,
        iban=mandates[inv.customer_id].iban, bic=mandates[inv.customer_id].bic,
        sequence_type=mandates[inv.customer_id].sequence_type, end_to_end_id=inv.number,
        remittance=f"Invoice {inv.number} due {inv.due_on.isoformat()}") for inv in invoices)
    message_id = message_id_for(collect_on, store.count_exports_on(session, collect_on) + 1)
    batch_ids = {seq: f"{message_id}-{seq}" for seq in sorted({line.sequence_type for line in lines})}
    plan = ExportPlan(message_id, collect_on, now, batch_ids, lines)
    document = render(plan)
    export_id = database.insert_returning_id(session, store.SepaExport, {
        "message_id": message_id, "collect_on": collect_on, "currency": SEPA_CURRENCY, "transactions": len(lines),
        "total": plan.total, "document": document, "created_at": now})
    database.bulk_insert(session, store.DirectDebit, [{
        "invoice_id": line.invoice_id, "export_id": export_id, "mandate_id": line.mandate_id,
        "customer_id": line.customer_id, "amount": line.amount, "currency": SEPA_CURRENCY,
        "sequence_type": line.sequence_type, "collect_on": collect_on, "end_to_end_id": line.end_to_end_id,
        "batch_id": batch_ids[line.sequence_type], "status": "pending", "created_at": now} for line in lines])
    store.mark_mandates_recurring(session, [m.id for m in mandates.values() if m.sequence_type == "FRST"])
    session.flush()
    return ExportResult(export_id, message_id, collect_on, lines, plan.total, document)


# ---------------------------------------------------------------- booking and returns


@dataclass(frozen=True)
class CollectedDebits:
    on: date
    booked: tuple[tuple[int, str, Decimal], ...] = ()  # (debit id, end-to-end id, amount)


def collect_due_debits(session: Session, on: date, *, now: datetime | None = None) -> CollectedDebits:
    """Book every pending direct debit whose collection date is on or before ``on``: a payment of its
    invoice (source ``sepa``, reference its end-to-end id), received on the collection date."""
    booked = []
    for debit in store.pending_debits_due(session, on):
        _collect(session, debit, now)
        booked.append((debit.id, debit.end_to_end_id, debit.amount))
    session.flush()
    return CollectedDebits(on, tuple(booked))


def collect_debit(session: Session, debit_id: int, *, now: datetime | None = None) -> int | None:
    """Book one pending direct debit (its bank statement shows the money before the collections job
    ran); returns its payment id, or None when it was not pending."""
    debit = store.debit_by_id_for_update(session, debit_id)
    if debit is None:
        raise NotFoundError("direct debit", debit_id)
    if debit.status != "pending":
        return None
    _collect(session, debit, now)
    session.flush()
    return debit.payment_id


def _collect(session: Session, debit: store.DirectDebit, now: datetime | None) -> None:
    debit.status, debit.payment_id = "collected", _book(session, debit, now)
    session.add(debit)


def _book(session: Session, debit: store.DirectDebit, now: datetime | None) -> int:
    """The payment of a collected debit (named invoice; if it was settled meanwhile, the customer's
    oldest open invoices, the rest becoming credit)."""
    def book(invoice_ids: list[int] | None) -> int:
        return record_payment(session, customer_id=debit.customer_id, amount=debit.amount, currency=debit.currency,
                              received_on=debit.collect_on, method=SEPA_METHOD, source=SEPA_SOURCE,
                              external_reference=debit.end_to_end_id, invoice_ids=invoice_ids, now=now).payment_id

    try:
        return book([debit.invoice_id])
    except ConflictError:  # the invoice was paid or voided since the export: the money is still the customer's
        return book(None)


def find_debit(session: Session, end_to_end_id: str) -> store.DirectDebit | None:
    return store.debits_by_end_to_end(session, [end_to_end_id]).get(end_to_end_id)


@dataclass(frozen=True)
class ReturnResult:
    debit_id: int
    invoice_id: int
    reason: str  # "AM04 insufficient funds"
    refund_id: int | None  # None: the debit was rejected before it was booked
    mandate_revoked: bool


def return_direct_debit(session: Session, end_to_end_id: str, *, reason: object, returned_on: date,
                        now: datetime | None = None) -> ReturnResult:
    """A direct debit came back (returned, rejected or refunded to the debtor, with an ISO 20022
    reason code): its payment is refunded, which reopens the invoice; the reason is kept on the
    invoice; a reason that ends the mandate (MANDATE_ENDING_REASONS) revokes it."""
    code = check_return_reason(reason)
    now = ob.changed_at(now, returned_on)
    debit = store.debit_for_update(session, end_to_end_id)
    if debit is None:
        raise NotFoundError("direct debit", end_to_end_id)
    if debit.status == "returned":
        raise ConflictError(f"direct debit {end_to_end_id}", f"was already returned ({debit.return_reason})")
    text = describe_return(code)
    refund_id = None
    if debit.payment_id is not None:
        refund_id = refund_payment(session, debit.payment_id, amount=debit.amount, refunded_on=returned_on,
                                   reason=f"SEPA direct debit returned: {text}", now=now).refund_id
    debit.status, debit.return_reason, debit.returned_on = "returned", text, returned_on
    session.add(debit)
    invoice = invoice_store.find_invoice(session, debit.invoice_id)
    row = store.collection_row(session, invoice, now)
    row.return_reason, row.returned_on, row.updated_at = text, returned_on, now
    session.add(row)
    revoked = False
    if code in MANDATE_ENDING_REASONS:
        mandate = store.mandate_for_update(session, debit.mandate_id)
        if mandate is not None and mandate.status == "active":
            mandate.status, mandate.revoked_on = "revoked", returned_on
            mandate.revoked_reason = f"direct debit {end_to_end_id} returned: {text}"[:200]
            session.add(mandate)
            revoked = True
    session.flush()
    return ReturnResult(debit.id, debit.invoice_id, text, refund_id, revoked)

