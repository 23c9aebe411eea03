"""Customer use cases: create or update a customer, find one, and ask for its Account summary
to be pushed again.

A Salesforce Account id belongs to one customer only; a customer's currency is fixed
once it has subscriptions. Bad input raises the domain's ``InvalidInputError`` /
``ConflictError`` naming the field and the reason, before anything is written.
"""

from __future__ import annotations

from datetime import datetime

from billing_engine.customers import Customer
from billing_engine.errors import ConflictError, NotFoundError
from billing_engine.outbox import customer_summary_event
from billing_engine.storage import catalog as store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events
from billing_engine.storage.subscriptions import customer_has_subscriptions


def upsert_customer(session: Session, customer: Customer) -> Customer:
    """Create or update a customer by id. A Salesforce Account id belongs to one customer only."""
    if customer.salesforce_account_id:
        other = store.customer_id_of_account(session, customer.salesforce_account_id)
        if other is not None and other != customer.customer_id:
            raise ConflictError(f"salesforce_account_id {customer.salesforce_account_id}",
                                f"already belongs to customer {other}")
    existing = store.find_customer(session, customer.customer_id)
    if existing is not None and existing.currency != customer.currency \
            and customer_has_subscriptions(session, customer.customer_id):
        raise ConflictError(f"customer {customer.customer_id}",
                            f"has subscriptions in {existing.currency}; its currency cannot become "
                            f"{customer.currency}")
    store.save_customer(session, customer)
    return customer


def get_customer(session: Session, customer_id: str) -> Customer:
    customer = store.find_customer(session, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return customer


def find_customer(session: Session, customer_id: str) -> Customer | None:
    return store.find_customer(session, customer_id)


def find_customer_by_salesforce_id(session: Session, account_id: str) -> Customer | None:
    customer_id = store.customer_id_of_account(session, account_id)
    return None if customer_id is None else get_customer(session, customer_id)


def request_customer_summary(session: Session, customer_ids: str | list[str], *, now: datetime) -> None:
    """Ask for the Account summary of these customers to be pushed again (``customer.summary_changed``,
    coalesced per customer): after a change of the customer itself, or to repair drift."""
    ids = [customer_ids] if isinstance(customer_ids, str) else customer_ids
    add_events(session, [customer_summary_event(cid, now) for cid in sorted(set(ids))])
