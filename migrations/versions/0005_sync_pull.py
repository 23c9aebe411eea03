"""sync pull: cursors per object, applied records, per-record errors, review flags

Revision ID: 0005_sync_pull
Revises: 0004_webhook_inbox
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from connector.sync.tables import UtcDateTime


revision = "0005_sync_pull"
down_revision = "0004_webhook_inbox"
branch_labels = None
depends_on = None


def _name(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("object_name", _name(80), nullable=False),
        sa.Column("last_modstamp", UtcDateTime(), nullable=True),
        sa.Column("last_run_at", UtcDateTime(), nullable=True),
        sa.Column("last_status", _name(16), nullable=False),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("object_name"),
    )
    op.create_table(
        "sync_records",
        sa.Column("object_name", _name(80), nullable=False),
        sa.Column("record_id", _name(18), nullable=False),
        sa.Column("command", _name(40), nullable=False),
        sa.Column("command_hash", _name(64), nullable=False),
        sa.Column("command_json", sa.Text(), nullable=False),
        sa.Column("engine_id", _name(64), nullable=True),
        sa.Column("parent_id", _name(18), nullable=True),
        sa.Column("modstamp", UtcDateTime(), nullable=True),
        sa.Column("state", _name(16), nullable=False),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("object_name", "record_id"),
    )
    op.create_index("ix_sync_records_parent_id", "sync_records", ["parent_id"], unique=False)
    op.create_table(
        "sync_record_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_name", _name(80), nullable=False),
        sa.Column("record_id", _name(18), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", UtcDateTime(), nullable=False),
        sa.Column("last_failed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_name", "record_id", name="uq_sync_record_errors_record"),
    )
    op.create_table(
        "sync_review_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_name", _name(80), nullable=False),
        sa.Column("record_id", _name(18), nullable=False),
        sa.Column("kind", _name(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("engine_id", _name(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("noted_in_salesforce_at", UtcDateTime(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_name", "record_id", "kind", name="uq_sync_review_flags_record_kind"),
    )


def downgrade() -> None:
    op.drop_table("sync_review_flags")
    op.drop_table("sync_record_errors")
    op.drop_index("ix_sync_records_parent_id", table_name="sync_records")
    op.drop_table("sync_records")
    op.drop_table("sync_cursors")
