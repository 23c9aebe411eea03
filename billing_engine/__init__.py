"""billsync's subscription and billing domain.

It owns money, periods, the catalog, pricing models, customers, subscriptions and
their amendments, usage, invoices, credit notes, payments and revenue metrics.
It knows nothing about Salesforce or Flask. Its pure modules import only the standard
library; SQLModel/SQLAlchemy are imported in ``billing_engine.storage`` only, and the
entry points, ``billing_engine.use_cases``, reach the database through it.
"""
