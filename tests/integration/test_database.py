"""The database on the backend under test: exact decimals, schema = migrations."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from billing_engine.storage.columns import ExactDecimal
from connector.database import (
    check_ready,
    current_revision,
    head_revision,
    load_all_models,
    partition_tables,
    schema_name_filter,
)

VALUES = [Decimal("0.1"), Decimal("1234567890.123456"), Decimal("1e-6"), Decimal("-0.000001"),
          Decimal("99999999999999.999999999")]


def test_money_columns_round_trip_to_the_last_digit(engine):
    metadata = MetaData()
    table = Table("decimal_probe", metadata, Column("id", Integer, primary_key=True),
                  Column("amount", ExactDecimal()))
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(table), [{"id": i, "amount": v} for i, v in enumerate(VALUES)])
        with engine.connect() as conn:
            back = [row.amount for row in conn.execute(select(table).order_by(table.c.id))]
        assert back == VALUES
        assert all(isinstance(v, Decimal) for v in back)
        # Same digits, not merely equal: 1e-6 must not come back as 9.99999e-07 or 0.0000010000.
        assert [str(v.normalize()) for v in back] == [str(v.normalize()) for v in VALUES]
        assert back[2] == Decimal("0.000001")
    finally:
        metadata.drop_all(engine)


def test_a_float_is_refused_before_it_reaches_the_database(engine):
    metadata = MetaData()
    table = Table("float_probe", metadata, Column("id", Integer, primary_key=True), Column("amount", ExactDecimal()))
    metadata.create_all(engine)
    try:
        with pytest.raises(Exception, match="refusing to store float"):
            with engine.begin() as conn:
                conn.execute(insert(table), [{"id": 1, "amount": 0.1}])
    finally:
        metadata.drop_all(engine)


def test_migrations_at_head_produce_exactly_the_models_schema(engine):
    metadata = load_all_models().metadata
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False,
                                                         "include_name": schema_name_filter(conn)})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations differ; generate a revision: {diff}"


@pytest.mark.postgres_only
def test_usage_events_are_partitioned_by_month_and_only_partitions_are_left_out_of_the_comparison(engine):
    """The comparison above leaves out partitions only: on PostgreSQL ``usage_events`` is
    partitioned by range of ``occurred_on``, and its partitions (a default one and one per month)
    carry its columns and its index."""
    with engine.connect() as conn:
        strategy, key = conn.execute(text(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = CAST('usage_events' AS regclass)")).one()
        partitions = partition_tables(conn)
        indexed = set(conn.execute(text(
            "SELECT t.relname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_class x ON x.oid = i.indexrelid WHERE x.relname LIKE :pattern"),
            {"pattern": "usage_events_%subscription_id%"}).scalars())
    assert (strategy, key) == ("r", "occurred_on")
    assert "usage_events_default" in partitions
    months = {p for p in partitions if p != "usage_events_default"}
    assert months and all(re.fullmatch(r"usage_events_\d{4}_\d{2}", p) for p in months)
    assert partitions <= indexed


def test_the_database_is_at_head_and_ready(engine):
    assert current_revision(engine) == head_revision()
    assert check_ready(engine) is None


def test_readiness_names_the_missing_migration(engine):
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old_revision'"))
    reason = check_ready(engine)
    assert reason is not None and "old_revision" in reason and "billsync db upgrade" in reason
