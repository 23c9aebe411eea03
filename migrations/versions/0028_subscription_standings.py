"""each customer's standing (what its billing status on any date is made of), kept with
``mrr_month_ends``; the owed invoices' index holds those with a balance only, by due date

Revision ID: 0028_subscription_standings
Revises: 0027_console_submissions
Create Date: 2026-12-06

The standings are computed here from the subscriptions, so they are true whatever state
``mrr_month_ends`` is in (a rebuild recomputes both).
"""
from datetime import date

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0028_subscription_standings"
down_revision = "0027_console_submissions"
branch_labels = None
depends_on = None

PAYABLE = "status IN ('open', 'uncollectible')"
OWED_WITH_BALANCE = PAYABLE + " AND ((total - amount_paid) - amount_credited) + amount_refunded > 0"
INCLUDED = ["customer_id", "currency", "total", "amount_paid", "amount_credited", "amount_refunded"]


def _day(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def upgrade() -> None:
    table = op.create_table(
        "subscription_standings",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("running_until", sa.Date(), nullable=False),
        sa.Column("cancelling_until", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    bind = op.get_bind()
    rows = []
    for cid, currency, started, running, cancelling in bind.execute(sa.text(
            "SELECT s.customer_id, c.currency, MAX(s.starts_on), "
            "MAX(CASE WHEN s.status = 'active' THEN COALESCE(s.ends_before, '9999-12-31') END), "
            "MAX(CASE WHEN s.status = 'cancelled' THEN COALESCE(s.ends_before, '9999-12-31') END) "
            "FROM subscriptions s JOIN customers c ON c.id = s.customer_id GROUP BY s.customer_id, c.currency")):
        started, running = _day(started), _day(running)
        rows.append({"customer_id": cid, "currency": currency, "running_until": max(started, running or started),
                     "cancelling_until": _day(cancelling)})
    for start in range(0, len(rows), 5000):
        op.bulk_insert(table, rows[start:start + 5000])
    op.drop_index("ix_invoices_payable_due_on", table_name="invoices")
    op.create_index("ix_invoices_owed_due_on", "invoices", ["due_on"], postgresql_include=INCLUDED,
                    postgresql_where=sa.text(OWED_WITH_BALANCE), sqlite_where=sa.text(PAYABLE))


def downgrade() -> None:
    op.drop_index("ix_invoices_owed_due_on", table_name="invoices")
    op.create_index("ix_invoices_payable_due_on", "invoices", ["status", "due_on"], postgresql_include=INCLUDED,
                    postgresql_where=sa.text(PAYABLE), sqlite_where=sa.text(PAYABLE))
    op.drop_table("subscription_standings")
