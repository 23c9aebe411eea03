"""Billing tables (usage, invoices, credit notes, payments, credit, outbox) and their queries.

Every money or quantity column is ``ExactDecimal``. Ids of rows owned here are
integers; customer, subscription and subscription-item ids are Engine I's string
ids. Invariants enforced by the database, not by luck:

- ``invoice_lines.charge_key`` is UNIQUE: a charge (subscription item + period
  start + kind [+ amendment]) is billed once, whatever runs concurrently;
- ``invoices.number`` and ``credit_notes.number`` are UNIQUE, drawn from
  ``number_sequences`` inside the finalizing transaction (row lock on PostgreSQL,
  ``BEGIN IMMEDIATE`` on SQLite), so numbers are gapless and never shared;
- ``payments (source, external_reference)`` and ``usage_records (source,
  idempotency_key)`` are UNIQUE: a resent payment or usage record is a no-op;
- ``bill_run_errors (run_on, customer_id)`` is UNIQUE: a re-run rewrites the reason;
- ``outbox.coalesce_key`` is UNIQUE among pending rows (partial index).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError  # re-exported for the services
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import ExactDecimal

__all__ = ["IntegrityError", "OperationalError"]

ZERO = Decimal(0)


def _money(**kw: Any) -> Any:
    return Field(default=ZERO, sa_type=ExactDecimal, nullable=False, **kw)


def _at(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class NumberSequence(SQLModel, table=True):
    """Gapless counters: one row per sequence name and year (``INV`` 2026 → next 42)."""

    __tablename__ = "number_sequences"
    name: str = Field(primary_key=True, max_length=40)
    year: int = Field(primary_key=True)
    next_value: int = Field(default=1, nullable=False)


class UsageRecord(SQLModel, table=True):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key", name="uq_usage_records_source_key"),
        Index("ix_usage_records_item_on", "subscription_id", "subscription_item_id", "occurred_on"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", max_length=64, nullable=False)
    subscription_item_id: str = Field(max_length=64, nullable=False)
    quantity: Decimal = _money()
    occurred_at: datetime = _at()
    occurred_on: date = Field(nullable=False)  # in the customer's timezone
    source: str = Field(max_length=200, nullable=False)
    idempotency_key: str = Field(max_length=200, nullable=False)
    recorded_at: datetime = _at()


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_customer_status", "customer_id", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    status: str = Field(max_length=16, nullable=False)
    number: str | None = Field(default=None, max_length=40, unique=True)
    bill_run_on: date | None = None
    issued_on: date | None = None
    due_on: date | None = None
    payment_terms_days: int = Field(default=30, nullable=False)
    tax_percent: Decimal = _money()
    tax_reason: str = Field(default="", max_length=200)
    subtotal: Decimal = _money()
    discount: Decimal = _money()
    net: Decimal = _money()
    tax: Decimal = _money()
    total: Decimal = _money()
    amount_credited: Decimal = _money()  # customer credit + credit notes applied
    amount_paid: Decimal = _money()
    amount_refunded: Decimal = _money()
    created_at: datetime = _at()
    finalized_at: datetime | None = _at(nullable=True)
    status_changed_at: datetime | None = _at(nullable=True)
    # The Invoice__c record this invoice was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)

    @property
    def balance(self) -> Decimal:
        return self.total - self.amount_paid - self.amount_credited + self.amount_refunded


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    charge_key: str = Field(max_length=255, nullable=False, unique=True)
    position: int = Field(nullable=False)
    subscription_id: str = Field(foreign_key="subscriptions.id", max_length=64, nullable=False, index=True)
    item_id: str = Field(max_length=64, nullable=False)
    product_code: str = Field(max_length=80, nullable=False)
    product_name: str = Field(max_length=255, nullable=False)
    kind: str = Field(max_length=24, nullable=False)
    description: str = Field(max_length=500, default="")
    starts_on: date = Field(nullable=False)
    ends_before: date = Field(nullable=False)
    quantity: Decimal = _money()
    unit_price: Decimal = _money()
    gross: Decimal = _money()
    line_discount: Decimal = _money()
    invoice_discount: Decimal = _money()
    net: Decimal = _money()
    tax_percent: Decimal = _money()
    # How the amount was computed ("Licences 12 × graduated: 5 × 200 + ..."), for Salesforce.
    explanation: str = Field(default="", sa_type=Text, nullable=False)
    # Set when a credit line moved to a credit note (credits exceeded charges).
    credit_note_id: int | None = Field(default=None, foreign_key="credit_notes.id")


class InvoiceTax(SQLModel, table=True):
    """The VAT breakdown: one row per rate on an invoice."""

    __tablename__ = "invoice_taxes"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    tax_percent: Decimal = _money()
    net: Decimal = _money()
    tax: Decimal = _money()


class CreditNote(SQLModel, table=True):
    __tablename__ = "credit_notes"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=40, nullable=False, unique=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id", index=True)
    currency: str = Field(max_length=3, nullable=False)
    reason: str = Field(max_length=500, nullable=False)
    issued_on: date = Field(nullable=False)
    net: Decimal = _money()
    tax: Decimal = _money()
    total: Decimal = _money()
    applied_to_invoice: Decimal = _money()
    to_credit_balance: Decimal = _money()
    created_at: datetime = _at()


class CreditNoteLine(SQLModel, table=True):
    __tablename__ = "credit_note_lines"
    id: int | None = Field(default=None, primary_key=True)
    credit_note_id: int = Field(foreign_key="credit_notes.id", nullable=False, index=True)
    charge_key: str | None = Field(default=None, max_length=255)
    description: str = Field(max_length=500, default="")
    net: Decimal = _money()
    tax_percent: Decimal = _money()


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("source", "external_reference", name="uq_payments_source_reference"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = _money()
    unapplied: Decimal = _money()  # became customer credit
    received_on: date = Field(nullable=False)
    method: str = Field(max_length=40, nullable=False)
    source: str = Field(max_length=80, nullable=False)
    external_reference: str = Field(max_length=200, nullable=False)
    created_at: datetime = _at()
    # The Payment__c record this payment was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)


class PaymentAllocation(SQLModel, table=True):
    __tablename__ = "payment_allocations"
    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", nullable=False, index=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    amount: Decimal = _money()


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payments.id", nullable=False, index=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = _money()
    from_credit: Decimal = _money()
    refunded_on: date = Field(nullable=False)
    reason: str = Field(max_length=500, default="")
    created_at: datetime = _at()


class RefundAllocation(SQLModel, table=True):
    __tablename__ = "refund_allocations"
    id: int | None = Field(default=None, primary_key=True)
    refund_id: int = Field(foreign_key="refunds.id", nullable=False, index=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False)
    amount: Decimal = _money()


class CustomerAccount(SQLModel, table=True):
    """A customer's credit balance per currency; its row is the lock for credit changes."""

    __tablename__ = "customer_accounts"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    credit_balance: Decimal = _money()


