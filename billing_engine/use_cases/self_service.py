"""Self-service use cases: the plans offered online, what an order would bill, and placing it
(docs/self-service.md).

An order is one customer and one subscription to one plan, started on the day it is placed.
It is idempotent by its submission key: the customer is ``cus-web-<key>`` and the subscription
``sub-web-<key>``, so the same form submitted twice places one order. Placing it writes, in the
caller's transaction, the customer, the subscription (with ``subscription.created`` and the
Account summary), ``subscription.sold_online`` (the push writes the Account, a Closed Won
Opportunity and its lines in Salesforce) and the audit entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.catalog import ChargeType, Price
from billing_engine.customers import Address, Customer
from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.money import round_money
from billing_engine.pricing import rate
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events
from billing_engine.storage.subscriptions import subscription_exists
from billing_engine.subscriptions import Subscription, SubscriptionItem, make_subscription
from billing_engine.use_cases.audit import record_action
from billing_engine.use_cases.catalog import get_price
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.exports import subscription_dates
from billing_engine.use_cases.preview import DealPreview, preview_new_subscription
from billing_engine.use_cases.subscriptions import start_subscription

_KEY = re.compile(r"[a-f0-9]{32}")
#: Who the audit log names for an order placed on the checkout.
ACTOR = "self-service"


@dataclass(frozen=True)
class Order:
    """What the buyer filled in; ``key`` is the form's submission key (32 hex digits)."""

    key: str
    company_name: str
    contact_email: str
    country: str  # ISO 3166 alpha-2
    price_id: str
    quantity: Decimal
    vat_id: str | None = None
    language: str | None = None  # of the customer's invoice documents
    timezone: str = "UTC"


@dataclass(frozen=True)
class OrderQuote:
    """What an order would bill: its first invoice and what follows."""

    preview: DealPreview
    recurring: Decimal  # what each following period costs before tax
    interval: str
    next_invoice_on: date | None


@dataclass(frozen=True)
class PlacedOrder:
    customer_id: str
    subscription_id: str
    replayed: bool  # the same submission was placed before: nothing new was written


def self_service_plans(session: Session) -> list[Price]:
    """The recurring prices of the active products marked self-service, by product code."""
    return [p for p in catalog_store.self_service_prices(session) if p.charge_type is ChargeType.RECURRING]


def get_plan(session: Session, price_id: str) -> Price:
    """A self-service plan by its price id (``NotFoundError`` for any other price)."""
    price = next((p for p in self_service_plans(session) if p.price_id == price_id), None)
    if price is None:
        raise NotFoundError("plan", price_id)
    return price


