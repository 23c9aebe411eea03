"""Invoices, their lines and tax breakdown, credit notes, number sequences and bill-run errors.

Every money or quantity column is ``ExactDecimal``. Ids of rows owned here are
integers; customer, subscription and subscription-item ids are the catalog's and
subscriptions' string ids. Invariants enforced by the database, not by luck:

- ``invoice_lines.charge_key`` is UNIQUE: a charge (subscription item + period
  start + kind [+ amendment]) is billed once, whatever runs concurrently;
- ``invoices.number`` and ``credit_notes.number`` are UNIQUE, drawn from
  ``number_sequences`` inside the finalizing transaction (row lock on PostgreSQL,
  ``BEGIN IMMEDIATE`` on SQLite), so numbers are gapless and never shared;
- ``bill_run_errors (run_on, customer_id)`` is UNIQUE: a re-run rewrites the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Index,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import (
    COPY_THRESHOLD,
    bulk_insert,
    copy_rows,
    dialect_insert,
    is_postgresql,
    one_of,
)

ZERO = Decimal(0)


class NumberSequence(SQLModel, table=True):
    """Gapless counters: one row per sequence name and year (``INV`` 2026 → next 42)."""

    __tablename__ = "number_sequences"
    name: str = Field(primary_key=True, max_length=40)
    year: int = Field(primary_key=True)
    next_value: int = Field(default=1, nullable=False)


#: Owed invoices with a balance, as the receivables read them (``storage.reporting``): a partial
#: index's predicate, spelled as the reads' conditions so that PostgreSQL proves them from it.
OWED_WITH_BALANCE = ("status IN ('open', 'uncollectible') AND "
                     "((total - amount_paid) - amount_credited) + amount_refunded > 0")


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_customer_status", "customer_id", "status"),
        # The invoice list's order (drafts first, then newest issued: ``invoice_page``), on its own and
        # behind each equality filter, so that any page costs its size whatever the table holds.
        Index("ix_invoices_issued_on_id", "issued_on", "id"),
        Index("ix_invoices_status_issued_on_id", "status", "issued_on", "id"),
        Index("ix_invoices_customer_issued_on_id", "customer_id", "issued_on", "id"),
        Index("ix_invoices_currency_issued_on_id", "currency", "issued_on", "id"),
        # Search by the beginning of a number (``LIKE 'INV-2026-00%'``) whatever the collation.
        Index("ix_invoices_number_prefix", "number", postgresql_ops={"number": "varchar_pattern_ops"}),
        # Receivables by aging bucket and customers past due (docs/reporting.md): the invoices owed
        # only (on PostgreSQL, with a balance above 0), by due date, with what their balance is made
        # of (an index-only scan on PostgreSQL, without computing each balance again).
        Index("ix_invoices_owed_due_on", "due_on",
              postgresql_include=["customer_id", "currency", "total", "amount_paid", "amount_credited",
                                  "amount_refunded"],
              postgresql_where=text(OWED_WITH_BALANCE),
              sqlite_where=text("status IN ('open', 'uncollectible')")),
    )
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    status: str = Field(max_length=16, nullable=False)
    number: str | None = Field(default=None, max_length=40, unique=True)
    bill_run_on: date | None = None
    issued_on: date | None = None
    due_on: date | None = None
    payment_terms_days: int = Field(default=30, nullable=False)
    tax_percent: Decimal = money_field()
    tax_reason: str = Field(default="", max_length=200)
    subtotal: Decimal = money_field()
    discount: Decimal = money_field()
    net: Decimal = money_field()
    tax: Decimal = money_field()
    total: Decimal = money_field()
    amount_credited: Decimal = money_field()  # customer credit + credit notes applied
    amount_paid: Decimal = money_field()
    amount_refunded: Decimal = money_field()
    created_at: datetime = timestamp_field()
    finalized_at: datetime | None = timestamp_field(nullable=True)
    status_changed_at: datetime | None = timestamp_field(nullable=True)
    # The Invoice__c record this invoice was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)
    # The buyer's references of its subscriptions (EN 16931 BT-13 purchase order, BT-10 buyer reference).
    purchase_order: str = Field(default="", max_length=80, nullable=False)
    buyer_reference: str = Field(default="", max_length=80, nullable=False)
    # Its subscriptions' custom attributes as they were when it was assembled: a JSON object of strings.
    attributes_json: str = Field(default="{}", sa_type=Text, nullable=False)

    @property
    def attributes(self) -> dict[str, str]:
        """The custom attributes it carries, by name (sorted)."""
        return dict(sorted(json.loads(self.attributes_json or "{}").items()))

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
    quantity: Decimal = money_field()
    unit_price: Decimal = money_field()
    gross: Decimal = money_field()
    line_discount: Decimal = money_field()
    invoice_discount: Decimal = money_field()
    net: Decimal = money_field()
    tax_percent: Decimal = money_field()
    tax_category: str = Field(default="", max_length=2, nullable=False)  # EN 16931 code; '' derived from the rate
    tax_reason: str = Field(default="", max_length=255, nullable=False)  # why a 0 % line is not taxed
    # How the amount was computed ("Licences 12 × graduated: 5 × 200 + ..."), for Salesforce.
    explanation: str = Field(default="", sa_type=Text, nullable=False)
    # Set when a credit line moved to a credit note (credits exceeded charges).
    credit_note_id: int | None = Field(default=None, foreign_key="credit_notes.id")


class InvoiceTax(SQLModel, table=True):
    """The VAT breakdown: one row per VAT group (category, rate) on an invoice."""

    __tablename__ = "invoice_taxes"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False, index=True)
    tax_percent: Decimal = money_field()
    net: Decimal = money_field()
    tax: Decimal = money_field()
    category: str = Field(default="", max_length=2, nullable=False)
    reason: str = Field(default="", max_length=500, nullable=False)


class CreditNote(SQLModel, table=True):
    __tablename__ = "credit_notes"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=40, nullable=False, unique=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id", index=True)
    currency: str = Field(max_length=3, nullable=False)
    reason: str = Field(max_length=500, nullable=False)
    issued_on: date = Field(nullable=False)
    net: Decimal = money_field()
    tax: Decimal = money_field()
    total: Decimal = money_field()
    applied_to_invoice: Decimal = money_field()
    to_credit_balance: Decimal = money_field()
    created_at: datetime = timestamp_field()
    # The Credit_Note__c record this credit note was pushed to (written back by the connector).
    salesforce_id: str | None = Field(default=None, max_length=18)


class CreditNoteLine(SQLModel, table=True):
    __tablename__ = "credit_note_lines"
    id: int | None = Field(default=None, primary_key=True)
    credit_note_id: int = Field(foreign_key="credit_notes.id", nullable=False, index=True)
    charge_key: str | None = Field(default=None, max_length=255)
    description: str = Field(max_length=500, default="")
    net: Decimal = money_field()
    tax_percent: Decimal = money_field()
    tax_category: str = Field(default="", max_length=2, nullable=False)
    tax_reason: str = Field(default="", max_length=255, nullable=False)


class BillRunError(SQLModel, table=True):
    __tablename__ = "bill_run_errors"
    __table_args__ = (UniqueConstraint("run_on", "customer_id", name="uq_bill_run_errors_run_customer"),)
    id: int | None = Field(default=None, primary_key=True)
    run_on: date = Field(nullable=False)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False)
    reason: str = Field(nullable=False, max_length=2000)
    created_at: datetime = timestamp_field()


# ---------------------------------------------------------------- queries


def billed_keys(session: Session, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    found: set[str] = set()
    col = InvoiceLine.__table__.c.charge_key
    for start in range(0, len(keys), 900):
        chunk = keys[start:start + 900]
        found.update(session.execute(select(col).where(col.in_(chunk))).scalars())
    return found


def billed_lines_for_subscriptions(session: Session, subscription_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Per subscription, what was billed per charge key (``BilledCharge``-shaped rows:
    key, amount as charged = gross − line discount, quantity, unit_price, starts_on, ends_before, discount)."""
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
            out.setdefault(sid, []).append(BilledLine(key, gross - disc, qty, price, starts, ends, disc))
    return out


