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
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("self_service", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("self_service")
