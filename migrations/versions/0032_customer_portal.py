"""the customer portal: its links (hashed, expiring, single-use) and the changes customers preview

Revision ID: 0032_customer_portal
Revises: 0031_mrr_forecasts
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from connector.sync.tables import UtcDateTime

revision = "0032_customer_portal"
down_revision = "0031_mrr_forecasts"
branch_labels = None
depends_on = None

text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "portal_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", text(length=64), nullable=False),
        sa.Column("customer_id", text(length=64), nullable=False),
        sa.Column("made_by", text(length=200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_portal_links_customer_id", "portal_links", ["customer_id"])
    op.create_table(
        "portal_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", text(length=32), nullable=False),
        sa.Column("customer_id", text(length=64), nullable=False),
        sa.Column("subscription_id", text(length=64), nullable=False),
        sa.Column("kind", text(length=20), nullable=False),
        sa.Column("item_id", text(length=64), nullable=True),
        sa.Column("quantity", text(length=40), nullable=True),
        sa.Column("price_id", text(length=64), nullable=True),
        sa.Column("new_item_id", text(length=64), nullable=True),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("previewed_on", sa.Date(), nullable=False),
        sa.Column("amendments", sa.Integer(), nullable=False),
        sa.Column("reason_code", text(length=40), nullable=True),
        sa.Column("reason_text", text(length=500), nullable=False),
        sa.Column("preview", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("confirmed_at", UtcDateTime(), nullable=True),
        sa.Column("amendment_id", text(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_portal_changes_customer_id", "portal_changes", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_portal_changes_customer_id", table_name="portal_changes")
    op.drop_table("portal_changes")
    op.drop_index("ix_portal_links_customer_id", table_name="portal_links")
    op.drop_table("portal_links")