class BilledLine:
    __slots__ = ("key", "amount", "quantity", "unit_price", "starts_on", "ends_before", "discount")

    def __init__(self, key, amount, quantity, unit_price, starts_on, ends_before, discount):
        self.key, self.amount, self.quantity, self.unit_price = key, amount, quantity, unit_price
        self.starts_on, self.ends_before, self.discount = starts_on, ends_before, discount


def record_bill_run_error(session: Session, run_on: date, customer_id: str, reason: str,
                          created_at: datetime) -> None:
    t = BillRunError.__table__
    stmt = dialect_insert(session, t).values(run_on=run_on, customer_id=customer_id, reason=reason[:2000],
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


def last_invoice_on(session: Session, customer_id: str) -> date | None:
    t = Invoice.__table__
    return session.execute(select(func.max(t.c.issued_on)).where(
        t.c.customer_id == customer_id, t.c.status.in_(("open", "paid", "uncollectible")))).scalar()


def next_numbers(session: Session, name: str, year: int, count: int) -> int:
    """Reserve ``count`` consecutive numbers of a gapless sequence; return the first.

    PostgreSQL: the row is locked (``FOR UPDATE``) until the transaction ends, so a concurrent
    finalization waits and takes the following numbers; a rollback releases them. SQLite: the
    transaction began with ``BEGIN IMMEDIATE``. The block is used in the same transaction.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    table = NumberSequence.__table__
    stmt = select(table.c.next_value).where(table.c.name == name, table.c.year == year).with_for_update()
    value = session.execute(stmt).scalar()
    if value is None:
        ins = dialect_insert(session, table).values(name=name, year=year, next_value=1)
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
        copy_rows(session, t, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)], ["id", *rows[0]])
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
    bulk_insert(session, InvoiceTax, [tax_row(i, g) for i, groups in groups_by_invoice.items() for g in groups])


def tax_row(invoice_id: int, group: Any) -> dict[str, Any]:
    """The ``invoice_taxes`` row of one VAT group (``tax.TaxGroup``)."""
    return {"invoice_id": invoice_id, "tax_percent": group.percent, "net": group.net, "tax": group.tax,
            "category": group.category, "reason": group.reason[:500]}


def invoice_tax_groups(session: Session, invoice_id: int) -> list[InvoiceTax]:
    """The VAT breakdown of an invoice, one row per group, by rate and id (sorted here: SQLite keeps
    decimals as text)."""
    groups = session.scalars(select(InvoiceTax).where(InvoiceTax.invoice_id == invoice_id)).all()
    return sorted(groups, key=lambda g: (g.tax_percent, g.id))


def find_credit_note_row(session: Session, credit_note_id: int) -> CreditNote | None:
    return session.get(CreditNote, credit_note_id)


def credit_note_lines_of(session: Session, credit_note_ids: Sequence[int]) -> dict[int, list[CreditNoteLine]]:
    """The lines of these credit notes, per credit note, in the order they were written."""
    out: dict[int, list[CreditNoteLine]] = {}
    wanted = sorted(set(credit_note_ids))
    for start in range(0, len(wanted), 900):
        for line in session.scalars(select(CreditNoteLine).where(
                CreditNoteLine.credit_note_id.in_(wanted[start:start + 900])).order_by(CreditNoteLine.id)).all():
            out.setdefault(line.credit_note_id, []).append(line)
    return out


def later_credit_notes_applied(session: Session, invoice_ids: Sequence[int]) -> dict[int, Decimal]:
    """Per invoice, what credit notes issued after its finalization applied to it (adjustments, a void):
    every credit note of the invoice except the one its own credit lines moved to."""
    notes, lines = CreditNote.__table__, InvoiceLine.__table__
    out: dict[int, Decimal] = {}
    wanted = sorted(set(invoice_ids))
    for start in range(0, len(wanted), 900):
        chunk = wanted[start:start + 900]
        split = select(lines.c.credit_note_id).where(lines.c.invoice_id.in_(chunk),
                                                     lines.c.credit_note_id.is_not(None))
        for invoice_id, applied in session.execute(
                select(notes.c.invoice_id, notes.c.applied_to_invoice)
                .where(notes.c.invoice_id.in_(chunk), notes.c.id.not_in(split))):
            out[invoice_id] = out.get(invoice_id, ZERO) + applied
    return out


def invoice_that_billed(session: Session, subscription_id: str, item_id: str, on: date) -> Invoice | None:
    """The latest finalized invoice with a charge of this subscription item for a period holding ``on``
    (the invoice a proration credit for that day corrects)."""
    lines, inv = InvoiceLine.__table__, Invoice.__table__
    invoice_id = session.execute(
        select(lines.c.invoice_id).join(inv, inv.c.id == lines.c.invoice_id)
        .where(lines.c.subscription_id == subscription_id, lines.c.item_id == item_id, lines.c.starts_on <= on,
               lines.c.ends_before > on, lines.c.credit_note_id.is_(None), inv.c.number.is_not(None))
        .order_by(lines.c.invoice_id.desc()).limit(1)).scalar()
    return None if invoice_id is None else session.get(Invoice, invoice_id)


def credited_net(session: Session, invoice_id: int) -> Decimal:
    """Σ net of adjustment credit notes already issued on an invoice."""
    t = CreditNote.__table__
    rows = session.execute(select(t.c.net).where(t.c.invoice_id == invoice_id)).scalars()
    return sum(rows, ZERO)


def find_invoice(session: Session, invoice_id: int) -> Invoice | None:
    return session.get(Invoice, invoice_id)


def unlocked_payable_invoices(session: Session, customer_id: str) -> list[Invoice]:
    return list(session.scalars(select(Invoice).where(Invoice.customer_id == customer_id,
                                                   Invoice.status.in_(("open", "uncollectible")))).all())


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


# ---------------------------------------------------------------- reads for the exports


def invoices_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Invoice]:
    """The invoices with these ids (missing ids are absent): one query per 900."""
    wanted = sorted(set(ids))
    out: dict[int, Invoice] = {}
    for start in range(0, len(wanted), 900):
        out.update({inv.id: inv for inv in session.scalars(
            select(Invoice).where(Invoice.id.in_(wanted[start:start + 900]))).all()})
    return out


def invoice_ids_of_lines(session: Session, line_ids: Iterable[int]) -> dict[int, int]:
    """The invoice each of these lines belongs to (missing ids are absent): one query per 900."""
    wanted = sorted(set(line_ids))
    t = InvoiceLine.__table__
    out: dict[int, int] = {}
    for start in range(0, len(wanted), 900):
        out.update(session.execute(select(t.c.id, t.c.invoice_id).where(t.c.id.in_(wanted[start:start + 900]))).all())
    return out


def invoice_periods(session: Session, ids: Iterable[int]) -> dict[int, tuple[date, date, str]]:
    """Per invoice: its first line's start, its last line's end and its first subscription id
    (lines moved to a credit note left out)."""
    wanted = sorted(set(ids))
    t = InvoiceLine.__table__
    out: dict[int, tuple[date, date, str]] = {}
    for start in range(0, len(wanted), 900):
        rows = session.execute(select(t.c.invoice_id, func.min(t.c.starts_on), func.max(t.c.ends_before),
                                      func.min(t.c.subscription_id))
                               .where(t.c.invoice_id.in_(wanted[start:start + 900]), t.c.credit_note_id.is_(None))
                               .group_by(t.c.invoice_id))
        for invoice_id, starts, ends, subscription_id in rows:
            out[invoice_id] = (starts, ends, subscription_id)
    return out


def lines_of_invoices(session: Session, ids: Iterable[int]) -> list[Any]:
    """The lines of these invoices that belong to them (not moved to a credit note), as Core rows
    (``id, invoice_id, position, product_code, product_name, kind, description, starts_on,
    ends_before, quantity, unit_price, line_discount, invoice_discount, net, tax_percent,
    explanation``) ordered by invoice, position, id."""
    wanted = sorted(set(ids))
    t = InvoiceLine.__table__
    columns = (t.c.id, t.c.invoice_id, t.c.position, t.c.product_code, t.c.product_name, t.c.kind, t.c.description,
               t.c.starts_on, t.c.ends_before, t.c.quantity, t.c.unit_price, t.c.line_discount,
               t.c.invoice_discount, t.c.net, t.c.tax_percent, t.c.explanation, t.c.tax_category)
    lines: list[Any] = []  # Core rows: 5 lines an invoice make this the biggest read of a push
    for start in range(0, len(wanted), 900):
        lines.extend(session.execute(select(*columns).where(t.c.invoice_id.in_(wanted[start:start + 900]),
                                                            t.c.credit_note_id.is_(None))).all())
    return sorted(lines, key=lambda x: (x.invoice_id, x.position, x.id))


def invoice_currencies(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    t = Invoice.__table__
    out: dict[int, str] = {}
    for start in range(0, len(wanted), 900):
        out.update(dict(session.execute(select(t.c.id, t.c.currency)
                                        .where(t.c.id.in_(wanted[start:start + 900]))).all()))
    return out


def credit_notes_by_ids(session: Session, ids: Iterable[int]) -> dict[int, CreditNote]:
    """The credit notes with these ids (missing ids are absent): one query per 900."""
    wanted = sorted(set(ids))
    out: dict[int, CreditNote] = {}
    for start in range(0, len(wanted), 900):
        out.update({cn.id: cn for cn in session.scalars(
            select(CreditNote).where(CreditNote.id.in_(wanted[start:start + 900]))).all()})
    return out


def lines_of_credit_notes(session: Session, ids: Iterable[int]) -> list[CreditNoteLine]:
    """The lines of these credit notes, by credit note and id."""
    wanted = sorted(set(ids))
    lines: list[CreditNoteLine] = []
    for start in range(0, len(wanted), 900):
        lines.extend(session.scalars(select(CreditNoteLine).where(
            CreditNoteLine.credit_note_id.in_(wanted[start:start + 900]))).all())
    return sorted(lines, key=lambda ln: (ln.credit_note_id, ln.id))


def invoice_lines_by_charge_key(session: Session, pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The id of the line of each ``(invoice id, charge key)`` that belongs to the invoice (not moved
    to a credit note); pairs without such a line are absent."""
    wanted = sorted(set(pairs))
    t = InvoiceLine.__table__
    out: dict[tuple[int, str], int] = {}
    for start in range(0, len(wanted), 900):
        chunk = set(wanted[start:start + 900])
        for line_id, invoice_id, key in session.execute(
                select(t.c.id, t.c.invoice_id, t.c.charge_key)
                .where(t.c.invoice_id.in_(sorted({i for i, _ in chunk})),
                       t.c.charge_key.in_(sorted({k for _, k in chunk})), t.c.credit_note_id.is_(None))):
            if (invoice_id, key) in chunk:
                out[(invoice_id, key)] = line_id
    return out


def credit_notes_issued_between(session: Session, starts_on: date, ends_before: date) -> list[CreditNote]:
    """Credit notes issued in ``[starts_on, ends_before)``, by issue date and number."""
    return list(session.scalars(
        select(CreditNote).where(CreditNote.issued_on >= starts_on, CreditNote.issued_on < ends_before)
        .order_by(CreditNote.issued_on, CreditNote.number)).all())


def payable_invoices_of_customers(session: Session, customer_ids: Sequence[str]) -> dict[str, list[Invoice]]:
    """Per customer, its open and uncollectible invoices (not locked)."""
    out: dict[str, list[Invoice]] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), 900):
        for inv in session.scalars(select(Invoice).where(Invoice.customer_id.in_(ids[start:start + 900]),
                                                         Invoice.status.in_(("open", "uncollectible")))).all():
            out.setdefault(inv.customer_id, []).append(inv)
    return out


