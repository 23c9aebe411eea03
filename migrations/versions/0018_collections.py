"""collections: overdue invoices, dunning, SEPA mandates and direct debits, bank statement entries

Revision ID: 0018_collections
Revises: 0017_invoice_listing
Create Date: 2026-12-12
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import billing_engine.storage.columns


revision = '0018_collections'
down_revision = "0017_invoice_listing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sepa_exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('collect_on', sa.Date(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('transactions', sa.Integer(), nullable=False),
    sa.Column('total', billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    op.create_table('customer_bank_accounts',
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('iban', sqlmodel.sql.sqltypes.AutoString(length=34), nullable=False),
    sa.Column('learned_from', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('customer_id', 'iban')
    )
    with op.batch_alter_table('customer_bank_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_bank_accounts_iban'), ['iban'], unique=False)

    op.create_table('customer_collection_profiles',
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
    sa.Column('dunning_paused', sa.Boolean(), nullable=False),
    sa.Column('paused_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('customer_id')
    )
    op.create_table('sepa_mandates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('signed_on', sa.Date(), nullable=False),
    sa.Column('iban', sqlmodel.sql.sqltypes.AutoString(length=34), nullable=False),
    sa.Column('bic', sqlmodel.sql.sqltypes.AutoString(length=11), nullable=True),
    sa.Column('account_holder', sqlmodel.sql.sqltypes.AutoString(length=70), nullable=False),
    sa.Column('sequence_type', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('revoked_on', sa.Date(), nullable=True),
    sa.Column('revoked_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    with op.batch_alter_table('sepa_mandates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sepa_mandates_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sepa_mandates_iban'), ['iban'], unique=False)
        batch_op.create_index('uq_sepa_mandates_active_customer', ['customer_id'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.create_table('bank_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('statement_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('account_iban', sqlmodel.sql.sqltypes.AutoString(length=34), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('amount', billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('counterparty_name', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('counterparty_iban', sqlmodel.sql.sqltypes.AutoString(length=34), nullable=False),
    sa.Column('remittance', sa.Text(), nullable=False),
    sa.Column('end_to_end_id', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('return_reason', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_key')
    )
    with op.batch_alter_table('bank_entries', schema=None) as batch_op:
        batch_op.create_index('ix_bank_entries_status', ['status', 'id'], unique=False)

    op.create_table('direct_debits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('mandate_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('amount', billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('sequence_type', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('collect_on', sa.Date(), nullable=False),
    sa.Column('end_to_end_id', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('batch_id', sqlmodel.sql.sqltypes.AutoString(length=35), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('return_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('returned_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['export_id'], ['sepa_exports.id'], ),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ),
    sa.ForeignKeyConstraint(['mandate_id'], ['sepa_mandates.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('end_to_end_id'),
    sa.UniqueConstraint('invoice_id')
    )
    with op.batch_alter_table('direct_debits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_direct_debits_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_direct_debits_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_direct_debits_export_id'), ['export_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_direct_debits_mandate_id'), ['mandate_id'], unique=False)

    op.create_table('dunning_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('step', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sent_on', sa.Date(), nullable=False),
    sa.Column('days_late', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('balance', billing_engine.storage.columns.ExactDecimal(length=64), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_id', 'step', name='uq_dunning_steps_invoice_step')
    )
    with op.batch_alter_table('dunning_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dunning_steps_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('invoice_collections',
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('overdue_on', sa.Date(), nullable=True),
    sa.Column('dunning_step', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('dunning_step_on', sa.Date(), nullable=True),
    sa.Column('return_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('returned_on', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ),
    sa.PrimaryKeyConstraint('invoice_id')
    )
    with op.batch_alter_table('invoice_collections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_collections_customer_id'), ['customer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('invoice_collections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_collections_customer_id'))

    op.drop_table('invoice_collections')
    with op.batch_alter_table('dunning_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dunning_steps_invoice_id'))

    op.drop_table('dunning_steps')
    with op.batch_alter_table('direct_debits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_direct_debits_mandate_id'))
        batch_op.drop_index(batch_op.f('ix_direct_debits_export_id'))
        batch_op.drop_index(batch_op.f('ix_direct_debits_customer_id'))
        batch_op.drop_index(batch_op.f('ix_direct_debits_batch_id'))

    op.drop_table('direct_debits')
    with op.batch_alter_table('bank_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_bank_entries_status')

    op.drop_table('bank_entries')
    with op.batch_alter_table('sepa_mandates', schema=None) as batch_op:
        batch_op.drop_index('uq_sepa_mandates_active_customer', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index(batch_op.f('ix_sepa_mandates_iban'))
        batch_op.drop_index(batch_op.f('ix_sepa_mandates_customer_id'))

    op.drop_table('sepa_mandates')
    op.drop_table('customer_collection_profiles')
    with op.batch_alter_table('customer_bank_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_bank_accounts_iban'))

    op.drop_table('customer_bank_accounts')
    op.drop_table('sepa_exports')
