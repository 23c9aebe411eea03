"""base: the empty schema every later revision builds on

Revision ID: 0001_base
Revises:
Create Date: 2026-11-24
"""

revision = "0001_base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