def last_invoice_dates(session: Session, customer_ids: Sequence[str]) -> dict[str, date]:
    """Per customer, the issue date of its last finalized (open, paid or uncollectible) invoice."""
    t = Invoice.__table__
    out: dict[str, date] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), 900):
        out.update(dict(session.execute(
            select(t.c.customer_id, func.max(t.c.issued_on))
            .where(t.c.customer_id.in_(ids[start:start + 900]), t.c.status.in_(("open", "paid", "uncollectible")))
            .group_by(t.c.customer_id)).all()))
    return out


def invoices_issued_between(session: Session, starts_on: date, ends_before: date) -> list[Invoice]:
    """Finalized invoices (not drafts) issued in ``[starts_on, ends_before)``, by issue date and number."""
    return list(session.scalars(
        select(Invoice).where(Invoice.issued_on >= starts_on, Invoice.issued_on < ends_before,
                              Invoice.status != "draft").order_by(Invoice.issued_on, Invoice.number)).all())


def customers_of_invoices(session: Session, ids: Sequence[int]) -> set[str]:
    return set(session.execute(select(Invoice.customer_id).where(Invoice.id.in_(list(ids)))).scalars()) \
        if ids else set()


# ---------------------------------------------------------------- reads for the invoice list and detail

#: The key of an invoice in the list's order: ``(issued_on, id)``, ``issued_on`` None for a draft.
InvoiceKey = tuple[date | None, int]


