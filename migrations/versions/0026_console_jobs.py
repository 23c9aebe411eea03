"""the web console's jobs: bill runs and full pulls queued for the worker

Revision ID: 0026_console_jobs
Revises: 0025_mrr_month_ends
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from connector.sync.tables import UtcDateTime


revision = "0026_console_jobs"
down_revision = "0025_mrr_month_ends"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("active_kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("worker_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("done_count", sa.Integer(), nullable=True),
        sa.Column("total_count", sa.Integer(), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_kind", name="uq_console_jobs_active_kind"),
    )
    op.create_index("ix_console_jobs_status", "console_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_console_jobs_status", table_name="console_jobs")
    op.drop_table("console_jobs")
