"""the MRR forecasts as they were made, one snapshot per month of making

Revision ID: 0031_mrr_forecasts
Revises: 0030_churn_risk
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal

revision = "0031_mrr_forecasts"
down_revision = "0030_churn_risk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mrr_forecasts",
        sa.Column("made_in", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("contracted", ExactDecimal(), nullable=False),
        sa.Column("expected", ExactDecimal(), nullable=False),
        sa.Column("low", ExactDecimal(), nullable=False),
        sa.Column("high", ExactDecimal(), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("made_in", "currency", "month"),
    )


def downgrade() -> None:
    op.drop_table("mrr_forecasts")
