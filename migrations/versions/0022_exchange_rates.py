"""exchange rates per day and currency pair, for figures in the reporting currency

Revision ID: 0022_exchange_rates
Revises: 0021_custom_attributes
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal

revision = "0022_exchange_rates"
down_revision = "0021_custom_attributes"
branch_labels = None
depends_on = None


def _text(length):
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "exchange_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rate_on", sa.Date(), nullable=False),
        sa.Column("base", _text(3), nullable=False),
        sa.Column("quote", _text(3), nullable=False),
        sa.Column("rate", ExactDecimal(), nullable=False),
        sa.Column("source", _text(16), nullable=False),
        sa.Column("entered_by", _text(200), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rate_on", "base", "quote", name="uq_exchange_rates_day_pair"),
    )


def downgrade() -> None:
    op.drop_table("exchange_rates")
