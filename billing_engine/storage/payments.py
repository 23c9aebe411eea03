"""Payments, their allocations to invoices, refunds, and the customer's credit: one account row
per customer and currency (the lock for every credit change) and the credit ledger.

``payments (source, external_reference)`` is UNIQUE: a resent payment is a no-op.
Σ ``credit_entries.amount`` per (customer, currency) = ``customer_accounts.credit_balance``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, UniqueConstraint, bindparam, insert, select, update
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import dialect_insert, one_of
from billing_engine.storage.invoices import CreditNote, Invoice

ZERO = Decimal(0)


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("source", "external_reference", name="uq_payments_source_reference"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = money_field()
    unapplied: Decimal = money_field()  # became customer credit
    received_on: date = Field(nullable=False)
    method: str = Field(max_length=40, nullable=False)
    source: str = Field(max_length=80, nullable=False)
    external_reference: str = Field(max_length=200, nullable=False)
    created_at: datetime = timestamp_field()
    # The Payment__c record this payment was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)


class PaymentAllocation(SQLModel, table=True):
    __tablename__ = "payment_allocations"
    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", nullable=False, index=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    amount: Decimal = money_field()


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", nullable=False, index=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = money_field()
    from_credit: Decimal = money_field()
    refunded_on: date = Field(nullable=False)
    reason: str = Field(max_length=500, default="")
    created_at: datetime = timestamp_field()
    # The Refund__c record this refund was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)


class RefundAllocation(SQLModel, table=True):
    __tablename__ = "refund_allocations"
    id: int | None = Field(default=None, primary_key=True)
    refund_id: int = Field(foreign_key="refunds.id", nullable=False, index=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    amount: Decimal = money_field()


class CustomerAccount(SQLModel, table=True):
    """A customer's credit balance per currency; its row is the lock for credit changes."""

    __tablename__ = "customer_accounts"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    credit_balance: Decimal = money_field()


class CreditEntry(SQLModel, table=True):
    """The credit ledger: Σ amount per (customer, currency) = ``customer_accounts.credit_balance``."""

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_customer", "customer_id", "currency"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = money_field()  # + credit created, − credit used or refunded
    kind: str = Field(max_length=24, nullable=False)  # overpayment|credit_note|applied|refund
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    payment_id: int | None = Field(default=None, foreign_key="payments.id")
    credit_note_id: int | None = Field(default=None, foreign_key="credit_notes.id")
    refund_id: int | None = Field(default=None, foreign_key="refunds.id")
    created_at: datetime = timestamp_field()


def find_payment(session: Session, source: str, external_reference: str) -> Payment | None:
    return session.scalars(select(Payment).where(Payment.source == source,
                                              Payment.external_reference == external_reference)).first()


def payment_allocations(session: Session, payment_id: int) -> list[PaymentAllocation]:
    return list(session.scalars(select(PaymentAllocation).where(PaymentAllocation.payment_id == payment_id)
                             .order_by(PaymentAllocation.id)).all())


def refunds_of(session: Session, payment_id: int) -> list[Refund]:
    return list(session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all())


def refund_allocations_of(session: Session, refund_ids: Sequence[int]) -> list[RefundAllocation]:
    if not refund_ids:
        return []
    return list(session.scalars(select(RefundAllocation).where(RefundAllocation.refund_id.in_(refund_ids))).all())


def lock_account(session: Session, customer_id: str, currency: str) -> Decimal:
    """Lock (creating if needed) the customer's credit account; return its balance."""
    t = CustomerAccount.__table__
    stmt = select(t.c.credit_balance).where(t.c.customer_id == customer_id, t.c.currency == currency)
    value = session.execute(stmt.with_for_update()).scalar()
    if value is None:
        session.execute(dialect_insert(session, t).values(customer_id=customer_id, currency=currency,
                                                           credit_balance=ZERO)
                        .on_conflict_do_nothing(index_elements=["customer_id", "currency"]))
        value = session.execute(stmt.with_for_update()).scalar_one()
    return value


