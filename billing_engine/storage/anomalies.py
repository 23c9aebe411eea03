"""The anomaly guard's findings per invoice, and the history it reads.

``invoice_anomalies``: one row per finding of the guard (``billing_engine.anomalies``) on an
invoice — its kind, score and reason in plain words — with, once finance released the invoice
held for them, when and why (``released_at``, ``release_note``). An invoice is *held for
anomalies* while it is a draft with findings not released.

``customer_history`` reads the customers' finalized invoices with their lines as the pure
scorer's ``InvoiceFacts``: one query per 900 customers, by the ``(customer_id, issued_on)``
index of the invoices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, select, update
from sqlmodel import Field, Session, SQLModel

from billing_engine.anomalies import Finding, InvoiceFacts, LineFacts
from billing_engine.storage.columns import money_field, timestamp_field
from billing_engine.storage.database import bulk_insert, one_of
from billing_engine.storage.invoices import Invoice, InvoiceLine

#: The statuses of the invoices the history is made of (a void invoice was wrong; a draft is not final).
HISTORY_STATUSES = ("open", "paid", "uncollectible")


class InvoiceAnomaly(SQLModel, table=True):
    __tablename__ = "invoice_anomalies"
    __table_args__ = (Index("ix_invoice_anomalies_invoice", "invoice_id"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", nullable=False)
    kind: str = Field(max_length=24, nullable=False)
    score: Decimal = money_field()
    reason: str = Field(max_length=1000, nullable=False)
    created_at: datetime = timestamp_field()
    released_at: datetime | None = timestamp_field(nullable=True)
    release_note: str = Field(default="", max_length=500, nullable=False)


def add_findings(session: Session, findings: Sequence[tuple[int, Finding]], created_at: datetime) -> None:
    bulk_insert(session, InvoiceAnomaly, [
        {"invoice_id": invoice_id, "kind": f.kind, "score": f.score, "reason": f.reason[:1000],
         "created_at": created_at, "released_at": None, "release_note": ""}
        for invoice_id, f in findings])


def findings_of(session: Session, invoice_ids: Sequence[int]) -> dict[int, list[InvoiceAnomaly]]:
    out: dict[int, list[InvoiceAnomaly]] = {}
    t = InvoiceAnomaly
    for start in range(0, len(invoice_ids), 900):
        chunk = list(invoice_ids[start:start + 900])
        for row in session.scalars(select(t).where(t.invoice_id.in_(chunk)).order_by(t.invoice_id, t.id)):
            out.setdefault(row.invoice_id, []).append(row)
    return out


def held_invoices(session: Session, *, after: int | None, limit: int) -> list[Invoice]:
    """Drafts with findings not released, by id (keyset: ids after ``after``)."""
    held = select(InvoiceAnomaly.invoice_id).where(InvoiceAnomaly.released_at.is_(None))
    stmt = select(Invoice).where(Invoice.status == "draft", Invoice.id.in_(held))
    if after is not None:
        stmt = stmt.where(Invoice.id > after)
    return list(session.scalars(stmt.order_by(Invoice.id).limit(limit)))


def is_held(session: Session, invoice_id: int) -> bool:
    t = InvoiceAnomaly
    return session.scalar(select(t.id).where(t.invoice_id == invoice_id, t.released_at.is_(None)).limit(1)) is not None


def release(session: Session, invoice_id: int, note: str, released_at: datetime) -> None:
    t = InvoiceAnomaly.__table__
    session.execute(update(t).where(t.c.invoice_id == invoice_id, t.c.released_at.is_(None))
                    .values(released_at=released_at, release_note=note[:500]))


def customer_history(session: Session, customer_ids: Sequence[str], *, since: date,
                     before: date) -> dict[str, list[InvoiceFacts]]:
    """Per customer, the invoices issued in ``[since, before)`` and still standing (open, paid,
    uncollectible), oldest first, with their lines."""
    inv, ln = Invoice.__table__, InvoiceLine.__table__
    out: dict[str, list[InvoiceFacts]] = {}
    for start in range(0, len(customer_ids), 900):
        chunk = list(customer_ids[start:start + 900])
        rows = session.execute(
            select(inv.c.id, inv.c.customer_id, inv.c.issued_on, inv.c.currency, inv.c.net, ln.c.product_code,
                   ln.c.product_name, ln.c.kind, ln.c.subscription_id, ln.c.starts_on, ln.c.ends_before,
                   ln.c.quantity, ln.c.unit_price, ln.c.gross, ln.c.line_discount, ln.c.tax_percent)
            .join(ln, ln.c.invoice_id == inv.c.id)
            .where(one_of(session, inv.c.customer_id, chunk), inv.c.status.in_(HISTORY_STATUSES),
                   inv.c.issued_on >= since, inv.c.issued_on < before)
            .order_by(inv.c.customer_id, inv.c.issued_on, inv.c.id, ln.c.position))
        current: list[Any] = []
        for row in rows:
            if current and current[0][0] != row[0]:
                _add(out, current)
                current = []
            current.append(row)
        if current:
            _add(out, current)
    return out


def _add(out: dict[str, list[InvoiceFacts]], rows: list[Any]) -> None:
    head = rows[0]
    lines = tuple(LineFacts._make(r[5:]) for r in rows)
    out.setdefault(head[1], []).append(InvoiceFacts(head[2], head[3], head[4], lines))
