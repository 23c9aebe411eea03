"""products offered on the self-service pages (checkout and the customer portal)

Revision ID: 0029_self_service_products
Revises: 0028_subscription_standings
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0029_self_service_products"
down_revision = "0028_subscription_standings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (SQLite too): rebuilding the table would trip the foreign keys pointing to it.
    op.add_column("products", sa.Column("self_service", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("products", "self_service")  # SQLite ≥ 3.35 drops a column in place
