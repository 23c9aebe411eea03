"""webhook inbox: Salesforce change notifications, stored (deduplicated) before they are acknowledged

Revision ID: 0004_webhook_inbox
Revises: 0003_billing
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0004_webhook_inbox"
down_revision = "0003_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("dedup_key", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
        sa.Column("object_name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("change_origin", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key", name="uq_webhook_inbox_dedup_key"),
    )
    op.create_index("ix_webhook_inbox_status_next_attempt_at", "webhook_inbox", ["status", "next_attempt_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_status_next_attempt_at", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
