"""catalog, customers, subscriptions and amendments

Revision ID: 0002_catalog_subscriptions
Revises: 0001_base
Create Date: 2026-11-24

Money and quantity columns are ExactDecimal (canonical text on SQLite, NUMERIC on
PostgreSQL); tiers are JSON text of decimal strings.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from billing_engine.storage.columns import ExactDecimal


revision = "0002_catalog_subscriptions"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.AutoString(length=255), nullable=False),
    sa.Column('currency', sqlmodel.AutoString(length=3), nullable=False),
    sa.Column('timezone', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('address_line1', sqlmodel.AutoString(length=255), nullable=False),
    sa.Column('address_line2', sqlmodel.AutoString(length=255), nullable=False),
    sa.Column('city', sqlmodel.AutoString(length=120), nullable=False),
    sa.Column('postal_code', sqlmodel.AutoString(length=32), nullable=False),
    sa.Column('region', sqlmodel.AutoString(length=120), nullable=False),
    sa.Column('country', sqlmodel.AutoString(length=2), nullable=False),
    sa.Column('payment_terms_days', sa.Integer(), nullable=False),
    sa.Column('tax_rate_percent', ExactDecimal(), nullable=True),
    sa.Column('tax_exempt_reason', sqlmodel.AutoString(length=255), nullable=True),
    sa.Column('vat_id', sqlmodel.AutoString(length=64), nullable=True),
    sa.Column('salesforce_account_id', sqlmodel.AutoString(length=18), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('salesforce_account_id')
    )
    op.create_table('products',
    sa.Column('id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('code', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.AutoString(length=255), nullable=False),
    sa.Column('salesforce_product_id', sqlmodel.AutoString(length=18), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    sa.UniqueConstraint('salesforce_product_id')
    )
    op.create_table('prices',
    sa.Column('id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('product_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('currency', sqlmodel.AutoString(length=3), nullable=False),
    sa.Column('interval', sqlmodel.AutoString(length=16), nullable=True),
    sa.Column('charge_type', sqlmodel.AutoString(length=16), nullable=False),
    sa.Column('model', sqlmodel.AutoString(length=32), nullable=False),
    sa.Column('unit_price', ExactDecimal(), nullable=True),
    sa.Column('tiers_json', sa.Text(), nullable=False),
    sa.Column('package_size', ExactDecimal(), nullable=True),
    sa.Column('included_units', ExactDecimal(), nullable=True),
    sa.Column('overage_unit_price', ExactDecimal(), nullable=True),
    sa.Column('percent', ExactDecimal(), nullable=True),
    sa.Column('covered_product_codes_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('product_id', 'currency', 'interval', name='uq_prices_product_currency_interval')
    )
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prices_product_id'), ['product_id'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('customer_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('currency', sqlmodel.AutoString(length=3), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('interval', sqlmodel.AutoString(length=16), nullable=False),
    sa.Column('billing_anchor_on', sa.Date(), nullable=False),
    sa.Column('term_months', sa.Integer(), nullable=True),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('renewal_uplift_percent', ExactDecimal(), nullable=False),
    sa.Column('minimum_amount', ExactDecimal(), nullable=True),
    sa.Column('external_key', sqlmodel.AutoString(length=64), nullable=True),
    sa.Column('status', sqlmodel.AutoString(length=16), nullable=False),
    sa.Column('ends_before', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('external_key')
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_customer_id'), ['customer_id'], unique=False)

    op.create_table('amendments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('amendment_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('action', sqlmodel.AutoString(length=32), nullable=False),
    sa.Column('effective_on', sa.Date(), nullable=False),
    sa.Column('item_id', sqlmodel.AutoString(length=64), nullable=True),
    sa.Column('quantity', ExactDecimal(), nullable=True),
    sa.Column('unit_price', ExactDecimal(), nullable=True),
    sa.Column('immediate', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.AutoString(length=500), nullable=False),
    sa.Column('price_id', sqlmodel.AutoString(length=64), nullable=True),
    sa.Column('discount_percent', ExactDecimal(), nullable=True),
    sa.Column('discount_amount', ExactDecimal(), nullable=True),
    sa.ForeignKeyConstraint(['price_id'], ['prices.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id', 'amendment_id', name='uq_amendments_id'),
    sa.UniqueConstraint('subscription_id', 'sequence', name='uq_amendments_sequence')
    )
    with op.batch_alter_table('amendments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_amendments_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('subscription_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('item_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('price_id', sqlmodel.AutoString(length=64), nullable=False),
    sa.Column('quantity', ExactDecimal(), nullable=False),
    sa.Column('contract_unit_price', ExactDecimal(), nullable=True),
    sa.Column('discount_percent', ExactDecimal(), nullable=True),
    sa.Column('discount_amount', ExactDecimal(), nullable=True),
    sa.ForeignKeyConstraint(['price_id'], ['prices.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id', 'item_id', name='uq_subscription_items_item')
    )
    with op.batch_alter_table('subscription_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_items_subscription_id'), ['subscription_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('subscription_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_items_subscription_id'))

    op.drop_table('subscription_items')
    with op.batch_alter_table('amendments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_amendments_subscription_id'))

    op.drop_table('amendments')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_customer_id'))

    op.drop_table('subscriptions')
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prices_product_id'))

    op.drop_table('prices')
    op.drop_table('products')
    op.drop_table('customers')
