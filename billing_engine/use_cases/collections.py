"""Collection use cases: overdue invoices, dunning, each customer's dunning profile, late-payment
charges, and where an invoice stands in collection (docs/payments.md).

- ``mark_overdue_invoices``: every open invoice with a balance whose due date has passed is
  marked overdue once (the day after its due date), with an ``invoice.overdue`` event (the push
  writes its payment status, ``overdue``, the same day) and its customer's Account summary
  (the Account shows ``past_due``: docs/billing-rules.md §18 The account billing summary).
- ``dunning_due`` lists the reminders a dunning schedule calls for on a day; the connector sends
  each one and records it with ``record_dunning_step`` (one per invoice and step, UNIQUE), which
  writes ``invoice.reminded`` so Salesforce shows the step and its date.
- ``set_collection_profile``: where a customer's reminders go and in which language, and
  whether its dunning is paused.
- ``invoice_late_charges``: the interest and fixed indemnity of an overdue invoice, computed on
  demand (nothing is written: finance decides whether to invoice them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.collections import (
    DunningStage,
    LateCharges,
    check_email,
    check_language,
    days_late,
    language_for,
    late_charges,
    overdue_on,
    step_due,
)
from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events

ZERO = Decimal(0)


# ---------------------------------------------------------------- overdue


@dataclass(frozen=True)
class OverdueInvoice:
    invoice_id: int
    number: str | None
    customer_id: str
    due_on: date
    balance: Decimal
    currency: str


@dataclass(frozen=True)
class OverdueResult:
    as_of: date
    invoices: tuple[OverdueInvoice, ...] = ()

    @property
    def customers(self) -> list[str]:
        return sorted({i.customer_id for i in self.invoices})


def mark_overdue_invoices(session: Session, as_of: date, *, now: datetime | None = None) -> OverdueResult:
    """Mark overdue every open invoice with a balance due before ``as_of`` that is not marked yet.

    Each is marked once, dated the day after its due date, with an ``invoice.overdue`` event;
    each of their customers' Account summary is announced again. Running it again the same
    day (or a later one) marks nothing twice.
    """
    now = ob.changed_at(now, as_of)
    found = [inv for inv in store.past_due_open_invoices(session, as_of) if inv.balance > 0]
    if not found:
        return OverdueResult(as_of)
    rows = store.collection_rows(session, [inv.id for inv in found], lock=True)
    new_rows = []
    for inv in found:
        row = rows.get(inv.id)
        if row is None:
            new_rows.append({"invoice_id": inv.id, "customer_id": inv.customer_id, "overdue_on": overdue_on(inv.due_on),
                             "updated_at": now})
        else:
            row.overdue_on, row.updated_at = overdue_on(inv.due_on), now
            session.add(row)
    store.insert_collection_rows(session, new_rows)
    events = [ob.new_event(ob.INVOICE_OVERDUE, "invoice", inv.id, {
        "invoice_id": inv.id, "number": inv.number, "customer_id": inv.customer_id, "due_on": inv.due_on,
        "overdue_on": overdue_on(inv.due_on), "balance": inv.balance, "currency": inv.currency}, now)
        for inv in found]
    events += [ob.customer_summary_event(cid, now) for cid in sorted({inv.customer_id for inv in found})]
    session.flush()
    add_events(session, events)
    return OverdueResult(as_of, tuple(OverdueInvoice(inv.id, inv.number, inv.customer_id, inv.due_on, inv.balance,
                                                     inv.currency) for inv in found))


# ---------------------------------------------------------------- dunning profiles


@dataclass(frozen=True)
class CollectionProfileView:
    customer_id: str
    email: str | None
    language: str  # the one used: chosen, else from the billing country
    language_chosen: str | None
    dunning_paused: bool
    paused_reason: str


def _profile_view(customer: object, profile: store.CollectionProfile | None) -> CollectionProfileView:
    country = customer.billing_address.country  # type: ignore[attr-defined]
    chosen = profile.language if profile else None
    return CollectionProfileView(
        customer_id=customer.customer_id, email=profile.email if profile else None,  # type: ignore[attr-defined]
        language=language_for(chosen, country), language_chosen=chosen,
        dunning_paused=bool(profile and profile.dunning_paused), paused_reason=profile.paused_reason if profile else "")


def get_collection_profile(session: Session, customer_id: str) -> CollectionProfileView:
    customer = catalog_store.find_customer(session, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return _profile_view(customer, store.profiles_of(session, [customer_id]).get(customer_id))


def customers_with_billing_email(session: Session, email: str) -> list[str]:
    """The customers whose billing contact is ``email`` (case ignored); none for a malformed address."""
    try:
        checked = check_email(email)
    except InvalidInputError:
        return []
    return store.customers_with_email(session, checked)


_UNCHANGED = object()


def set_collection_profile(session: Session, customer_id: str, *, email: object = _UNCHANGED,
                           language: object = _UNCHANGED, paused: bool | None = None, reason: str | None = None,
                           now: datetime) -> CollectionProfileView:
    """Change where a customer's reminders go (``email``; ``None`` clears it), their language
    (``en`` or ``fr``; ``None``: from the billing country) and whether dunning is paused (with a
    reason). Arguments left out keep their value. Validates everything before writing."""
    customer = catalog_store.find_customer(session, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    checked_email = None if email is None or email is _UNCHANGED else check_email(email)
    checked_language = None if language is None or language is _UNCHANGED else check_language(language)
    if reason is not None and len(reason) > 500:
        raise InvalidInputError("reason", "is longer than 500 characters")
    profile = store.profiles_of(session, [customer_id]).get(customer_id) \
        or store.CollectionProfile(customer_id=customer_id, updated_at=now)
    if email is not _UNCHANGED:
        profile.email = checked_email
    if language is not _UNCHANGED:
        profile.language = checked_language
    if paused is not None:
        profile.dunning_paused = paused
        profile.paused_reason = (reason or "").strip() if paused else ""
    profile.updated_at = now
    session.add(profile)
    session.flush()
    return _profile_view(customer, profile)


# ---------------------------------------------------------------- dunning


@dataclass(frozen=True)
class DunningNotice:
    """One reminder to send: the invoice, the step and where it goes (``email`` None: unknown)."""

    invoice_id: int
    number: str
    customer_id: str
    customer_name: str
    email: str | None
    language: str
    step: str
    days_late: int
    issued_on: date
    due_on: date
    total: Decimal
    balance: Decimal
    currency: str
    steps_sent: tuple[str, ...] = ()


@dataclass(frozen=True)
class DunningPlan:
    as_of: date
    notices: tuple[DunningNotice, ...] = ()
    paused: tuple[str, ...] = ()  # customers whose dunning is paused (their invoices are left alone)
    being_collected: tuple[int, ...] = ()  # invoices a direct debit is collecting: not reminded


def dunning_due(session: Session, as_of: date, stages: Sequence[DunningStage]) -> DunningPlan:
    """The reminders due on ``as_of`` by ``stages``: for every open invoice with a balance past its due
    date, the latest stage reached unless it or a later one was sent (``step_due``); paused
    customers and invoices being collected by a direct debit are left out."""
    if not stages:
        return DunningPlan(as_of)
    invoices = [inv for inv in store.open_invoices_due_before(session, as_of) if inv.balance > 0]
    if not invoices:
        return DunningPlan(as_of)
    ids = [inv.id for inv in invoices]
    sent = store.dunning_steps_of(session, ids)
    debits = store.debits_by_invoice(session, ids)
    customer_ids = {inv.customer_id for inv in invoices}
    customers = catalog_store.customers_by_id(session, customer_ids)
    profiles = store.profiles_of(session, customer_ids)
    notices, paused, collecting = [], set(), []
    for inv in invoices:
        profile = profiles.get(inv.customer_id)
        if profile is not None and profile.dunning_paused:
            paused.add(inv.customer_id)
            continue
        debit = debits.get(inv.id)
        if debit is not None and debit.status == "pending":
            collecting.append(inv.id)
            continue
        steps = tuple(s.step for s in sent.get(inv.id, ()))
        stage = step_due(stages, inv.due_on, as_of, steps)
        if stage is None:
            continue
        customer = customers[inv.customer_id]
        view = _profile_view(customer, profile)
        notices.append(DunningNotice(
            invoice_id=inv.id, number=inv.number or f"DRAFT-{inv.id}", customer_id=inv.customer_id,
            customer_name=customer.name, email=view.email, language=view.language, step=stage.step,
            days_late=days_late(inv.due_on, as_of), issued_on=inv.issued_on, due_on=inv.due_on, total=inv.total,
            balance=inv.balance, currency=inv.currency, steps_sent=steps))
    return DunningPlan(as_of, tuple(notices), tuple(sorted(paused)), tuple(collecting))


def record_dunning_step(session: Session, notice: DunningNotice, *, sent_on: date, message_id: str,
                        now: datetime | None = None) -> bool:
    """Record that ``notice`` was sent on ``sent_on``: the step on the invoice (and its date), with an
    ``invoice.reminded`` event. False (nothing written) when this step was already recorded."""
    now = ob.changed_at(now, sent_on)
    inv = invoice_store.find_invoice(session, notice.invoice_id)
    if inv is None:
        raise NotFoundError("invoice", notice.invoice_id)
    if not store.insert_dunning_step(session, {
            "invoice_id": inv.id, "customer_id": inv.customer_id, "step": notice.step, "sent_on": sent_on,
            "days_late": notice.days_late, "email": notice.email or "", "language": notice.language,
            "balance": notice.balance, "currency": notice.currency, "message_id": message_id[:200],
            "created_at": now}):
        return False
    row = store.collection_row(session, inv, now)
    row.dunning_step, row.dunning_step_on, row.updated_at = notice.step, sent_on, now
    session.add(row)
    session.flush()
    add_events(session, [ob.new_event(ob.INVOICE_REMINDED, "invoice", inv.id, {
        "invoice_id": inv.id, "number": inv.number, "customer_id": inv.customer_id, "step": notice.step,
        "sent_on": sent_on, "days_late": notice.days_late, "balance": notice.balance, "currency": notice.currency},
        now)])
    return True


# ---------------------------------------------------------------- an invoice in collection


@dataclass(frozen=True)
class DunningStepView:
    step: str
    sent_on: date
    days_late: int
    email: str
    language: str
    balance: Decimal
    currency: str


@dataclass(frozen=True)
class DirectDebitView:
    debit_id: int
    collect_on: date
    amount: Decimal
    currency: str
    status: str
    end_to_end_id: str
    mandate_id: int
    return_reason: str | None
    returned_on: date | None


@dataclass(frozen=True)
class InvoiceCollectionView:
    invoice_id: int
    number: str | None
    customer_id: str
    status: str
    due_on: date | None
    balance: Decimal
    currency: str
    overdue_on: date | None
    dunning_step: str | None
    dunning_step_on: date | None
    return_reason: str | None
    returned_on: date | None
    steps: tuple[DunningStepView, ...] = field(default=())
    direct_debit: DirectDebitView | None = None


def invoice_collection(session: Session, invoice_id: int) -> InvoiceCollectionView:
    """Where an invoice stands in collection: overdue since, the reminders sent, its direct debit."""
    inv = invoice_store.find_invoice(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    row = store.collection_rows(session, [invoice_id]).get(invoice_id)
    steps = store.dunning_steps_of(session, [invoice_id]).get(invoice_id, [])
    debit = store.debits_by_invoice(session, [invoice_id]).get(invoice_id)
    return InvoiceCollectionView(
        invoice_id=inv.id, number=inv.number, customer_id=inv.customer_id, status=inv.status, due_on=inv.due_on,
        balance=inv.balance, currency=inv.currency, overdue_on=row.overdue_on if row else None,
        dunning_step=row.dunning_step if row else None, dunning_step_on=row.dunning_step_on if row else None,
        return_reason=row.return_reason if row else None, returned_on=row.returned_on if row else None,
        steps=tuple(DunningStepView(s.step, s.sent_on, s.days_late, s.email, s.language, s.balance, s.currency)
                    for s in steps),
        direct_debit=None if debit is None else DirectDebitView(
            debit.id, debit.collect_on, debit.amount, debit.currency, debit.status, debit.end_to_end_id,
            debit.mandate_id, debit.return_reason, debit.returned_on))


def collection_states(session: Session, invoice_ids: Sequence[int]) -> dict[int, tuple[str | None, date | None]]:
    """Per invoice, its last dunning step and that step's date (what the push writes); invoices
    without a step are absent."""
    return {iid: (row.dunning_step, row.dunning_step_on)
            for iid, row in store.collection_rows(session, invoice_ids).items() if row.dunning_step}


# ---------------------------------------------------------------- late charges


def invoice_id_of(session: Session, reference: str) -> int:
    """The id of the invoice ``reference`` names: its number (``INV-2026-000123``) or its id."""
    text = reference.strip()
    if text.isdigit() and len(text) <= 10:
        if invoice_store.find_invoice(session, int(text)) is None:
            raise NotFoundError("invoice", text)
        return int(text)
    found = store.invoices_by_numbers(session, [text]).get(text)
    if found is None:
        raise NotFoundError("invoice", text)
    return found.id


def invoice_late_charges(session: Session, invoice_id: int, *, as_of: date, annual_rate_percent: Decimal,
                         indemnity_eur: Decimal) -> LateCharges:
    """The late-payment interest and fixed indemnity of an invoice on ``as_of`` (nothing is written).

    A draft or void invoice has none (a conflict); a paid one, or one not yet past its due date,
    owes nothing."""
    inv = invoice_store.find_invoice(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    if inv.status in ("draft", "void") or inv.due_on is None:
        raise ConflictError(f"invoice {inv.number or invoice_id}", f"is {inv.status}: it has no late charges")
    return late_charges(balance=inv.balance, currency=inv.currency, due_on=inv.due_on, as_of=as_of,
                        annual_rate_percent=annual_rate_percent, indemnity_eur=indemnity_eur)
