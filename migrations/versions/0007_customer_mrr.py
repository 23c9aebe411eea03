"""billing engine: the MRR last announced per customer (customer.summary_changed on MRR changes)

Revision ID: 0007_customer_mrr
Revises: 0005_sync_pull
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import billing_engine.storage.columns


revision = "0007_customer_mrr"
down_revision = "0005_sync_pull"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_mrr",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("mrr", billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
        sa.Column("measured_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id", "currency"),
    )


def downgrade() -> None:
    op.drop_table("customer_mrr")
