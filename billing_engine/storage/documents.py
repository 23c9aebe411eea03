"""Invoice documents: the PDF and Factur-X XML of each finalized invoice and credit note.

A document is stored once (UNIQUE per invoice and per credit note) and never changed: what was
sent to a customer stays what billsync serves. Each file carries its SHA-256 so anyone can check
a copy. ``insert_documents`` skips a document that already exists (a second generator racing the
first stores nothing), and returns which rows it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel

from billing_engine.storage.columns import timestamp_field
from billing_engine.storage.database import dialect_insert
from billing_engine.storage.invoices import CreditNote, Invoice


class InvoiceDocument(SQLModel, table=True):
    __tablename__ = "invoice_documents"
    __table_args__ = (UniqueConstraint("invoice_id", name="uq_invoice_documents_invoice"),
                      UniqueConstraint("credit_note_id", name="uq_invoice_documents_credit_note"))
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    credit_note_id: int | None = Field(default=None, foreign_key="credit_notes.id")
    number: str = Field(max_length=40, nullable=False, unique=True)
    language: str = Field(max_length=2, nullable=False)
    pdf: bytes = Field(sa_type=LargeBinary, nullable=False)
    pdf_sha256: str = Field(max_length=64, nullable=False)
    # The Factur-X XML embedded in the PDF; None when the invoice cannot carry one (``note`` says why).
    xml: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    xml_sha256: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=500, nullable=False)
    created_at: datetime = timestamp_field()


def insert_documents(session: Session, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert the documents not stored yet (one per invoice or credit note), in one statement; return
    those inserted, each with its ``id``, in the order given."""
    if not rows:
        return []
    table = InvoiceDocument.__table__  # type: ignore[attr-defined]
    stmt = (dialect_insert(session, table).values(list(rows)).on_conflict_do_nothing()
            .returning(table.c.id, table.c.number))
    ids = {number: document_id for document_id, number in session.execute(stmt)}
    return [{**row, "id": ids[row["number"]]} for row in rows if row["number"] in ids]


def documents_due(session: Session, limit: int, *, after_invoice: int = 0,
                  after_credit_note: int = 0) -> list[tuple[str, int]]:
    """Finalized invoices and credit notes without a document, oldest first: ``("invoice", id)`` and
    ``("credit_note", id)``, ids after those given, at most ``limit`` of each kind per call."""
    docs = InvoiceDocument.__table__  # type: ignore[attr-defined]
    inv, cn = Invoice.__table__, CreditNote.__table__  # type: ignore[attr-defined]
    invoices = session.execute(
        select(inv.c.id).where(inv.c.id > after_invoice, inv.c.number.is_not(None), inv.c.status != "draft",
                               ~select(docs.c.id).where(docs.c.invoice_id == inv.c.id).exists())
        .order_by(inv.c.id).limit(limit)).scalars()
    notes = session.execute(
        select(cn.c.id).where(cn.c.id > after_credit_note,
                              ~select(docs.c.id).where(docs.c.credit_note_id == cn.c.id).exists())
        .order_by(cn.c.id).limit(limit)).scalars()
    return [("invoice", i) for i in invoices] + [("credit_note", i) for i in notes]


def find_document(session: Session, *, invoice_id: int | None = None,
                  credit_note_id: int | None = None) -> InvoiceDocument | None:
    stmt = select(InvoiceDocument)
    stmt = stmt.where(InvoiceDocument.invoice_id == invoice_id) if invoice_id is not None else \
        stmt.where(InvoiceDocument.credit_note_id == credit_note_id)
    return session.scalars(stmt).first()


def documents_by_ids(session: Session, ids: Sequence[int]) -> dict[int, InvoiceDocument]:
    wanted = sorted(set(ids))
    out: dict[int, InvoiceDocument] = {}
    for start in range(0, len(wanted), 900):
        out.update({d.id: d for d in session.scalars(
            select(InvoiceDocument).where(InvoiceDocument.id.in_(wanted[start:start + 900]))).all()})
    return out
