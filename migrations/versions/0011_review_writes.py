"""review flags shown on the Salesforce record: summaries, targets, resolutions, and the marks queue

Revision ID: 0011_review_writes
Revises: 0010_installation
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from connector.sync.tables import UtcDateTime


revision = "0011_review_writes"
down_revision = "0010_installation"
branch_labels = None
depends_on = None


def _name(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("sync_review_flags") as batch:
        batch.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch.add_column(sa.Column("target_object", _name(80), nullable=True))
        batch.add_column(sa.Column("target_id", _name(18), nullable=True))
        batch.add_column(sa.Column("resolution", _name(16), nullable=True))
        batch.add_column(sa.Column("resolution_note", sa.Text(), nullable=True))
    op.create_index("ix_sync_review_flags_target_id", "sync_review_flags", ["target_id"])
    op.create_table(
        "sync_review_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_name", _name(80), nullable=False),
        sa.Column("record_id", _name(18), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.Column("status", _name(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", _name(100), nullable=True),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("settled_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_name", "record_id", name="uq_sync_review_marks_record"),
    )
    op.create_index("ix_sync_review_marks_status", "sync_review_marks", ["status"])


def downgrade() -> None:
    op.drop_index("ix_sync_review_marks_status", table_name="sync_review_marks")
    op.drop_table("sync_review_marks")
    op.drop_index("ix_sync_review_flags_target_id", table_name="sync_review_flags")
    with op.batch_alter_table("sync_review_flags") as batch:
        batch.drop_column("resolution_note")
        batch.drop_column("resolution")
        batch.drop_column("target_id")
        batch.drop_column("target_object")
        batch.drop_column("summary")
