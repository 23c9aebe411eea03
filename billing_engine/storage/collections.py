"""Getting paid: the tables of collections (docs/payments.md).

- ``invoice_collections``: per invoice, the day it became overdue, its last dunning step and
  the last direct-debit return (one row per invoice that has any of these);
- ``dunning_steps``: each reminder sent, ``(invoice_id, step)`` UNIQUE: a step is sent once;
- ``customer_collection_profiles``: per customer, where reminders go (e-mail, language) and
  whether dunning is paused;
- ``sepa_mandates``: SEPA direct-debit mandates, ``reference`` (the RUM) UNIQUE, at most one
  ``active`` mandate per customer (a partial unique index);
- ``sepa_exports`` and ``direct_debits``: each pain.008 file written (its XML kept) and the
  debits in it; ``direct_debits.invoice_id`` UNIQUE: an invoice is collected once;
- ``bank_entries``: every statement entry recorded, ``entry_key`` UNIQUE (the bank's entry
  reference): importing a statement twice records nothing new;
- ``customer_bank_accounts``: the IBANs a customer paid from (learned from mandates and
  matched payments), for matching transfers by amount and account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, Text, UniqueConstraint, func, select, text, update
from sqlmodel import Field, Session, SQLModel

from billing_engine.customers import Customer
from billing_engine.storage.catalog import CustomerRow, customer_from_row
from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import dialect_insert
from billing_engine.storage.invoices import Invoice

ZERO = Decimal(0)


class InvoiceCollection(SQLModel, table=True):
    """Where an invoice stands in collection (absent: nothing happened yet)."""

    __tablename__ = "invoice_collections"
    invoice_id: int = Field(primary_key=True, foreign_key="invoices.id")
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    overdue_on: date | None = None  # the first day it was past due (the day after its due date)
    dunning_step: str | None = Field(default=None, max_length=16)
    dunning_step_on: date | None = None
    return_reason: str | None = Field(default=None, max_length=200)  # the last direct-debit return
    returned_on: date | None = None
    updated_at: datetime = timestamp_field()


class DunningStep(SQLModel, table=True):
    __tablename__ = "dunning_steps"
    __table_args__ = (UniqueConstraint("invoice_id", "step", name="uq_dunning_steps_invoice_step"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    step: str = Field(max_length=16, nullable=False)
    sent_on: date = Field(nullable=False)
    days_late: int = Field(nullable=False)
    email: str = Field(max_length=254, nullable=False)
    language: str = Field(max_length=2, nullable=False)
    balance: Decimal = money_field()
    currency: str = Field(max_length=3, nullable=False)
    message_id: str = Field(max_length=200, nullable=False)  # the e-mail's Message-ID
    created_at: datetime = timestamp_field()


class CollectionProfile(SQLModel, table=True):
    __tablename__ = "customer_collection_profiles"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    email: str | None = Field(default=None, max_length=254)
    language: str | None = Field(default=None, max_length=2)
    dunning_paused: bool = Field(default=False, nullable=False)
    paused_reason: str = Field(default="", max_length=500)
    updated_at: datetime = timestamp_field()


class Mandate(SQLModel, table=True):
    __tablename__ = "sepa_mandates"
    __table_args__ = (
        Index("uq_sepa_mandates_active_customer", "customer_id", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    reference: str = Field(max_length=35, nullable=False, unique=True)  # the RUM
    signed_on: date = Field(nullable=False)
    iban: str = Field(max_length=34, nullable=False, index=True)
    bic: str | None = Field(default=None, max_length=11)
    account_holder: str = Field(max_length=70, nullable=False)
    sequence_type: str = Field(max_length=4, nullable=False)  # FRST until a first debit is exported, then RCUR
    status: str = Field(max_length=12, nullable=False)  # active | revoked
    revoked_on: date | None = None
    revoked_reason: str = Field(default="", max_length=200)
    created_at: datetime = timestamp_field()


class SepaExport(SQLModel, table=True):
    __tablename__ = "sepa_exports"
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=35, nullable=False, unique=True)
    collect_on: date = Field(nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    transactions: int = Field(nullable=False)
    total: Decimal = money_field()
    document: str = Field(sa_type=Text, nullable=False)  # the pain.008 XML as written
    created_at: datetime = timestamp_field()


class DirectDebit(SQLModel, table=True):
    __tablename__ = "direct_debits"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, unique=True)
    export_id: int = Field(foreign_key="sepa_exports.id", nullable=False, index=True)
    mandate_id: int = Field(foreign_key="sepa_mandates.id", nullable=False, index=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    amount: Decimal = money_field()
    currency: str = Field(max_length=3, nullable=False)
    sequence_type: str = Field(max_length=4, nullable=False)
    collect_on: date = Field(nullable=False)
    end_to_end_id: str = Field(max_length=35, nullable=False, unique=True)
    batch_id: str = Field(max_length=35, nullable=False, index=True)  # the PmtInfId it was sent in
    status: str = Field(max_length=12, nullable=False)  # pending | collected | returned
    payment_id: int | None = Field(default=None, foreign_key="payments.id")
    return_reason: str | None = Field(default=None, max_length=200)
    returned_on: date | None = None
    created_at: datetime = timestamp_field()


class BankEntry(SQLModel, table=True):
    __tablename__ = "bank_entries"
    __table_args__ = (Index("ix_bank_entries_status", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    entry_key: str = Field(max_length=200, nullable=False, unique=True)
    statement_id: str = Field(max_length=80, nullable=False)
    account_iban: str = Field(max_length=34, nullable=False)
    booked_on: date = Field(nullable=False)
    direction: str = Field(max_length=6, nullable=False)  # credit | debit
    amount: Decimal = money_field()  # positive
    currency: str = Field(max_length=3, nullable=False)
    counterparty_name: str = Field(default="", max_length=140)
    counterparty_iban: str = Field(default="", max_length=34)
    remittance: str = Field(default="", sa_type=Text, nullable=False)
    end_to_end_id: str = Field(default="", max_length=35)
    return_reason: str = Field(default="", max_length=35)
    status: str = Field(max_length=12, nullable=False)  # matched | unmatched | returned | recorded
    rule: str = Field(default="", max_length=24)  # how it was matched
    customer_id: str | None = Field(default=None, foreign_key="customers.id", max_length=64)
    payment_id: int | None = Field(default=None, foreign_key="payments.id")
    note: str = Field(default="", max_length=500)
    created_at: datetime = timestamp_field()
    resolved_at: datetime | None = timestamp_field(nullable=True)


class CustomerBankAccount(SQLModel, table=True):
    __tablename__ = "customer_bank_accounts"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    iban: str = Field(primary_key=True, max_length=34, index=True)
    learned_from: str = Field(max_length=24, nullable=False)  # mandate | payment
    created_at: datetime = timestamp_field()


# ---------------------------------------------------------------- invoice collection state


def collection_rows(session: Session, invoice_ids: Iterable[int], *, lock: bool = False) -> dict[int, InvoiceCollection]:
    wanted = sorted(set(invoice_ids))
    out: dict[int, InvoiceCollection] = {}
    for start in range(0, len(wanted), 900):
        query = select(InvoiceCollection).where(InvoiceCollection.invoice_id.in_(wanted[start:start + 900]))
        out.update({row.invoice_id: row for row in session.scalars(query.with_for_update() if lock else query)})
    return out


def collection_row(session: Session, invoice: Invoice, now: datetime) -> InvoiceCollection:
    """The invoice's collection row, created when missing (locked on PostgreSQL)."""
    t = InvoiceCollection.__table__
    session.execute(dialect_insert(session, t).values(invoice_id=invoice.id, customer_id=invoice.customer_id,
                                                       updated_at=now)
                    .on_conflict_do_nothing(index_elements=["invoice_id"]))
    row = session.scalars(select(InvoiceCollection).where(InvoiceCollection.invoice_id == invoice.id)
                          .with_for_update()).one()
    session.refresh(row)
    return row


