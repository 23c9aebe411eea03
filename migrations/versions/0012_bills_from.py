"""subscriptions: the first day billsync may invoice (the cut-over per deal)

Revision ID: 0012_bills_from
Revises: 0011_review_writes
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_bills_from"
down_revision = "0011_review_writes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("bills_from", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("bills_from")
