"""invoices: indexes for the invoice list (its order behind each filter, number prefix); refund allocations by invoice

Revision ID: 0017_invoice_listing
Revises: 0016_usage_events
Create Date: 2026-12-07

Each list index ends in (issued_on, id), the list's order, so a page of the invoice list reads
about its own rows at any depth. On a large table each index takes seconds to build and holds
writes to ``invoices`` meanwhile: run the upgrade outside the bill run's hour.
"""
from alembic import op

revision = "0017_invoice_listing"
down_revision = "0016_usage_events"
branch_labels = None
depends_on = None

_LIST_INDEXES = {
    "ix_invoices_issued_on_id": ["issued_on", "id"],
    "ix_invoices_status_issued_on_id": ["status", "issued_on", "id"],
    "ix_invoices_customer_issued_on_id": ["customer_id", "issued_on", "id"],
    "ix_invoices_currency_issued_on_id": ["currency", "issued_on", "id"],
}


def upgrade() -> None:
    for name, columns in _LIST_INDEXES.items():
        op.create_index(name, "invoices", columns, unique=False)
    op.create_index("ix_invoices_number_prefix", "invoices", ["number"], unique=False,
                    postgresql_ops={"number": "varchar_pattern_ops"})
    op.create_index("ix_refund_allocations_invoice_id", "refund_allocations", ["invoice_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refund_allocations_invoice_id", table_name="refund_allocations")
    op.drop_index("ix_invoices_number_prefix", table_name="invoices")
    for name in reversed(list(_LIST_INDEXES)):
        op.drop_index(name, table_name="invoices")