def insert_collection_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(dialect_insert(session, InvoiceCollection.__table__), list(rows))


def insert_dunning_step(session: Session, values: dict[str, Any]) -> bool:
    """Record a step sent; False when this invoice's step was already recorded (nothing written)."""
    result = session.execute(dialect_insert(session, DunningStep.__table__).values(**values)
                             .on_conflict_do_nothing(index_elements=["invoice_id", "step"]))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def past_due_open_invoices(session: Session, as_of: date) -> list[Invoice]:
    """Open invoices due before ``as_of`` not yet marked overdue, by due date and id."""
    inv, col = Invoice.__table__, InvoiceCollection.__table__
    query = (select(Invoice).outerjoin(col, col.c.invoice_id == inv.c.id)
             .where(inv.c.status == "open", inv.c.due_on < as_of, col.c.overdue_on.is_(None))
             .order_by(inv.c.due_on, inv.c.id))
    return list(session.scalars(query.with_for_update(of=inv)).all())


def open_invoices_due_before(session: Session, day: date) -> list[Invoice]:
    """Open invoices whose due date is before ``day`` (not locked), by due date and id."""
    return list(session.scalars(select(Invoice).where(Invoice.status == "open", Invoice.due_on < day)
                                .order_by(Invoice.due_on, Invoice.id)).all())


