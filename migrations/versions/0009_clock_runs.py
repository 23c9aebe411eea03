"""the clock's daily runs: started and finished per job and business date

Revision ID: 0009_clock_runs
Revises: 0008_explanations_sf_ids
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from connector.sync.tables import UtcDateTime


revision = "0009_clock_runs"
down_revision = "0008_explanations_sf_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock_runs",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("clock_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job", "run_date"),
    )


def downgrade() -> None:
    op.drop_table("clock_runs")