#: What a row of the invoice list reads (Core rows, with attribute access by these names).
LIST_COLUMNS = ("id", "number", "customer_id", "status", "currency", "issued_on", "due_on", "total", "amount_paid",
                "amount_credited", "amount_refunded")


def invoice_page(session: Session, *, limit: int, after: InvoiceKey | None = None, statuses: Sequence[str] = (),
                 customer_id: str | None = None, currency: str | None = None, issued_from: date | None = None,
                 issued_before: date | None = None, number_prefix: str | None = None) -> list[Any]:
    """At most ``limit`` invoices matching every filter given, in the list's order: invoices not
    issued yet (drafts, and drafts voided) first, newest id first; then the issued ones by issue
    date and id, newest first. ``after``: the key of the last invoice of the previous page.

    Each part is one range of an ``(…, issued_on, id)`` index (``ix_invoices_*_issued_on_id``), so
    a page reads about its own rows whether it is the first or the ten-thousandth. An issue-date
    range leaves the drafts out. ``number_prefix`` matches the beginning of the number. Rows carry
    ``LIST_COLUMNS``.
    """
    t = Invoice.__table__
    columns = [t.c[name] for name in LIST_COLUMNS]
    where: list[Any] = []
    if len(statuses) == 1:
        where.append(t.c.status == statuses[0])
    elif statuses:
        where.append(t.c.status.in_(list(statuses)))
    if customer_id is not None:
        where.append(t.c.customer_id == customer_id)
    if currency is not None:
        where.append(t.c.currency == currency)
    if issued_from is not None:
        where.append(t.c.issued_on >= issued_from)
    if issued_before is not None:
        where.append(t.c.issued_on < issued_before)
    if number_prefix:
        escaped = number_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(t.c.number.like(escaped + "%", escape="\\"))
    found: list[Any] = []
    if issued_from is None and issued_before is None and (after is None or after[0] is None):
        drafts = select(*columns).where(*where, t.c.issued_on.is_(None))
        if after is not None:
            drafts = drafts.where(t.c.id < after[1])
        found.extend(session.execute(drafts.order_by(t.c.id.desc()).limit(limit)).all())
    if len(found) < limit:
        issued = select(*columns).where(*where, t.c.issued_on.is_not(None))
        if after is not None and after[0] is not None:
            issued = issued.where(tuple_(t.c.issued_on, t.c.id) < tuple_(after[0], after[1]))
        found.extend(session.execute(issued.order_by(t.c.issued_on.desc(), t.c.id.desc())
                                     .limit(limit - len(found))).all())
    return found


