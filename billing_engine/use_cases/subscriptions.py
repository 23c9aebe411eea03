"""Subscription use cases: start a subscription, amend it (any action), cancel or renew it,
read it back, and announce a subscription's link to the deal that changed it.

The pure ``Subscription`` does the validating and derives every version; this module
checks what only the database knows (the customer and prices exist, the external key is
free, the stored price is the one given) and writes the rows and the outbox events in the
caller's transaction. Recording amendments is serialised per subscription (row lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, UNIQUE sequence).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from billing_engine import outbox as ob
from billing_engine.errors import ConflictError, CurrencyMismatchError, NotFoundError
from billing_engine.storage import subscriptions as store
from billing_engine.storage.database import IntegrityError, Session
from billing_engine.storage.outbox import add_events
from billing_engine.subscriptions import Amendment, AmendmentAction, Subscription, SubscriptionItem
from billing_engine.use_cases.catalog import get_price
from billing_engine.use_cases.customers import find_customer_by_salesforce_id, get_customer


def start_subscription(session: Session, subscription: Subscription, *, now: datetime | None = None) -> Subscription:
    """Record a new subscription (its customer and prices must exist, in its currency).

    Writes, in the caller's transaction, ``subscription.created`` (with the Salesforce
    opportunity id, the subscription's ``external_key``, so the push can write the
    subscription id back to the Opportunity) and ``customer.summary_changed`` (its MRR
    changes). ``now`` stamps the rows (default: midnight UTC of the start date).
    """
    customer = get_customer(session, subscription.customer_id)
    if customer.currency != subscription.currency:
        raise CurrencyMismatchError("currency", customer.currency, subscription.currency)
    if store.subscription_exists(session, subscription.subscription_id):
        raise ConflictError(f"subscription {subscription.subscription_id}", "already exists")
    if subscription.external_key:
        other = store.subscription_id_of_key(session, subscription.external_key)
        if other is not None:
            raise ConflictError(f"external_key {subscription.external_key}",
                                f"already belongs to subscription {other}")
    for item in subscription.items:
        _check_price_stored(session, item)
    store.add_subscription(session, subscription)
    created_at = ob.changed_at(now, subscription.starts_on)
    add_events(session, [
        ob.new_event(ob.SUBSCRIPTION_CREATED, "subscription", subscription.subscription_id, {
            "subscription_id": subscription.subscription_id, "customer_id": subscription.customer_id,
            "salesforce_opportunity_id": subscription.external_key, "currency": subscription.currency,
            "starts_on": subscription.starts_on, "ends_before": subscription.ends_before}, created_at),
        ob.customer_summary_event(subscription.customer_id, created_at)])
    return subscription


def _check_price_stored(session: Session, item: SubscriptionItem) -> None:
    stored = get_price(session, item.price.price_id)
    if stored != item.price:
        raise ConflictError(f"price {item.price.price_id}", "differs from the stored catalog price")


def get_subscription(session: Session, subscription_id: str, *, for_update: bool = False,
                     price_cache: dict | None = None) -> Subscription:
    """The pure domain subscription with its whole history."""
    found = store.find_subscription(session, subscription_id, for_update=for_update, price_cache=price_cache)
    if found is None:
        raise NotFoundError("subscription", subscription_id)
    return found


def find_subscription_id_by_key(session: Session, external_key: str) -> str | None:
    """The subscription started from this external key (e.g. the Salesforce Opportunity id)."""
    return store.subscription_id_of_key(session, external_key)


def subscriptions_of_customer(session: Session, customer_id: str) -> list[Subscription]:
    """Every subscription of a customer, whole histories, by currency and id."""
    return store.subscriptions_of_customers(session, [customer_id])


def subscriptions_of_account(session: Session, salesforce_account_id: str) -> list[Subscription]:
    """Every subscription of the customer of a Salesforce Account (none when it has no customer)."""
    customer = find_customer_by_salesforce_id(session, salesforce_account_id)
    return [] if customer is None else subscriptions_of_customer(session, customer.customer_id)


def amend_subscription(session: Session, subscription_id: str, amendment: Amendment, *,
                       now: datetime | None = None) -> Subscription:
    """Record one amendment (any action). Its id defaults to the next ``aN``; recording is serialised
    per subscription (row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, UNIQUE sequence).

    Writes ``customer.summary_changed`` in the same transaction (its MRR, ARR or status
    changes now or on the effective date; a change that takes effect later is announced
    again by the bill run of that day). ``now`` stamps the row (default: midnight UTC of
    the effective date).
    """
    current = get_subscription(session, subscription_id, for_update=True)
    if not amendment.amendment_id:
        amendment = replace(amendment, amendment_id=current.next_amendment_id())
    if amendment.item is not None:
        _check_price_stored(session, amendment.item)
    amended = current.amend(amendment)
    recorded = max(amended.amendments, key=lambda a: a.sequence)
    try:
        store.add_amendment(session, amended, recorded)
    except IntegrityError:
        raise ConflictError(f"subscription {subscription_id}",
                            "was amended concurrently; reload and try again") from None
    add_events(session, [ob.customer_summary_event(amended.customer_id, ob.changed_at(now, recorded.effective_on))])
    return amended


def cancel_subscription(session: Session, subscription_id: str, effective_on: date, *, immediate: bool = False,
                        amendment_id: str = "", reason: str = "", now: datetime | None = None) -> Subscription:
    """Cancel at the end of the current term (default) or immediately on ``effective_on``."""
    return amend_subscription(session, subscription_id, Amendment(
        amendment_id, 0, AmendmentAction.CANCEL, effective_on, immediate=immediate, reason=reason), now=now)


def renew_subscription(session: Session, subscription_id: str, *, amendment_id: str = "",
                       reason: str = "", now: datetime | None = None) -> Subscription:
    """Renew a subscription without auto-renew for another term, from its current end, with the uplift."""
    current = get_subscription(session, subscription_id)
    if current.ends_before is None:
        raise ConflictError(f"subscription {subscription_id}", "renews automatically; nothing to renew")
    return amend_subscription(session, subscription_id, Amendment(
        amendment_id, 0, AmendmentAction.RENEW, current.ends_before, reason=reason), now=now)


def announce_subscription_change(session: Session, subscription_id: str, *, customer_id: str,
                                 opportunity_id: str, now: datetime) -> None:
    """``subscription.changed``: a deal (the Salesforce Opportunity ``opportunity_id``) changed this
    subscription, so the push writes the subscription's link and status back to that deal. The
    Account summary is announced by the change itself (``amend_subscription``)."""
    add_events(session, [ob.new_event(ob.SUBSCRIPTION_CHANGED, "subscription", subscription_id, {
        "subscription_id": subscription_id, "salesforce_opportunity_id": opportunity_id,
        "customer_id": customer_id}, now)])
