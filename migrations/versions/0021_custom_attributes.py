"""an admin's custom attributes on subscriptions and on the invoices assembled from them

Revision ID: 0021_custom_attributes
Revises: 0020_preview_lines
Create Date: 2026-12-09
"""
import sqlalchemy as sa
from alembic import op

revision = "0021_custom_attributes"
down_revision = "0020_preview_lines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("subscriptions", "invoices"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("attributes_json", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    # SQLite drops the column in place (ALTER TABLE DROP COLUMN, SQLite 3.35+): recreating a table
    # that others reference would break their foreign keys.
    for table in ("invoices", "subscriptions"):
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("attributes_json")