def find_invoice_by_number(session: Session, number: str) -> Invoice | None:
    return session.scalars(select(Invoice).where(Invoice.number == number)).first()


def invoice_taxes(session: Session, invoice_id: int) -> list[InvoiceTax]:
    return list(session.scalars(select(InvoiceTax).where(InvoiceTax.invoice_id == invoice_id)
                                .order_by(InvoiceTax.tax_percent, InvoiceTax.id)).all())


def find_credit_note(session: Session, credit_note_id: int) -> CreditNote | None:
    return session.get(CreditNote, credit_note_id)


def credit_notes_of_invoice(session: Session, invoice_id: int) -> list[CreditNote]:
    return list(session.scalars(select(CreditNote).where(CreditNote.invoice_id == invoice_id)
                                .order_by(CreditNote.id)).all())


def credit_note_lines(session: Session, credit_note_ids: Sequence[int]) -> dict[int, list[CreditNoteLine]]:
    """The lines of these credit notes, per credit note, in the order they were written."""
    out: dict[int, list[CreditNoteLine]] = {}
    wanted = sorted(set(credit_note_ids))
    for start in range(0, len(wanted), 900):
        for line in session.scalars(select(CreditNoteLine).where(
                CreditNoteLine.credit_note_id.in_(wanted[start:start + 900])).order_by(CreditNoteLine.id)).all():
            out.setdefault(line.credit_note_id, []).append(line)
    return out