def ids_of(key: str) -> tuple[str, str]:
    """The customer and subscription ids of a submission key."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInputError("key", "is not a submission key (32 hexadecimal digits)")
    return f"cus-web-{key}", f"sub-web-{key}"


def _order_records(session: Session, order: Order, on: date) -> tuple[Price, Customer, Subscription]:
    """The plan, the customer and the subscription of an order, in memory."""
    price = get_plan(session, order.price_id)
    customer_id, subscription_id = ids_of(order.key)
    if order.quantity <= 0 or order.quantity != order.quantity.to_integral_value():
        raise InvalidInputError("quantity", "must be a whole number of at least 1")
    customer = Customer(customer_id=customer_id, name=order.company_name.strip(), currency=price.currency,
                        timezone=order.timezone, billing_address=Address(country=order.country),
                        vat_id=order.vat_id or None, language=order.language)
    item = SubscriptionItem(item_id=f"{subscription_id}-1", price=get_price(session, price.price_id),
                            quantity=order.quantity)
    subscription = make_subscription(subscription_id, customer_id, price.currency, on, [item], term_months=None,
                                     auto_renew=True)
    return price, customer, subscription


def _write(session: Session, order: Order, on: date, now: datetime) -> tuple[str, str]:
    _, customer, subscription = _order_records(session, order, on)
    upsert_customer(session, customer)
    start_subscription(session, subscription, now=now)
    return customer.customer_id, subscription.subscription_id


def quote_order(session: Session, order: Order, *, on: date,
                default_tax_percent: Decimal = Decimal(0), seller_country: str | None = None) -> OrderQuote:
    """What the order would bill if placed on ``on``, priced by the engine as the bill run will bill
    it (``preview_new_subscription``). Nothing is written: the session is only read."""
    _, subscription_id = ids_of(order.key)
    if subscription_exists(session, subscription_id):
        raise InvalidInputError("key", "this order was placed already")
    price, customer, subscription = _order_records(session, order, on)
    preview = preview_new_subscription(subscription, customer, on, default_tax_percent=default_tax_percent,
                                       seller_country=seller_country)
    recurring = round_money(rate(price.terms, order.quantity).amount, price.currency)
    return OrderQuote(preview=preview, recurring=recurring, interval=price.interval.value if price.interval else "",
                      next_invoice_on=subscription_dates(subscription, on)["next_invoice_on"])


def place_order(session: Session, order: Order, *, on: date, now: datetime, request_id: str | None = None,
                contact: dict[str, str] | None = None) -> PlacedOrder:
    """Place the order in the caller's transaction (see the module docstring); the same key again
    returns the order placed the first time and writes nothing."""
    customer_id, subscription_id = ids_of(order.key)
    if subscription_exists(session, subscription_id) or catalog_store.find_customer(session, customer_id) is not None:
        return PlacedOrder(customer_id, subscription_id, replayed=True)
    _write(session, order, on, now)
    payload = {"subscription_id": subscription_id, "customer_id": customer_id,
               "contact_email": order.contact_email, **(contact or {})}
    add_events(session, [ob.new_event(ob.SUBSCRIPTION_SOLD_ONLINE, "subscription", subscription_id, payload, now)])
    record_action(session, at=now, actor=ACTOR, action="checkout.order", target_type="subscription",
                  target_id=subscription_id, after={
                      "customer_id": customer_id, "company_name": order.company_name,
                      "contact_email": order.contact_email, "country": order.country, "vat_id": order.vat_id,
                      "price_id": order.price_id, "quantity": order.quantity, "starts_on": on},
                  request_id=request_id)
    return PlacedOrder(customer_id, subscription_id, replayed=False)


# ---------------------------------------------------------------- what the push writes in Salesforce


@dataclass(frozen=True)
class SoldLine:
    item_id: str
    price_id: str
    product_code: str
    product_name: str
    quantity: Decimal
    amount: Decimal  # a full period's price before tax


@dataclass(frozen=True)
class SoldDeal:
    """An order placed online, as the push writes it: the customer, the subscription and its lines."""

    customer: Customer
    subscription_id: str
    external_key: str | None
    currency: str
    starts_on: date
    lines: tuple[SoldLine, ...]

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


def sold_deals(session: Session, subscription_ids: list[str], on: date) -> dict[str, SoldDeal]:
    """The orders behind these subscriptions (missing ones are absent), lines as of ``on``."""
    from billing_engine.use_cases.subscriptions import get_subscription

    out: dict[str, SoldDeal] = {}
    for sid in subscription_ids:
        if not subscription_exists(session, sid):
            continue
        sub = get_subscription(session, sid)
        customer = catalog_store.find_customer(session, sub.customer_id)
        if customer is None:
            continue
        version = sub.version_on(max(on, sub.starts_on)) or sub.version_on(sub.starts_on)
        items = version.items.values() if version is not None else ()
        lines = tuple(SoldLine(item.item_id, item.price.price_id, item.price.product.code, item.price.product.name,
                               item.quantity, round_money(rate(item.price.terms, item.quantity).amount, sub.currency))
                      for item in items)
        out[sid] = SoldDeal(customer, sid, sub.external_key, sub.currency, sub.starts_on, lines)
    return out


def link_sold_deal(session: Session, subscription_id: str, *, account_id: str, opportunity_id: str,
                   now: datetime) -> None:
    """Record the Account and the Opportunity the push wrote for an order: the customer gets the Account,
    the subscription the deal (each announced, so the Account summary and the deal's link follow)."""
    from dataclasses import replace

    from billing_engine.use_cases.customers import get_customer, request_customer_summary
    from billing_engine.use_cases.subscriptions import get_subscription, link_subscription_to_deal

    subscription = get_subscription(session, subscription_id)
    customer = get_customer(session, subscription.customer_id)
    if customer.salesforce_account_id != account_id:
        upsert_customer(session, replace(customer, salesforce_account_id=account_id))
        request_customer_summary(session, customer.customer_id, now=now)
    link_subscription_to_deal(session, subscription_id, opportunity_id, now=now)
