"""Customer use cases: create or update a customer, find one, ask for its Account summary
to be pushed again, change its billing details and pass its message on to sales (the portal).

A Salesforce Account id belongs to one customer only; a customer's currency is fixed
once it has subscriptions. Bad input raises the domain's ``InvalidInputError`` /
``ConflictError`` naming the field and the reason, before anything is written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from billing_engine import outbox as ob
from billing_engine.customers import Address, Customer
from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
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


#: Longest message a customer may send to sales.
MAX_SALES_MESSAGE = 4000


def request_sales_contact(session: Session, customer_id: str, *, message_id: str, message: str, contact: str = "",
                          now: datetime) -> None:
    """``customer.sales_requested``: the customer wrote to sales (from the portal); the push makes it a
    task for the owner of the customer's Account, once (keyed by ``message_id``)."""
    customer = get_customer(session, customer_id)
    text = (message or "").strip()
    if not text:
        raise InvalidInputError("message", "write a few words")
    if len(text) > MAX_SALES_MESSAGE or any(ord(c) < 32 and c not in "\r\n\t" for c in text):
        raise InvalidInputError("message", f"at most {MAX_SALES_MESSAGE} printable characters")
    add_events(session, [ob.new_event(ob.CUSTOMER_SALES_REQUESTED, "customer", customer.customer_id, {
        "message_id": message_id, "customer_id": customer.customer_id, "customer_name": customer.name,
        "message": text, "contact": contact, "sent_on": now.date()}, now)])


def change_billing_details(session: Session, customer_id: str, *, address: Address, vat_id: str | None,
                           now: datetime) -> tuple[Customer, Customer]:
    """The customer's billing address and VAT number (checked by the caller) as the customer gave
    them; ``customer.billing_details_changed`` writes them to its Salesforce Account too, so the
    Account (the source of the next pull) says the same. Returns the customer before and after."""
    before = get_customer(session, customer_id)
    after = upsert_customer(session, replace(before, billing_address=address, vat_id=vat_id))
    if after != before:
        add_events(session, [ob.new_event(ob.CUSTOMER_BILLING_DETAILS_CHANGED, "customer", customer_id, {
            "customer_id": customer_id, "street": "\n".join(x for x in (address.line1, address.line2) if x),
            "city": address.city, "postal_code": address.postal_code, "country": address.country,
            "vat_id": vat_id or ""}, now)])
    return before, after
