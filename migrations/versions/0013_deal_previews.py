"""open deals' previews: the figures written on the Opportunity, and what was written

Revision ID: 0013_deal_previews
Revises: 0012_bills_from
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from connector.sync.tables import UtcDateTime


revision = "0013_deal_previews"
down_revision = "0012_bills_from"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_deal_previews",
        sa.Column("opportunity_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("total", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("mrr", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("arr", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("values_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("previewed_at", UtcDateTime(), nullable=False),
        sa.Column("written_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("written_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("opportunity_id"),
    )


def downgrade() -> None:
    op.drop_table("sync_deal_previews")
