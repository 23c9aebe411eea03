"""open deals' previews: the first invoice's lines, with how each was computed

Revision ID: 0020_preview_lines
Revises: 0019_invoice_documents
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0020_preview_lines"
down_revision = "0019_invoice_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_deal_previews") as batch:
        batch.add_column(sa.Column("lines", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_deal_previews") as batch:
        batch.drop_column("lines")
