"""each customer's MRR and ARR at the month ends where they change, for the MRR bridge and dashboard;
the owed invoices by due date, for receivables aging and customers past due

Revision ID: 0025_mrr_month_ends
Revises: 0024_invoice_anomalies
Create Date: 2026-12-06

A database that already holds subscriptions is marked for ``billsync metrics rebuild-mrr``: until
then the figures are computed from the subscriptions, as before.
"""
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

from billing_engine.storage.columns import ExactDecimal

revision = "0025_mrr_month_ends"
down_revision = "0024_invoice_anomalies"
branch_labels = None
depends_on = None
#: As ``billing_engine.use_cases.revenue.KEPT_MONTHS_AHEAD`` when this revision was written.
KEPT_MONTHS_AHEAD = 60


def _text(length):
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "mrr_month_ends",
        sa.Column("customer_id", _text(64), nullable=False),
        sa.Column("currency", _text(3), nullable=False),
        sa.Column("month", _text(7), nullable=False),
        sa.Column("mrr_before", ExactDecimal(), nullable=False),
        sa.Column("mrr", ExactDecimal(), nullable=False),
        sa.Column("arr_before", ExactDecimal(), nullable=False),
        sa.Column("arr", ExactDecimal(), nullable=False),
        sa.Column("kind", _text(16), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id", "currency", "month"),
    )
    op.create_index("ix_mrr_month_ends_month", "mrr_month_ends", ["month", "currency", "kind"])
    op.create_table(
        "mrr_month_ends_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kept_through", _text(7), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("reason", _text(200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invoices_payable_due_on", "invoices", ["status", "due_on"],
                    postgresql_include=["customer_id", "currency", "total", "amount_paid", "amount_credited",
                                        "amount_refunded"],
                    postgresql_where=sa.text("status IN ('open', 'uncollectible')"),
                    sqlite_where=sa.text("status IN ('open', 'uncollectible')"))
    bind = op.get_bind()
    stale = bind.execute(sa.text("SELECT 1 FROM subscriptions LIMIT 1")).first() is not None
    today = datetime.now(UTC).date()
    ahead = today.year * 12 + today.month - 1 + KEPT_MONTHS_AHEAD
    bind.execute(sa.text("INSERT INTO mrr_month_ends_state (id, kept_through, stale, reason) "
                         "VALUES (1, :through, :stale, :reason)"),
                 {"through": f"{ahead // 12:04d}-{ahead % 12 + 1:02d}", "stale": stale,
                  "reason": "subscriptions recorded before mrr_month_ends existed" if stale else ""})


def downgrade() -> None:
    op.drop_index("ix_invoices_payable_due_on", table_name="invoices")
    op.drop_table("mrr_month_ends_state")
    op.drop_index("ix_mrr_month_ends_month", table_name="mrr_month_ends")
    op.drop_table("mrr_month_ends")