def dunning_states(session: Session, invoice_ids: Iterable[int]) -> dict[int, tuple[str | None, date | None]]:
    """Per invoice, its last dunning step and that step's date (invoices without one are absent)."""
    t = InvoiceCollection.__table__
    wanted = sorted(set(invoice_ids))
    out: dict[int, tuple[str | None, date | None]] = {}
    for start in range(0, len(wanted), 900):
        for invoice_id, step, on in session.execute(
                select(t.c.invoice_id, t.c.dunning_step, t.c.dunning_step_on)
                .where(t.c.invoice_id.in_(wanted[start:start + 900]), t.c.dunning_step.is_not(None))):
            out[invoice_id] = (step, on)
    return out


def dunning_steps_of(session: Session, invoice_ids: Iterable[int]) -> dict[int, list[DunningStep]]:
    wanted = sorted(set(invoice_ids))
    out: dict[int, list[DunningStep]] = {}
    for start in range(0, len(wanted), 900):
        for row in session.scalars(select(DunningStep).where(DunningStep.invoice_id.in_(wanted[start:start + 900]))
                                   .order_by(DunningStep.sent_on, DunningStep.id)):
            out.setdefault(row.invoice_id, []).append(row)
    return out


def customers_matching(session: Session, fragment: str, limit: int) -> list[Customer]:
    """At most ``limit`` customers, by id, whose id, name, Salesforce Account Id or collection
    e-mail contains ``fragment`` (in any case; ``%`` and ``_`` are plain characters)."""
    cust, prof = CustomerRow.__table__, CollectionProfile.__table__  # type: ignore[attr-defined]
    needle = fragment.lower()
    query = (select(cust).outerjoin(prof, prof.c.customer_id == cust.c.id)
             .where(func.lower(cust.c.id).contains(needle, autoescape=True)
                    | func.lower(cust.c.name).contains(needle, autoescape=True)
                    | func.lower(cust.c.salesforce_account_id).contains(needle, autoescape=True)
                    | func.lower(prof.c.email).contains(needle, autoescape=True))
             .order_by(cust.c.id).limit(limit))
    return [customer_from_row(row) for row in session.execute(query)]


def profiles_of(session: Session, customer_ids: Iterable[str]) -> dict[str, CollectionProfile]:
    wanted = sorted(set(customer_ids))
    out: dict[str, CollectionProfile] = {}
    for start in range(0, len(wanted), 900):
        out.update({p.customer_id: p for p in session.scalars(
            select(CollectionProfile).where(CollectionProfile.customer_id.in_(wanted[start:start + 900])))})
    return out


# ---------------------------------------------------------------- mandates and direct debits


def mandate_by_reference(session: Session, reference: str) -> Mandate | None:
    return session.scalars(select(Mandate).where(Mandate.reference == reference)).first()


def mandate_by_id(session: Session, mandate_id: int) -> Mandate | None:
    return session.get(Mandate, mandate_id)


def mandate_for_update(session: Session, mandate_id: int) -> Mandate | None:
    return session.scalars(select(Mandate).where(Mandate.id == mandate_id).with_for_update()).first()


