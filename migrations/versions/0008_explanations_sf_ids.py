"""invoice line explanations; Salesforce ids on invoices and payments

Revision ID: 0008_explanations_sf_ids
Revises: 0007_customer_mrr
Create Date: 2026-11-24
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_explanations_sf_ids"
down_revision = "0007_customer_mrr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_lines") as batch:
        batch.add_column(sa.Column("explanation", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("salesforce_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("salesforce_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("salesforce_id")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("salesforce_id")
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_column("explanation")
