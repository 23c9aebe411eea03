"""credit notes and refunds in Salesforce: the record each was pushed to; voided invoices credited in full;
the last push and the reconciliations asked through the API

Revision ID: 0015_credit_notes_salesforce
Revises: 0014_api_access
Create Date: 2026-12-07

A voided invoice's credit note settles what was left of it; the invoice now counts it in its
``amount_credited`` (its balance is 0, as Salesforce shows it). Invoices voided before this
revision get the same figure from their credit note.
"""
import sqlite3
from decimal import Decimal

import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal
from connector.sync.tables import UtcDateTime

revision = "0015_credit_notes_salesforce"
down_revision = "0014_api_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("credit_notes", "refunds"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("salesforce_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True))
    _credit_voided_invoices(+1)
    op.create_table(
        "sync_job_runs",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("agrees", sa.Boolean(), nullable=False),
        sa.Column("engine_records", sa.Integer(), nullable=False),
        sa.Column("salesforce_records", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_runs")
    op.drop_table("sync_job_runs")
    _credit_voided_invoices(-1)
    # SQLite 3.35+ drops a column in place; copying the table instead would trip the foreign keys of
    # the rows pointing at it.
    recreate = "never" if sqlite3.sqlite_version_info >= (3, 35) else "auto"
    for table in ("refunds", "credit_notes"):
        with op.batch_alter_table(table, recreate=recreate) as batch:
            batch.drop_column("salesforce_id")


def _credit_voided_invoices(sign: int) -> None:
    """Add (``sign`` +1) or take back (-1) what each void's credit note applied to its invoice.

    Decimals are text on SQLite: the sums are made here, not in SQL."""
    bind = op.get_bind()
    invoices = sa.table("invoices", sa.column("id", sa.Integer), sa.column("status", sa.String),
                        sa.column("amount_credited", ExactDecimal()))
    notes = sa.table("credit_notes", sa.column("id", sa.Integer), sa.column("invoice_id", sa.Integer),
                     sa.column("applied_to_invoice", ExactDecimal()))
    lines = sa.table("credit_note_lines", sa.column("credit_note_id", sa.Integer),
                     sa.column("charge_key", sa.String))
    rows = bind.execute(
        sa.select(invoices.c.id, invoices.c.amount_credited, notes.c.applied_to_invoice, lines.c.charge_key)
        .join(notes, notes.c.invoice_id == invoices.c.id)
        .join(lines, lines.c.credit_note_id == notes.c.id)
        .where(invoices.c.status == "void", lines.c.charge_key.like("void:%"))).all()
    rows = [(invoice_id, credited, applied) for invoice_id, credited, applied, key in rows
            if key == f"void:{invoice_id}"]
    for invoice_id, credited, applied in rows:
        bind.execute(sa.update(invoices).where(invoices.c.id == invoice_id)
                     .values(amount_credited=(credited or Decimal(0)) + sign * (applied or Decimal(0))))
