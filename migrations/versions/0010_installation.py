"""this installation: its id (the prefix of every external id it pushes) and the org it is bound to

A database that already pushed invoices or payments (under the old keys, the engine's bare
ids) gets its installation now, with ``rekey_pending`` set: the next push moves those
records in Salesforce to the new keys, by Id, before sending anything else
(``connector.sync.binding``). A database that pushed nothing gets its installation on first
use. Downgrading after that push would push under the old keys again: restore a backup instead.

Revision ID: 0010_installation
Revises: 0009_clock_runs
Create Date: 2026-11-26
"""
import secrets
import string
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

from connector.sync.tables import UtcDateTime

revision = "0010_installation"
down_revision = "0009_clock_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True),
        sa.Column("bound_at", UtcDateTime(), nullable=True),
        sa.Column("adopted_at", UtcDateTime(), nullable=True),
        sa.Column("rekey_pending", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    pushed = bind.execute(sa.text(
        "SELECT 1 FROM invoices WHERE salesforce_id IS NOT NULL "
        "UNION ALL SELECT 1 FROM payments WHERE salesforce_id IS NOT NULL "
        "UNION ALL SELECT 1 FROM outbox WHERE status = 'done' AND aggregate_type IN ('invoice', 'payment')"
    )).first()
    if pushed is not None:
        alphabet = string.ascii_lowercase + string.digits
        op.bulk_insert(table, [{
            "id": 1, "installation_id": "".join(secrets.choice(alphabet) for _ in range(10)),
            "created_at": datetime.now(UTC), "org_id": None, "bound_at": None, "adopted_at": None,
            "rekey_pending": True}])


def downgrade() -> None:
    op.drop_table("installation")