def list_mandates(session: Session, *, customer_id: str | None, status: str | None, after_id: int | None,
                  limit: int) -> list[Mandate]:
    query = select(Mandate)
    if customer_id is not None:
        query = query.where(Mandate.customer_id == customer_id)
    if status is not None:
        query = query.where(Mandate.status == status)
    if after_id is not None:
        query = query.where(Mandate.id > after_id)
    return list(session.scalars(query.order_by(Mandate.id).limit(limit)))


def mark_mandates_recurring(session: Session, mandate_ids: Sequence[int]) -> None:
    """After a mandate's first export, its next debits are recurring (RCUR)."""
    if mandate_ids:
        t = Mandate.__table__
        session.execute(update(t).where(t.c.id.in_(list(mandate_ids))).values(sequence_type="RCUR"))


def count_exports_on(session: Session, collect_on: date) -> int:
    t = SepaExport.__table__
    return session.execute(select(func.count()).select_from(t).where(t.c.collect_on == collect_on)).scalar_one()


def debit_for_update(session: Session, end_to_end_id: str) -> DirectDebit | None:
    return session.scalars(select(DirectDebit).where(DirectDebit.end_to_end_id == end_to_end_id)
                           .with_for_update()).first()


def active_mandates(session: Session, customer_ids: Sequence[str]) -> dict[str, Mandate]:
    """The active mandate of each of these customers that has one."""
    wanted = sorted(set(customer_ids))
    out: dict[str, Mandate] = {}
    for start in range(0, len(wanted), 900):
        out.update({m.customer_id: m for m in session.scalars(
            select(Mandate).where(Mandate.status == "active", Mandate.customer_id.in_(wanted[start:start + 900])))})
    return out


def mandates_of(session: Session, customer_id: str) -> list[Mandate]:
    return list(session.scalars(select(Mandate).where(Mandate.customer_id == customer_id).order_by(Mandate.id)))


def collectable_invoices(session: Session, collect_on: date, currency: str) -> list[Any]:
    """Open invoices in ``currency`` due on or before ``collect_on`` whose customer has an active
    mandate and that were never put in a direct debit, locked, by customer, due date and id."""
    inv, dd, mandate = Invoice.__table__, DirectDebit.__table__, Mandate.__table__
    query = (select(Invoice).join(mandate, (mandate.c.customer_id == inv.c.customer_id)
                                  & (mandate.c.status == "active"))
             .outerjoin(dd, dd.c.invoice_id == inv.c.id)
             .where(inv.c.status == "open", inv.c.currency == currency, inv.c.due_on <= collect_on,
                    dd.c.id.is_(None))
             .order_by(inv.c.customer_id, inv.c.due_on, inv.c.id))
    return list(session.scalars(query.with_for_update(of=inv)).all())


def debits_by_invoice(session: Session, invoice_ids: Iterable[int]) -> dict[int, DirectDebit]:
    wanted = sorted(set(invoice_ids))
    out: dict[int, DirectDebit] = {}
    for start in range(0, len(wanted), 900):
        out.update({d.invoice_id: d for d in session.scalars(
            select(DirectDebit).where(DirectDebit.invoice_id.in_(wanted[start:start + 900])))})
    return out


def debits_by_end_to_end(session: Session, ids: Iterable[str]) -> dict[str, DirectDebit]:
    wanted = sorted({i for i in ids if i})
    out: dict[str, DirectDebit] = {}
    for start in range(0, len(wanted), 900):
        out.update({d.end_to_end_id: d for d in session.scalars(
            select(DirectDebit).where(DirectDebit.end_to_end_id.in_(wanted[start:start + 900])))})
    return out


def debits_of_batches(session: Session, batch_ids: Iterable[str]) -> dict[str, list[DirectDebit]]:
    wanted = sorted({b for b in batch_ids if b})
    out: dict[str, list[DirectDebit]] = {}
    for start in range(0, len(wanted), 900):
        for d in session.scalars(select(DirectDebit).where(DirectDebit.batch_id.in_(wanted[start:start + 900]))
                                 .order_by(DirectDebit.id)):
            out.setdefault(d.batch_id, []).append(d)
    return out


def pending_debits_due(session: Session, on: date) -> list[DirectDebit]:
    return list(session.scalars(select(DirectDebit).where(DirectDebit.status == "pending",
                                                          DirectDebit.collect_on <= on)
                                .order_by(DirectDebit.collect_on, DirectDebit.id).with_for_update()))


