"""churn risk: each customer's score with its reasons, and the models trained with their evaluation

Revision ID: 0030_churn_risk
Revises: 0029_self_service_products
Create Date: 2026-12-06
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0030_churn_risk"
down_revision = "0029_self_service_products"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "churn_scores",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons_json", sa.Text(), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("scored_on", sa.Date(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_churn_scores_rank", "churn_scores", ["score", "customer_id"])
    op.create_table(
        "churn_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trained_through", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("holdout_from", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("train_rows", sa.Integer(), nullable=False),
        sa.Column("train_churned", sa.Integer(), nullable=False),
        sa.Column("holdout_rows", sa.Integer(), nullable=False),
        sa.Column("holdout_churned", sa.Integer(), nullable=False),
        sa.Column("churned_customers", sa.Integer(), nullable=False),
        sa.Column("model_auc", sa.Float(), nullable=True),
        sa.Column("baseline_auc", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("churn_models")
    op.drop_index("ix_churn_scores_rank", table_name="churn_scores")
    op.drop_table("churn_scores")
