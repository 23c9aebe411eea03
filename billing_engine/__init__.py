"""billsync's subscription and billing domain.

It owns money, periods, the catalog, pricing models, customers, subscriptions and
their amendments, usage, invoices, credit notes, payments and revenue metrics.
It knows nothing about Salesforce or Flask: it imports the standard library, and
SQLModel/SQLAlchemy only in its storage modules.
"""