def lock_accounts(session: Session, keys: Sequence[tuple[str, str]], *,
                  lock: bool = True) -> dict[tuple[str, str], Decimal]:
    """Credit balances of existing accounts, locked (missing accounts have no credit); read
    without a lock when ``lock`` is false (a preview that writes nothing)."""
    t = CustomerAccount.__table__
    out: dict[tuple[str, str], Decimal] = {}
    customers = sorted({k[0] for k in keys})
    for start in range(0, len(customers), 900):
        chunk = customers[start:start + 900]
        query = (select(t.c.customer_id, t.c.currency, t.c.credit_balance)
                 .where(one_of(session, t.c.customer_id, chunk)).order_by(t.c.customer_id, t.c.currency))
        rows = session.execute(query.with_for_update() if lock else query)
        for cid, cur, bal in rows:
            out[(cid, cur)] = bal
    return out


def change_credit(session: Session, customer_id: str, currency: str, amount: Decimal, kind: str,
                  created_at: datetime, **refs: int | None) -> None:
    """Add a ledger entry and move the account balance (lock the account first when reading it)."""
    if amount == 0:
        return
    t = CustomerAccount.__table__
    # Read-modify-write in Python: SQL arithmetic on ExactDecimal would be text on SQLite.
    balance = lock_account(session, customer_id, currency)
    session.execute(update(t).where(t.c.customer_id == customer_id, t.c.currency == currency)
                    .values(credit_balance=balance + amount))
    session.execute(insert(CreditEntry.__table__).values(customer_id=customer_id, currency=currency,
                                                         amount=amount, kind=kind, created_at=created_at,
                                                         **refs))


def get_payment_for_update(session: Session, payment_id: int) -> Payment | None:
    return session.scalars(select(Payment).where(Payment.id == payment_id).with_for_update()).first()


def customer_currencies(session: Session, customer_id: str) -> set[str]:
    inv = Invoice.__table__
    acc = CustomerAccount.__table__
    found = set(session.execute(select(inv.c.currency).where(inv.c.customer_id == customer_id).distinct()).scalars())
    found.update(session.execute(select(acc.c.currency).where(acc.c.customer_id == customer_id)).scalars())
    return found


def credit_balances(session: Session, customer_id: str) -> dict[str, Decimal]:
    t = CustomerAccount.__table__
    rows = session.execute(select(t.c.currency, t.c.credit_balance).where(t.c.customer_id == customer_id))
    return {currency: balance for currency, balance in rows}


# ---------------------------------------------------------------- reads for the exports


def payments_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Payment]:
    wanted = sorted(set(ids))
    out: dict[int, Payment] = {}
    for start in range(0, len(wanted), 900):
        out.update({p.id: p for p in session.scalars(
            select(Payment).where(Payment.id.in_(wanted[start:start + 900]))).all()})
    return out


def invoice_ids_of_payments(session: Session, payment_ids: Iterable[int]) -> dict[int, list[int]]:
    """The invoices each payment was applied to, in allocation order."""
    out: dict[int, list[int]] = {}
    t = PaymentAllocation.__table__
    wanted = sorted(set(payment_ids))
    for start in range(0, len(wanted), 900):
        for payment_id, invoice_id in session.execute(select(t.c.payment_id, t.c.invoice_id)
                                                      .where(t.c.payment_id.in_(wanted[start:start + 900]))
                                                      .order_by(t.c.id)):
            invoices = out.setdefault(payment_id, [])
            if invoice_id not in invoices:
                invoices.append(invoice_id)
    return out


def refund_totals(session: Session, payment_ids: Iterable[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """Per payment, Σ refunded and Σ of it taken from the payment's unapplied credit."""
    out: dict[int, tuple[Decimal, Decimal]] = {}
    t = Refund.__table__
    wanted = sorted(set(payment_ids))
    for start in range(0, len(wanted), 900):
        for payment_id, amount, credit in session.execute(select(t.c.payment_id, t.c.amount, t.c.from_credit)
                                                          .where(t.c.payment_id.in_(wanted[start:start + 900]))):
            refunded, from_credit = out.get(payment_id, (ZERO, ZERO))
            out[payment_id] = (refunded + amount, from_credit + credit)
    return out


def credit_balances_of_customers(session: Session, customer_ids: Sequence[str]) -> dict[tuple[str, str], Decimal]:
    t = CustomerAccount.__table__
    out: dict[tuple[str, str], Decimal] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), 900):
        for cid, currency, balance in session.execute(select(t.c.customer_id, t.c.currency, t.c.credit_balance)
                                                      .where(t.c.customer_id.in_(ids[start:start + 900]))):
            out[(cid, currency)] = balance
    return out