class CreditEntry(SQLModel, table=True):
    """The credit ledger: Σ amount per (customer, currency) = ``customer_accounts.credit_balance``."""

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_customer", "customer_id", "currency"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    amount: Decimal = _money()  # + credit created, − credit used or refunded
    kind: str = Field(max_length=24, nullable=False)  # overpayment|credit_note|applied|refund
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    payment_id: int | None = Field(default=None, foreign_key="payments.id")
    credit_note_id: int | None = Field(default=None, foreign_key="credit_notes.id")
    refund_id: int | None = Field(default=None, foreign_key="refunds.id")
    created_at: datetime = _at()


class CustomerMrr(SQLModel, table=True):
    """The MRR last announced for a customer (``customer.summary_changed``), per currency.

    The bill run compares each customer's MRR on its date with this row and announces
    the customers whose MRR changed since (a cancellation or a renewal taking effect,
    a change dated in the future), so every change reaches Salesforce once.
    """

    __tablename__ = "customer_mrr"
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    currency: str = Field(primary_key=True, max_length=3)
    mrr: Decimal = _money()
    measured_on: date = Field(nullable=False)


class BillRunError(SQLModel, table=True):
    __tablename__ = "bill_run_errors"
    __table_args__ = (UniqueConstraint("run_on", "customer_id", name="uq_bill_run_errors_run_customer"),)
    id: int | None = Field(default=None, primary_key=True)
    run_on: date = Field(nullable=False)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    reason: str = Field(nullable=False, max_length=2000)
    created_at: datetime = _at()


