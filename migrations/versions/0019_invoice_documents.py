"""invoice documents and VAT per line: product tax categories, each line's and each VAT group's
category and reason, the buyer's references on subscriptions and invoices, the customer's document
language, and the stored PDF and Factur-X XML of each invoice and credit note

Revision ID: 0019_invoice_documents
Revises: 0018_collections
Create Date: 2026-12-12
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal

revision = "0019_invoice_documents"
down_revision = "0018_collections"
branch_labels = None
depends_on = None


def _text(length):
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("tax_category", _text(20), nullable=True))
        batch.add_column(sa.Column("tax_rate_percent", ExactDecimal(), nullable=True))
        batch.add_column(sa.Column("tax_exemption_reason", _text(255), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("language", _text(2), nullable=True))
    for table in ("subscriptions", "invoices"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("purchase_order", _text(80), nullable=False, server_default=""))
            batch.add_column(sa.Column("buyer_reference", _text(80), nullable=False, server_default=""))
    for table in ("invoice_lines", "credit_note_lines"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tax_category", _text(2), nullable=False, server_default=""))
            batch.add_column(sa.Column("tax_reason", _text(255), nullable=False, server_default=""))
    with op.batch_alter_table("invoice_taxes") as batch:
        batch.add_column(sa.Column("category", _text(2), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason", _text(500), nullable=False, server_default=""))
    op.create_table(
        "invoice_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("credit_note_id", sa.Integer(), nullable=True),
        sa.Column("number", _text(40), nullable=False),
        sa.Column("language", _text(2), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("pdf_sha256", _text(64), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=True),
        sa.Column("xml_sha256", _text(64), nullable=True),
        sa.Column("note", _text(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["credit_note_id"], ["credit_notes.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credit_note_id", name="uq_invoice_documents_credit_note"),
        sa.UniqueConstraint("invoice_id", name="uq_invoice_documents_invoice"),
        sa.UniqueConstraint("number"),
    )


def downgrade() -> None:
    # SQLite drops these columns in place (ALTER TABLE DROP COLUMN, SQLite 3.35+): recreating a table
    # that others reference would break their foreign keys.
    op.drop_table("invoice_documents")
    with op.batch_alter_table("invoice_taxes", recreate="never") as batch:
        batch.drop_column("reason")
        batch.drop_column("category")
    for table in ("credit_note_lines", "invoice_lines"):
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("tax_reason")
            batch.drop_column("tax_category")
    for table in ("invoices", "subscriptions"):
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("buyer_reference")
            batch.drop_column("purchase_order")
    with op.batch_alter_table("customers", recreate="never") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("products", recreate="never") as batch:
        batch.drop_column("tax_exemption_reason")
        batch.drop_column("tax_rate_percent")
        batch.drop_column("tax_category")
