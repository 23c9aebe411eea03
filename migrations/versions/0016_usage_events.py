"""usage events: stored once per key, partitioned by month on PostgreSQL; usage records move there

A key table (one row per event, UNIQUE source + key) and the events table.

Revision ID: 0016_usage_events
Revises: 0015_credit_notes_salesforce
Create Date: 2026-12-06

On PostgreSQL ``usage_events`` is ``PARTITION BY RANGE (occurred_on)`` with a default partition
and one partition per month: the months the existing usage records fall in, and the months
from two before the current one to three after it (the clock creates later ones, and the
ingestion creates a missing month on demand). Every ``usage_records`` row becomes an event with
the same id, source and key; the table is dropped. The downgrade moves them back.
"""
from datetime import date, datetime, timezone

import sqlalchemy as sa
import sqlmodel
from alembic import op

import billing_engine.storage.columns

revision = "0016_usage_events"
down_revision = "0015_credit_notes_salesforce"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _shift(month: date, months: int) -> date:
    total = month.year * 12 + month.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def _create_partition(month: date) -> None:
    op.execute(f'CREATE TABLE IF NOT EXISTS "usage_events_{month.year:04d}_{month.month:02d}" PARTITION OF '
               f"\"usage_events\" FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')")


def upgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    op.create_table(
        "usage_event_keys",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "idempotency_key", name="uq_usage_event_keys_source_key"),
    )
    op.create_table(
        "usage_events",
        sa.Column("event_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subscription_item_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("quantity", billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "occurred_on"),
        postgresql_partition_by="RANGE (occurred_on)",
    )
    op.create_index("ix_usage_events_item_on", "usage_events",
                    ["subscription_id", "subscription_item_id", "occurred_on"], unique=False)
    if postgresql:
        op.execute('CREATE TABLE "usage_events_default" PARTITION OF "usage_events" DEFAULT')
        this_month = datetime.now(timezone.utc).date().replace(day=1)
        months = {_shift(this_month, n) for n in range(-2, 4)}
        months |= {day.replace(day=1) for (day,) in bind.execute(sa.text(
            "SELECT DISTINCT occurred_on FROM usage_records"))}
        for month in sorted(months):
            _create_partition(month)
    op.execute("INSERT INTO usage_event_keys (id, source, idempotency_key) "
               "SELECT id, source, idempotency_key FROM usage_records")
    op.execute("INSERT INTO usage_events (event_id, occurred_on, subscription_id, subscription_item_id, quantity, "
               "occurred_at, recorded_at) SELECT id, occurred_on, subscription_id, subscription_item_id, quantity, "
               "occurred_at, recorded_at FROM usage_records")
    if postgresql:
        op.execute("SELECT setval(pg_get_serial_sequence('usage_event_keys', 'id'), "
                   "COALESCE((SELECT max(id) FROM usage_event_keys), 0) + 1, false)")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_item_on")
    op.drop_table("usage_records")


def downgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subscription_item_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("quantity", billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "idempotency_key", name="uq_usage_records_source_key"),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_records_item_on", ["subscription_id", "subscription_item_id", "occurred_on"],
                              unique=False)
    op.execute("INSERT INTO usage_records (id, subscription_id, subscription_item_id, quantity, occurred_at, "
               "occurred_on, source, idempotency_key, recorded_at) "
               "SELECT k.id, e.subscription_id, e.subscription_item_id, e.quantity, e.occurred_at, e.occurred_on, "
               "k.source, k.idempotency_key, e.recorded_at "
               "FROM usage_events e JOIN usage_event_keys k ON k.id = e.event_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('usage_records', 'id'), "
                   "COALESCE((SELECT max(id) FROM usage_records), 0) + 1, false)")
    op.drop_index("ix_usage_events_item_on", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_table("usage_event_keys")