class OutboxRow(SQLModel, table=True):
    """See ``billing_engine.outbox`` for the contract."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at", "id"),
        Index("ix_outbox_aggregate", "aggregate_type", "aggregate_id"),
        Index("uq_outbox_pending_coalesce", "coalesce_key", unique=True,
              sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=60, nullable=False)
    aggregate_type: str = Field(max_length=40, nullable=False)
    aggregate_id: str = Field(max_length=64, nullable=False)
    payload: str = Field(nullable=False)
    coalesce_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = _at()
    status: str = Field(default="pending", max_length=16, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime | None = _at(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    salesforce_id: str | None = Field(default=None, max_length=18)
    locked_by: str | None = Field(default=None, max_length=100)
    locked_at: datetime | None = _at(nullable=True)


# ---------------------------------------------------------------- queries


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def next_number(session: Session, name: str, year: int) -> int:
    """Take the next value of a gapless sequence inside the caller's transaction.

    PostgreSQL: the row is locked (``FOR UPDATE``) until the transaction ends, so
    a concurrent finalization waits and takes the following number; a rollback
    releases the number. SQLite: the transaction began with ``BEGIN IMMEDIATE``.
    """
    table = NumberSequence.__table__
    stmt = select(table.c.next_value).where(table.c.name == name, table.c.year == year).with_for_update()
    value = session.execute(stmt).scalar()
    if value is None:
        ins = _dialect_insert(session, table).values(name=name, year=year, next_value=1)
        session.execute(ins.on_conflict_do_nothing(index_elements=["name", "year"]))
        value = session.execute(stmt).scalar_one()
    session.execute(update(table).where(table.c.name == name, table.c.year == year)
                    .values(next_value=value + 1))
    return value


def one_of(session: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``: one parameter, so the
    statement text stays the same whatever the number of values (no re-parsing per batch)."""
    if is_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def _copy_rows(session: Session, table: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` of ``rows`` (the same keys each) into ``table``.

    Bypasses the column types, so it refuses floats itself (money stays Decimal)."""
    cursor = session.connection().connection.cursor()
    try:
        names = ", ".join(f'"{c}"' for c in columns)
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for value in values:
                    if value.__class__ is float:
                        raise TypeError(f"refusing to store float {value!r} in {table.name}; use Decimal")
                copy.write_row(values)
    finally:
        cursor.close()


COPY_THRESHOLD = 50  # rows; below it an executemany is as quick


def _upsert_arrays(session: Session, table: Any, rows: Sequence[dict[str, Any]], conflict: Sequence[str],
                   updates: Sequence[str], conflict_where: str | None = None) -> bool:
    """PostgreSQL, ``COPY_THRESHOLD`` rows or more (the same keys each): ``INSERT ... SELECT FROM
    unnest(one array per column) ON CONFLICT DO UPDATE`` in one statement, instead of a statement
    per row. False (nothing done) otherwise: the caller then runs its portable upsert.

    Arrays bypass the column types, so floats are refused here (money stays Decimal)."""
    if len(rows) < COPY_THRESHOLD or not is_postgresql(session):
        return False
    columns = list(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        return False
    dialect = session.get_bind().dialect
    arrays, params = [], {}
    for n, name in enumerate(columns):
        values = [row[name] for row in rows]
        for value in values:
            if value.__class__ is float:
                raise TypeError(f"refusing to store float {value!r} in {table.name}; use Decimal")
        # Without a length or scale (an explicit cast would truncate): the column checks them on insert.
        sql_type = table.c[name].type.dialect_impl(dialect).compile(dialect=dialect).split("(")[0]
        arrays.append(f"CAST(:a{n} AS {sql_type}[])")
        params[f"a{n}"] = values
    names = ", ".join(f'"{c}"' for c in columns)
    where = f" WHERE {conflict_where}" if conflict_where else ""
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in updates)
    # Names and types come from the table's metadata, values travel as parameters.
    sql = (f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({", ".join(arrays)}) '  # noqa: S608
           f'ON CONFLICT ({", ".join(conflict)}){where} DO UPDATE SET {sets}')
    session.execute(text(sql), params)
    return True


def _dialect_insert(session: Session, table):
    return (postgresql.insert if is_postgresql(session) else sqlite.insert)(table)


def billed_keys(session: Session, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    col = InvoiceLine.__table__.c.charge_key
    for start in range(0, len(keys), 900):
        chunk = keys[start:start + 900]
        found.update(session.execute(select(col).where(col.in_(chunk))).scalars())
    return found


def billed_keys_for_subscriptions(session: Session, subscription_ids: Sequence[str]) -> set[str]:
    t = InvoiceLine.__table__
    found: set[str] = set()
    for start in range(0, len(subscription_ids), 900):
        chunk = list(subscription_ids[start:start + 900])
        found.update(session.execute(select(t.c.charge_key).where(one_of(session, t.c.subscription_id, chunk))).scalars())
    return found


def billed_lines_for_subscriptions(session: Session, subscription_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Per subscription, what was billed per charge key (``BilledCharge``-shaped rows:
    key, amount as charged = gross − line discount, quantity, unit_price, starts_on, ends_before)."""
    t = InvoiceLine.__table__
    out: dict[str, list[Any]] = {}
    for start in range(0, len(subscription_ids), 900):
        chunk = list(subscription_ids[start:start + 900])
        # The lines alone, by their subscription index (every line has its invoice: a foreign key), so
        # the cost is the lines read, whatever the number of invoices.
        rows = session.execute(
            select(t.c.subscription_id, t.c.charge_key, t.c.gross, t.c.line_discount, t.c.quantity, t.c.unit_price,
                   t.c.starts_on, t.c.ends_before)
            .where(one_of(session, t.c.subscription_id, chunk)))
        for sid, key, gross, disc, qty, price, starts, ends in rows:
            out.setdefault(sid, []).append(BilledLine(key, gross - disc, qty, price, starts, ends))
    return out


class BilledLine:
    __slots__ = ("key", "amount", "quantity", "unit_price", "starts_on", "ends_before")

    def __init__(self, key, amount, quantity, unit_price, starts_on, ends_before):
        self.key, self.amount, self.quantity, self.unit_price = key, amount, quantity, unit_price
        self.starts_on, self.ends_before = starts_on, ends_before


def bulk_insert(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (the same keys each): ``COPY`` on PostgreSQL for large batches, else executemany."""
    if not rows:
        return
    if len(rows) >= COPY_THRESHOLD and is_postgresql(session):
        _copy_rows(session, model.__table__, rows, list(rows[0]))  # type: ignore[attr-defined]  # every table class has one
        return
    session.execute(insert(model.__table__), list(rows))  # type: ignore[attr-defined]  # every table class has one


def insert_returning_id(session: Session, model: type[SQLModel], values: dict[str, Any]) -> int:
    table = model.__table__  # type: ignore[attr-defined]  # every table class has one
    return session.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()


def lock_account(session: Session, customer_id: str, currency: str) -> Decimal:
    """Lock (creating if needed) the customer's credit account; return its balance."""
    t = CustomerAccount.__table__
    stmt = select(t.c.credit_balance).where(t.c.customer_id == customer_id, t.c.currency == currency)
    value = session.execute(stmt.with_for_update()).scalar()
    if value is None:
        session.execute(_dialect_insert(session, t).values(customer_id=customer_id, currency=currency,
                                                           credit_balance=ZERO)
                        .on_conflict_do_nothing(index_elements=["customer_id", "currency"]))
        value = session.execute(stmt.with_for_update()).scalar_one()
    return value


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


def add_outbox(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outbox rows; rows with a ``coalesce_key`` replace the pending row's payload."""
    plain = [r for r in rows if not r.get("coalesce_key")]
    bulk_insert(session, OutboxRow, plain)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # one statement may touch a pending row once: keep each key's last row
        if row.get("coalesce_key"):
            latest[row["coalesce_key"]] = row
    if not latest:
        return
    t = OutboxRow.__table__
    if _upsert_arrays(session, t, list(latest.values()), ["coalesce_key"], ["payload", "created_at"],
                      "status = 'pending'"):
        return
    stmt = _dialect_insert(session, t)
    stmt = stmt.on_conflict_do_update(
        index_elements=["coalesce_key"], index_where=text("status = 'pending'"),
        set_={"payload": stmt.excluded.payload, "created_at": stmt.excluded.created_at},
    )
    session.execute(stmt, list(latest.values()))


def record_bill_run_error(session: Session, run_on: date, customer_id: str, reason: str,
                          created_at: datetime) -> None:
    t = BillRunError.__table__
    stmt = _dialect_insert(session, t).values(run_on=run_on, customer_id=customer_id, reason=reason[:2000],
                                              created_at=created_at)
    session.execute(stmt.on_conflict_do_update(index_elements=["run_on", "customer_id"],
                                               set_={"reason": stmt.excluded.reason}))


def clear_bill_run_error(session: Session, run_on: date, customer_id: str) -> None:
    t = BillRunError.__table__
    session.execute(t.delete().where(t.c.run_on == run_on, t.c.customer_id == customer_id))


def get_invoice_for_update(session: Session, invoice_id: int) -> Invoice | None:
    return session.scalars(select(Invoice).where(Invoice.id == invoice_id).with_for_update()).first()


def invoice_lines(session: Session, invoice_id: int) -> list[InvoiceLine]:
    return list(session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
                             .order_by(InvoiceLine.position)).all())


def payable_invoices(session: Session, customer_id: str, currency: str | None = None) -> list[Invoice]:
    stmt = select(Invoice).where(Invoice.customer_id == customer_id,
                                 Invoice.status.in_(("open", "uncollectible")))
    if currency:
        stmt = stmt.where(Invoice.currency == currency)
    return list(session.scalars(stmt.order_by(Invoice.issued_on, Invoice.number).with_for_update()).all())


def invoices_of(session: Session, customer_id: str, ids: Sequence[int]) -> list[Invoice]:
    return list(session.scalars(select(Invoice).where(Invoice.customer_id == customer_id, Invoice.id.in_(ids))
                             .with_for_update()).all())


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


def credit_entries_sum(session: Session, payment_id: int, kinds: Sequence[str]) -> Decimal:
    t = CreditEntry.__table__
    rows = session.execute(select(t.c.amount).where(t.c.payment_id == payment_id, t.c.kind.in_(kinds))).scalars()
    return sum(rows, ZERO)


def find_usage(session: Session, source: str, key: str) -> UsageRecord | None:
    return session.scalars(select(UsageRecord).where(UsageRecord.source == source,
                                                  UsageRecord.idempotency_key == key)).first()


def usage_totals(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                 before: date) -> list[tuple[str, date, Decimal]]:
    """``(item id, occurred_on, quantity)`` per record in ``[on_or_after, before)`` (summed in Python:
    SUM over ExactDecimal text on SQLite would go through a float)."""
    t = UsageRecord.__table__
    return list(session.execute(
        select(t.c.subscription_item_id, t.c.occurred_on, t.c.quantity)
        .where(t.c.subscription_id == subscription_id, t.c.subscription_item_id.in_(list(item_ids)),
               t.c.occurred_on >= on_or_after, t.c.occurred_on < before)
    ).all())


def usage_records_for_subscriptions(session: Session, subscription_ids: Sequence[str],
                                    before: date) -> dict[str, list[tuple[str, date, Decimal]]]:
    """Per subscription, ``(item id, occurred_on, quantity)`` of its usage records before ``before``:
    one query per 900 subscriptions."""
    t = UsageRecord.__table__
    out: dict[str, list[tuple[str, date, Decimal]]] = {}
    ids = list(subscription_ids)
    for start in range(0, len(ids), 900):
        rows = session.execute(select(t.c.subscription_id, t.c.subscription_item_id, t.c.occurred_on, t.c.quantity)
                               .where(one_of(session, t.c.subscription_id, ids[start:start + 900]), t.c.occurred_on < before))
        for sid, item_id, on, quantity in rows:
            out.setdefault(sid, []).append((item_id, on, quantity))
    return out


def announced_mrr(session: Session, customer_ids: Sequence[str]) -> dict[tuple[str, str], Decimal]:
    t = CustomerMrr.__table__
    out: dict[tuple[str, str], Decimal] = {}
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        for cid, currency, mrr in session.execute(select(t.c.customer_id, t.c.currency, t.c.mrr)
                                                  .where(one_of(session, t.c.customer_id, ids[start:start + 900]))):
            out[(cid, currency)] = mrr
    return out


def save_announced_mrr(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert ``{customer_id, currency, mrr, measured_on}`` rows."""
    if not rows:
        return
    t = CustomerMrr.__table__
    if _upsert_arrays(session, t, rows, ["customer_id", "currency"], ["mrr", "measured_on"]):
        return
    stmt = _dialect_insert(session, t)
    stmt = stmt.on_conflict_do_update(index_elements=["customer_id", "currency"],
                                      set_={"mrr": stmt.excluded.mrr, "measured_on": stmt.excluded.measured_on})
    session.execute(stmt, list(rows))


def last_invoice_on(session: Session, customer_id: str) -> date | None:
    t = Invoice.__table__
    return session.execute(select(func.max(t.c.issued_on)).where(
        t.c.customer_id == customer_id, t.c.status.in_(("open", "paid", "uncollectible")))).scalar()


def customers_with_invoices(session: Session) -> list[str]:
    return list(session.execute(select(Invoice.__table__.c.customer_id).distinct()).scalars())


def count_rows(session: Session, model: type[SQLModel]) -> int:
    return session.execute(select(func.count()).select_from(model.__table__)).scalar_one()  # type: ignore[attr-defined]  # every table class has one


def next_numbers(session: Session, name: str, year: int, count: int) -> int:
    """Reserve ``count`` consecutive numbers of a gapless sequence; return the first.

    Same locking as ``next_number``; the block is used in the same transaction.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    table = NumberSequence.__table__
    stmt = select(table.c.next_value).where(table.c.name == name, table.c.year == year).with_for_update()
    value = session.execute(stmt).scalar()
    if value is None:
        ins = _dialect_insert(session, table).values(name=name, year=year, next_value=1)
        session.execute(ins.on_conflict_do_nothing(index_elements=["name", "year"]))
        value = session.execute(stmt).scalar_one()
    session.execute(update(table).where(table.c.name == name, table.c.year == year)
                    .values(next_value=value + count))
    return value


def insert_invoices(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Bulk insert draft invoices; ids in the order of ``rows``."""
    t = Invoice.__table__
    if len(rows) >= COPY_THRESHOLD and is_postgresql(session):
        ids = list(session.execute(text("SELECT nextval(pg_get_serial_sequence('invoices', 'id')) "
                                        "FROM generate_series(1, :n)"), {"n": len(rows)}).scalars())
        _copy_rows(session, t, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)], ["id", *rows[0]])
        return ids
    result = session.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), list(rows))
    return [r[0] for r in result]


def invoices_by_ids_for_update(session: Session, ids: Sequence[int]) -> list[Invoice]:
    """Invoices locked, in the order of ``ids``."""
    found: dict[int, Invoice] = {}
    for start in range(0, len(ids), 900):
        chunk = list(ids[start:start + 900])
        for inv in session.scalars(select(Invoice).where(Invoice.id.in_(chunk)).order_by(Invoice.id)
                                .with_for_update()).all():
            found[inv.id] = inv
    missing = [i for i in ids if i not in found]
    if missing:
        raise LookupError(f"invoices not found: {missing[:5]}")
    return [found[i] for i in ids]


def lines_by_invoice(session: Session, ids: Sequence[int]) -> dict[int, list[InvoiceLine]]:
    out: dict[int, list[InvoiceLine]] = {}
    for start in range(0, len(ids), 900):
        chunk = list(ids[start:start + 900])
        for ln in session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id.in_(chunk))
                               .order_by(InvoiceLine.invoice_id, InvoiceLine.position)).all():
            out.setdefault(ln.invoice_id, []).append(ln)
    return out


def lock_accounts(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decimal]:
    """Credit balances of existing accounts, locked (missing accounts have no credit)."""
    t = CustomerAccount.__table__
    out: dict[tuple[str, str], Decimal] = {}
    customers = sorted({k[0] for k in keys})
    for start in range(0, len(customers), 900):
        chunk = customers[start:start + 900]
        rows = session.execute(select(t.c.customer_id, t.c.currency, t.c.credit_balance)
                               .where(one_of(session, t.c.customer_id, chunk))
                               .order_by(t.c.customer_id, t.c.currency).with_for_update())
        for cid, cur, bal in rows:
            out[(cid, cur)] = bal
    return out


def mark_lines_credited(session: Session, invoice_id: int, keys: Sequence[str], credit_note_id: int) -> None:
    t = InvoiceLine.__table__
    session.execute(update(t).where(t.c.invoice_id == invoice_id, t.c.charge_key.in_(list(keys)))
                    .values(credit_note_id=credit_note_id))


_INVOICE_UPDATE_COLUMNS = ("status", "number", "issued_on", "due_on", "subtotal", "discount", "net", "tax",
                           "total", "amount_credited", "finalized_at", "status_changed_at")


def update_invoices(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk update by ``b_id``: the finalization figures."""
    if not rows:
        return
    t = Invoice.__table__
    stmt = update(t).where(t.c.id == bindparam("b_id")).values(
        {c: bindparam(c, type_=t.c[c].type) for c in _INVOICE_UPDATE_COLUMNS})
    session.connection().execute(stmt, list(rows))


def replace_taxes(session: Session, groups_by_invoice: dict[int, Sequence[Any]]) -> None:
    t = InvoiceTax.__table__
    ids = list(groups_by_invoice)
    for start in range(0, len(ids), 900):
        session.execute(t.delete().where(t.c.invoice_id.in_(ids[start:start + 900])))
    bulk_insert(session, InvoiceTax, [{"invoice_id": i, "tax_percent": g.percent, "net": g.net, "tax": g.tax}
                                      for i, groups in groups_by_invoice.items() for g in groups])


def credited_net(session: Session, invoice_id: int) -> Decimal:
    """Σ net of adjustment credit notes already issued on an invoice."""
    t = CreditNote.__table__
    rows = session.execute(select(t.c.net).where(t.c.invoice_id == invoice_id)).scalars()
    return sum(rows, ZERO)


def get_payment_for_update(session: Session, payment_id: int) -> Payment | None:
    return session.scalars(select(Payment).where(Payment.id == payment_id).with_for_update()).first()


def customer_currencies(session: Session, customer_id: str) -> set[str]:
    inv = Invoice.__table__
    acc = CustomerAccount.__table__
    found = set(session.execute(select(inv.c.currency).where(inv.c.customer_id == customer_id).distinct()).scalars())
    found.update(session.execute(select(acc.c.currency).where(acc.c.customer_id == customer_id)).scalars())
    return found


def find_invoice(session: Session, invoice_id: int) -> Invoice | None:
    return session.get(Invoice, invoice_id)


def unlocked_payable_invoices(session: Session, customer_id: str) -> list[Invoice]:
    return list(session.scalars(select(Invoice).where(Invoice.customer_id == customer_id,
                                                   Invoice.status.in_(("open", "uncollectible")))).all())


def credit_balances(session: Session, customer_id: str) -> dict[str, Decimal]:
    t = CustomerAccount.__table__
    rows = session.execute(select(t.c.currency, t.c.credit_balance).where(t.c.customer_id == customer_id))
    return {currency: balance for currency, balance in rows}


def usage_revenue(session: Session, from_on: date, before: date) -> dict[str, Decimal]:
    """Σ net of usage lines (late usage lines included, dated to their window; and corrections of
    usage lines after a price change: charge keys ``…:usage#…``) by period start."""
    ln, inv = InvoiceLine.__table__, Invoice.__table__
    rows = session.execute(select(inv.c.currency, ln.c.net).join(inv, inv.c.id == ln.c.invoice_id)
                           .where(or_(ln.c.kind == "usage", ln.c.charge_key.like("%:usage#%")),
                                  ln.c.starts_on >= from_on, ln.c.starts_on < before,
                                  inv.c.status.in_(("open", "paid", "uncollectible"))))
    out: dict[str, Decimal] = {}
    for currency, net in rows:
        out[currency] = out.get(currency, ZERO) + net
    return out


BILLING_MODELS: tuple[type[SQLModel], ...] = (
    NumberSequence, UsageRecord, Invoice, InvoiceLine, InvoiceTax, CreditNote, CreditNoteLine, Payment,
    PaymentAllocation, Refund, RefundAllocation, CustomerAccount, CreditEntry, CustomerMrr, BillRunError, OutboxRow,
)


def record_salesforce_ids(session: Session, kind: str, ids: dict[int, str]) -> None:
    """Remember the Salesforce record each invoice or payment was pushed to (``kind``:
    ``invoice`` or ``payment``; ``ids``: engine id → 18-character Salesforce id)."""
    if not ids:
        return
    table = {"invoice": Invoice, "payment": Payment}[kind].__table__  # type: ignore[attr-defined]  # every table class has one
    session.connection().execute(
        update(table).where(table.c.id == bindparam("b_id")).values(salesforce_id=bindparam("b_sfid")),
        [{"b_id": engine_id, "b_sfid": sfid} for engine_id, sfid in ids.items()])
