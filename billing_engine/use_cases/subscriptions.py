"""Subscription use cases: start a subscription, amend it (any action), cancel or renew it,
read it back (one, a keyset page of them, an overview with MRR, a timeline), and announce a
subscription's link to the deal that changed it.

The pure ``Subscription`` does the validating and derives every version; this module
checks what only the database knows (the customer and prices exist, the external key is
free, the stored price is the one given) and writes the rows and the outbox events in the
caller's transaction, with the customer's MRR at month ends (``revenue.refresh_customer_mrr``).
Recording amendments is serialised per subscription (row lock on PostgreSQL, ``BEGIN IMMEDIATE``
on SQLite, UNIQUE sequence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing_engine import outbox as ob
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError, NotFoundError
from billing_engine.storage import subscriptions as store
from billing_engine.storage.database import IntegrityError, Session
from billing_engine.storage.outbox import add_events
from billing_engine.subscriptions import (
    Amendment,
    AmendmentAction,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    check_attributes,
)
from billing_engine.use_cases.catalog import get_price
from billing_engine.use_cases.customers import find_customer_by_salesforce_id, get_customer
from billing_engine.use_cases.revenue import refresh_customer_mrr


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
    refresh_customer_mrr(session, subscription.customer_id)
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
    refresh_customer_mrr(session, amended.customer_id)
    add_events(session, [ob.customer_summary_event(amended.customer_id, ob.changed_at(now, recorded.effective_on))])
    return amended


def update_subscription_attributes(session: Session, subscription_id: str,
                                  attributes: Mapping[str, Any] | None) -> Subscription:
    """Give a subscription the custom attributes of a later deal (an amendment or a renewal): each
    attribute with a value replaces the one kept, an empty one keeps it. Invoices already assembled
    keep theirs; the next ones carry the new values (docs/mappings.md, Custom attributes)."""
    current = get_subscription(session, subscription_id, for_update=True)
    changes = dict(check_attributes(attributes))
    merged = check_attributes({**dict(current.attributes), **changes})
    if merged == current.attributes:
        return current
    store.set_attributes(session, subscription_id, merged)
    return replace(current, attributes=merged)


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


def link_subscription_to_deal(session: Session, subscription_id: str, opportunity_id: str, *,
                              now: datetime) -> Subscription:
    """Give a subscription started without a deal (a self-service checkout) the Salesforce
    Opportunity billsync wrote for it, as its external key: the pull then knows that deal as this
    subscription. Linking it to the same deal again changes nothing; to another deal is refused."""
    current = get_subscription(session, subscription_id, for_update=True)
    if current.external_key == opportunity_id:
        return current
    if current.external_key:
        raise ConflictError(f"subscription {subscription_id}",
                            f"already comes from the deal {current.external_key}, not {opportunity_id}")
    other = store.subscription_id_of_key(session, opportunity_id)
    if other is not None:
        raise ConflictError(f"external_key {opportunity_id}", f"already belongs to subscription {other}")
    store.set_external_key(session, subscription_id, opportunity_id)
    announce_subscription_change(session, subscription_id, customer_id=current.customer_id,
                                 opportunity_id=opportunity_id, now=now)
    return replace(current, external_key=opportunity_id)
def announce_self_service_change(session: Session, subscription_id: str, *, change_id: str, kind: str,
                                 amendment_id: str, effective_on: date, mrr_before: Decimal, mrr_after: Decimal,
                                 description: str, now: datetime) -> None:
    """``subscription.self_service_changed``: the customer changed (``kind`` ``amendment``) or cancelled
    (``cancellation``) the subscription themselves, as amendment ``amendment_id``; the push records it
    in Salesforce as a won deal of that kind, once (keyed by ``change_id``), with the MRR it moves."""
    if kind not in ("amendment", "cancellation"):
        raise InvalidInputError("kind", f"{kind!r} is not amendment or cancellation")
    sub = get_subscription(session, subscription_id)
    add_events(session, [ob.new_event(ob.SUBSCRIPTION_SELF_SERVICE_CHANGED, "subscription", subscription_id, {
        "change_id": change_id, "kind": kind, "subscription_id": subscription_id, "customer_id": sub.customer_id,
        "amendment_id": amendment_id, "currency": sub.currency, "effective_on": effective_on,
        "ends_before": sub.ends_before, "mrr_before": mrr_before, "mrr_after": mrr_after,
        "description": description, "changed_on": now.date()}, now)])


# ---------------------------------------------------------------- reading: lists, overview, timeline

#: Statuses a list can filter by (``Subscription.status_on``).
STATUSES = tuple(s.value for s in SubscriptionStatus)
#: Longest page ``list_subscriptions`` returns.
MAX_PAGE = 1000


def list_subscriptions(session: Session, *, on: date, limit: int, after: str | None = None,
                       customer_id: str | None = None, status: str | None = None) -> list[Subscription]:
    """Subscriptions in id order after ``after`` (keyset pages), of one customer and with one
    status on ``on`` when given; whole histories."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError("limit", f"must be between 1 and {MAX_PAGE}")
    if status is not None and status not in STATUSES:
        raise InvalidInputError("status", f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    ids = store.subscription_ids_page(session, on=on, limit=limit, after=after, customer_id=customer_id,
                                      status=status)
    if not ids:
        return []
    by_id = {s.subscription_id: s for s in store.subscriptions_of_customers(session, (), subscription_ids=ids)}
    return [by_id[i] for i in ids if i in by_id]


@dataclass(frozen=True)
class ItemOverview:
    item: SubscriptionItem
    monthly_amount: Decimal | None  # the item's MRR in this version, rounded (None: not recurring)


@dataclass(frozen=True)
class SubscriptionOverview:
    """A subscription as it stands on ``on``: its status, the items of the version in force
    (the first version before it starts, the last one after it ends), MRR and ARR."""

    subscription: Subscription
    on: date
    status: SubscriptionStatus
    items: tuple[ItemOverview, ...]
    mrr: Decimal
    arr: Decimal


def subscription_overview(subscription: Subscription, on: date) -> SubscriptionOverview:
    from billing_engine.money import round_money
    from billing_engine.use_cases.revenue import (
        item_monthly_amount,
        mrr_and_arr_snapshots,
        subscription_mrr_versions,
    )

    sub = subscription
    status = sub.status_on(on)
    version = sub.version_on(on)
    if version is None:
        last_day = sub.starts_on if status is SubscriptionStatus.PENDING else max(
            sub.starts_on, (sub.ends_before or on) - timedelta(days=1))
        version = sub.versions(last_day)[-1]
    items = []
    for item in version.items.values():
        monthly = item_monthly_amount(item, version.items)
        items.append(ItemOverview(item, None if monthly is None else round_money(monthly, sub.currency)))
    [(mrr, arr)] = mrr_and_arr_snapshots(subscription_mrr_versions(sub, on), [on])
    key = (sub.customer_id, sub.currency)
    zero = round_money(Decimal(0), sub.currency)
    return SubscriptionOverview(sub, on, status, tuple(items), mrr.get(key, zero), arr.get(key, zero))


def get_subscription_overview(session: Session, subscription_id: str, on: date) -> SubscriptionOverview:
    return subscription_overview(get_subscription(session, subscription_id), on)


@dataclass(frozen=True)
class TimelineEvent:
    """One dated event of a subscription's life. ``kind``: started, renewed, amended,
    cancelled (a cancellation recorded, effective on ``on``), ended, mrr_changed (``before``
    → ``amount``), invoice_issued (``amount`` is the invoice's total)."""

    on: date
    kind: str
    description: str
    amendment_id: str | None = None
    invoice_id: int | None = None
    invoice_number: str | None = None
    invoice_status: str | None = None
    amount: Decimal | None = None
    before: Decimal | None = None


_KIND_ORDER = {"started": 0, "renewed": 1, "amended": 2, "cancelled": 3, "ended": 4, "mrr_changed": 5,
               "invoice_issued": 6}


def _describe(amendment: Amendment) -> str:
    action = amendment.action
    if action is AmendmentAction.CHANGE_QUANTITY:
        text = f"quantity of {amendment.item_id} changed to {amendment.quantity}"
    elif action is AmendmentAction.ADD_ITEM:
        text = f"item {amendment.item.item_id} added ({amendment.item.price.product.code} × {amendment.item.quantity})"
    elif action is AmendmentAction.REMOVE_ITEM:
        text = f"item {amendment.item_id} removed"
    elif action is AmendmentAction.CHANGE_PRICE:
        text = f"unit price of {amendment.item_id} changed to {amendment.unit_price}"
    elif action is AmendmentAction.RENEW:
        text = "renewed for another term"
    else:
        text = "cancelled immediately" if amendment.immediate else "cancelled at the end of the term"
    return f"{text}: {amendment.reason}" if amendment.reason else text


def subscription_timeline(session: Session, subscription_id: str, *, on: date) -> list[TimelineEvent]:
    """The subscription's life in date order: start, renewals, amendments, cancellation, end,
    MRR changes and invoices issued, up to ``on`` and including the changes already recorded
    for later dates (a cancellation effective next quarter, the known end)."""
    from billing_engine.money import round_money
    from billing_engine.use_cases.revenue import mrr_snapshots, subscription_mrr_versions

    sub = get_subscription(session, subscription_id)
    horizon = max([on, *(a.effective_on for a in sub.amendments), *([sub.ends_before] if sub.ends_before else [])])
    term = "evergreen" if sub.term_months is None else f"{sub.term_months}-month term"
    renews = ", renews automatically" if sub.auto_renew and sub.term_months is not None else ""
    events = [TimelineEvent(sub.starts_on, "started", f"started: {term}{renews}")]
    end = sub.ends_before
    if sub.term_months is not None and sub.auto_renew:
        index = 1
        while sub.term_start(index) <= horizon and (end is None or sub.term_start(index) < end):
            events.append(TimelineEvent(sub.term_start(index), "renewed", f"term {index + 1} started"))
            index += 1
    for amendment in sorted(sub.amendments, key=lambda a: a.sequence):
        kind = {AmendmentAction.CANCEL: "cancelled", AmendmentAction.RENEW: "renewed"}.get(amendment.action, "amended")
        events.append(TimelineEvent(amendment.effective_on, kind, _describe(amendment),
                                    amendment_id=amendment.amendment_id))
    if end is not None:
        events.append(TimelineEvent(end, "ended", "ended: the last day covered is the day before"))
    versions = list(subscription_mrr_versions(sub, horizon))
    dates = sorted({d for _, starts, stops in versions for d in (starts, stops) if d is not None and d <= horizon}
                   | ({end} if end is not None and end <= horizon else set()))
    key = (sub.customer_id, sub.currency)
    zero = round_money(Decimal(0), sub.currency)
    previous = zero
    for day, snapshot in zip(dates, mrr_snapshots(versions, dates), strict=True):
        value = snapshot.get(key, zero)
        if value != previous:
            events.append(TimelineEvent(day, "mrr_changed", f"MRR {previous} → {value} {sub.currency}",
                                        amount=value, before=previous))
            previous = value
    for row in store.invoices_of_subscription(session, subscription_id):
        if row.issued_on is None or row.issued_on > horizon:
            continue
        events.append(TimelineEvent(row.issued_on, "invoice_issued", f"invoice {row.number} issued ({row.status})",
                                    invoice_id=row.id, invoice_number=row.number, invoice_status=row.status,
                                    amount=row.total))
    events.sort(key=lambda e: (e.on, _KIND_ORDER[e.kind], e.invoice_id or 0))
    return events
