"""the web console's form submissions: each action form is carried out once

Revision ID: 0027_console_submissions
Revises: 0026_console_jobs
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

from connector.sync.tables import UtcDateTime

revision = "0027_console_submissions"
down_revision = "0026_console_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_submissions",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["console_users.id"]),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("console_submissions")