def payments_received_between(session: Session, starts_on: date, ends_before: date) -> list[Payment]:
    return list(session.scalars(
        select(Payment).where(Payment.received_on >= starts_on, Payment.received_on < ends_before)
        .order_by(Payment.received_on, Payment.id)).all())


def customers_of_payments(session: Session, ids: Sequence[int]) -> set[str]:
    return set(session.execute(select(Payment.customer_id).where(Payment.id.in_(list(ids)))).scalars()) \
        if ids else set()


def refunds_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Refund]:
    wanted = sorted(set(ids))
    out: dict[int, Refund] = {}
    for start in range(0, len(wanted), 900):
        out.update({r.id: r for r in session.scalars(
            select(Refund).where(Refund.id.in_(wanted[start:start + 900]))).all()})
    return out


def refunds_made_between(session: Session, starts_on: date, ends_before: date) -> list[Refund]:
    return list(session.scalars(
        select(Refund).where(Refund.refunded_on >= starts_on, Refund.refunded_on < ends_before)
        .order_by(Refund.refunded_on, Refund.id)).all())


#: The records whose Salesforce id is kept, by kind.
PUSHED_TABLES: dict[str, Any] = {"invoice": Invoice, "payment": Payment, "credit_note": CreditNote, "refund": Refund}


def record_salesforce_ids(session: Session, kind: str, ids: dict[int, str]) -> None:
    """Remember the Salesforce record each invoice, payment, credit note or refund was pushed to
    (``kind``: a key of ``PUSHED_TABLES``; ``ids``: engine id → 18-character Salesforce id)."""
    if not ids:
        return
    table: Any = PUSHED_TABLES[kind].__table__
    session.connection().execute(
        update(table).where(table.c.id == bindparam("b_id")).values(salesforce_id=bindparam("b_sfid")),
        [{"b_id": engine_id, "b_sfid": sfid} for engine_id, sfid in ids.items()])


# ---------------------------------------------------------------- reads for invoice details and statements


def payments_to_invoice(session: Session, invoice_id: int) -> list[tuple[PaymentAllocation, Payment]]:
    """What each payment applied to an invoice, in the order they were applied."""
    rows = session.execute(select(PaymentAllocation, Payment).join(Payment, Payment.id == PaymentAllocation.payment_id)
                           .where(PaymentAllocation.invoice_id == invoice_id).order_by(PaymentAllocation.id)).all()
    return [(allocation, payment) for allocation, payment in rows]


def refunds_to_invoice(session: Session, invoice_id: int) -> list[tuple[RefundAllocation, Refund]]:
    """What each refund put back on an invoice's balance, in the order they were made."""
    rows = session.execute(select(RefundAllocation, Refund).join(Refund, Refund.id == RefundAllocation.refund_id)
                           .where(RefundAllocation.invoice_id == invoice_id).order_by(RefundAllocation.id)).all()
    return [(allocation, refund) for allocation, refund in rows]


def find_payment_by_id(session: Session, payment_id: int) -> Payment | None:
    return session.get(Payment, payment_id)


def payments_of_customer(session: Session, customer_id: str, through: date) -> list[Payment]:
    """The customer's payments received up to ``through``, by date and id."""
    return list(session.scalars(select(Payment).where(Payment.customer_id == customer_id,
                                                      Payment.received_on <= through)
                                .order_by(Payment.received_on, Payment.id)).all())


def refunds_of_customer(session: Session, customer_id: str, through: date) -> list[tuple[Refund, Payment]]:
    """The refunds of the customer's payments made up to ``through``, with their payment, by date and id."""
    rows = session.execute(select(Refund, Payment).join(Payment, Payment.id == Refund.payment_id)
                           .where(Payment.customer_id == customer_id, Refund.refunded_on <= through)
                           .order_by(Refund.refunded_on, Refund.id)).all()
    return [(refund, payment) for refund, payment in rows]
