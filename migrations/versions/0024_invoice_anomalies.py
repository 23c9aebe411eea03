"""the anomaly guard's findings per invoice: kind, score, reason, and the release by finance

Revision ID: 0024_invoice_anomalies
Revises: 0023_console_users
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal

revision = "0024_invoice_anomalies"
down_revision = "0023_console_users"
branch_labels = None
depends_on = None


def _text(length):
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "invoice_anomalies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(24), nullable=False),
        sa.Column("score", ExactDecimal(), nullable=False),
        sa.Column("reason", _text(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_note", _text(500), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invoice_anomalies_invoice", "invoice_anomalies", ["invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_invoice_anomalies_invoice", table_name="invoice_anomalies")
    op.drop_table("invoice_anomalies")
