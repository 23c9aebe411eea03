"""Storage of the billing engine: SQLModel tables and the row <-> domain mapping, one module per
subject (catalog, subscriptions, invoices, anomalies (the anomaly guard's findings), churn (churn risk scores and models), documents, forecasts (the MRR forecasts as made), payments,
collections, usage, revenue, exchange rates, outbox, audit), plus the shared column types (``columns``)
and SQL plumbing (``database``).

This is the only part of ``billing_engine`` that imports SQLModel/SQLAlchemy. Importing the
package registers every engine table in the metadata (Alembic and ``create_all`` need them all).
"""

from billing_engine.storage import (
    anomalies,
    audit,
    catalog,
    churn,
    collections,
    documents,
    exchange_rates,
    forecasts,
    invoices,
    outbox,
    payments,
    revenue,
    subscriptions,
    usage,
)

#: Every table the bill run and the billing use cases write (for snapshots in tests and tools).
BILLING_MODELS = (
    invoices.NumberSequence, usage.UsageEventKey, usage.UsageEventRow, invoices.Invoice, invoices.InvoiceLine, invoices.InvoiceTax,
    invoices.CreditNote, invoices.CreditNoteLine, payments.Payment, payments.PaymentAllocation, payments.Refund,
    payments.RefundAllocation, payments.CustomerAccount, payments.CreditEntry, revenue.CustomerMrr,
    invoices.BillRunError, outbox.OutboxRow, documents.InvoiceDocument, anomalies.InvoiceAnomaly,
)

__all__ = ["BILLING_MODELS", "anomalies", "audit", "catalog", "churn", "collections", "documents", "exchange_rates", "forecasts", "invoices", "outbox", "payments",
           "revenue", "subscriptions", "usage"]