def credited_by_charge_key(session: Session, invoice_id: int) -> dict[str, Decimal]:
    """Σ net credited per charge key by the credit notes of an invoice (per-line credits are keyed by
    the line's charge key; amount adjustments and voids by their own keys)."""
    notes, lines = CreditNote.__table__, CreditNoteLine.__table__
    out: dict[str, Decimal] = {}
    for key, net in session.execute(select(lines.c.charge_key, lines.c.net)
                                    .join(notes, notes.c.id == lines.c.credit_note_id)
                                    .where(notes.c.invoice_id == invoice_id)):
        if key is not None:
            out[key] = out.get(key, ZERO) + net
    return out


def finalized_invoices_of_customer(session: Session, customer_id: str, through: date) -> list[Invoice]:
    """The customer's invoices issued up to ``through`` (every state but draft), by issue date and id."""
    return list(session.scalars(
        select(Invoice).where(Invoice.customer_id == customer_id, Invoice.issued_on.is_not(None),
                              Invoice.issued_on <= through, Invoice.status != "draft")
        .order_by(Invoice.issued_on, Invoice.id)).all())


def credit_notes_of_customer(session: Session, customer_id: str, through: date) -> list[CreditNote]:
    """The customer's credit notes issued up to ``through``, by issue date and id."""
    return list(session.scalars(
        select(CreditNote).where(CreditNote.customer_id == customer_id, CreditNote.issued_on <= through)
        .order_by(CreditNote.issued_on, CreditNote.id)).all())


def invoice_numbers(session: Session, ids: Iterable[int]) -> dict[int, str | None]:
    wanted = sorted(set(ids))
    t = Invoice.__table__
    out: dict[int, str | None] = {}
    for start in range(0, len(wanted), 900):
        out.update(dict(session.execute(select(t.c.id, t.c.number)
                                        .where(t.c.id.in_(wanted[start:start + 900]))).all()))
    return out