# ---------------------------------------------------------------- bank entries


def existing_entry_keys(session: Session, keys: Iterable[str]) -> set[str]:
    wanted = sorted(set(keys))
    col = BankEntry.__table__.c.entry_key
    found: set[str] = set()
    for start in range(0, len(wanted), 900):
        found.update(session.execute(select(col).where(col.in_(wanted[start:start + 900]))).scalars())
    return found


def customers_of_ibans(session: Session, ibans: Iterable[str]) -> dict[str, set[str]]:
    """Per IBAN, the customers known to pay from it (their mandates and earlier matched payments)."""
    wanted = sorted({i for i in ibans if i})
    out: dict[str, set[str]] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start:start + 900]
        for iban, cid in session.execute(select(CustomerBankAccount.iban, CustomerBankAccount.customer_id)
                                         .where(CustomerBankAccount.iban.in_(chunk))):
            out.setdefault(iban, set()).add(cid)
        for iban, cid in session.execute(select(Mandate.iban, Mandate.customer_id).where(Mandate.iban.in_(chunk))):
            out.setdefault(iban, set()).add(cid)
    return out


def remember_bank_account(session: Session, customer_id: str, iban: str, learned_from: str, now: datetime) -> None:
    if not iban:
        return
    t = CustomerBankAccount.__table__
    session.execute(dialect_insert(session, t).values(customer_id=customer_id, iban=iban, learned_from=learned_from,
                                                       created_at=now)
                    .on_conflict_do_nothing(index_elements=["customer_id", "iban"]))


def bank_entries(session: Session, *, status: str | None, after_id: int | None, limit: int) -> list[BankEntry]:
    query = select(BankEntry)
    if status:
        query = query.where(BankEntry.status == status)
    if after_id is not None:
        query = query.where(BankEntry.id > after_id)
    return list(session.scalars(query.order_by(BankEntry.id).limit(limit)))


def invoices_with_balance_of(session: Session, customer_ids: Iterable[str]) -> dict[str, list[Invoice]]:
    """Per customer, its open and uncollectible invoices (not locked), oldest first."""
    wanted = sorted(set(customer_ids))
    out: dict[str, list[Invoice]] = {}
    for start in range(0, len(wanted), 900):
        for inv in session.scalars(select(Invoice).where(Invoice.customer_id.in_(wanted[start:start + 900]),
                                                         Invoice.status.in_(("open", "uncollectible")))
                                   .order_by(Invoice.issued_on, Invoice.number, Invoice.id)):
            out.setdefault(inv.customer_id, []).append(inv)
    return out


def invoices_by_numbers(session: Session, numbers: Iterable[str]) -> dict[str, Invoice]:
    wanted = sorted(set(numbers))
    out: dict[str, Invoice] = {}
    for start in range(0, len(wanted), 900):
        out.update({inv.number: inv for inv in session.scalars(
            select(Invoice).where(Invoice.number.in_(wanted[start:start + 900])))})
    return out


def open_invoices_in(session: Session, currency: str) -> list[Invoice]:
    """Open and uncollectible invoices in ``currency``, oldest first (candidates for an unknown payer)."""
    return list(session.scalars(select(Invoice).where(Invoice.status.in_(("open", "uncollectible")),
                                                      Invoice.currency == currency)
                                .order_by(Invoice.issued_on, Invoice.id)))


def bank_entry(session: Session, entry_id: int, *, lock: bool = False) -> BankEntry | None:
    query = select(BankEntry).where(BankEntry.id == entry_id)
    return session.scalars(query.with_for_update() if lock else query).first()


def debit_by_id_for_update(session: Session, debit_id: int) -> DirectDebit | None:
    return session.scalars(select(DirectDebit).where(DirectDebit.id == debit_id).with_for_update()).first()


def customers_with_email(session: Session, email: str) -> list[str]:
    """The customers whose billing contact (collection profile) is ``email``, compared without case."""
    return list(session.scalars(select(CollectionProfile.customer_id)
                                .where(func.lower(CollectionProfile.email) == email.strip().lower())
                                .order_by(CollectionProfile.customer_id)))
