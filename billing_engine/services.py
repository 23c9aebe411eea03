"""Subscription use cases (issue 3): catalog, customers, subscriptions and amendments.

Each function works inside the caller's ``Session``; the caller owns the
transaction (``connector.database.transaction``). They convert between rows
(``billing_engine.storage.tables``) and the pure domain objects, which do all the
validating: a bad input raises the domain's ``InvalidInputError`` /
``ConflictError`` naming the field and the reason, before anything is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Text, and_, case, cast, exists, func, literal, or_, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import NullType
from sqlmodel import Session, select

from billing_engine import outbox as ob
from billing_engine.catalog import ChargeType, Price, Product
from billing_engine.customers import Address, Customer
from billing_engine.errors import ConflictError, CurrencyMismatchError, NotFoundError
from billing_engine.periods import Interval
from billing_engine.pricing import PriceTerms, make_tiers, tiers_to_rows
from billing_engine.storage.billing_tables import add_outbox, one_of
from billing_engine.storage.tables import (
    AmendmentRow,
    CustomerRow,
    PriceRow,
    ProductRow,
    SubscriptionItemRow,
    SubscriptionRow,
)
from billing_engine.subscriptions import Amendment, AmendmentAction, Subscription, SubscriptionItem


def new_id() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------ customers


def upsert_customer(session: Session, customer: Customer) -> Customer:
    """Create or update a customer by id. A Salesforce Account id belongs to one customer only."""
    if customer.salesforce_account_id:
        other = session.exec(select(CustomerRow.id).where(
            CustomerRow.salesforce_account_id == customer.salesforce_account_id,
            CustomerRow.id != customer.customer_id)).first()
        if other is not None:
            raise ConflictError(f"salesforce_account_id {customer.salesforce_account_id}",
                                f"already belongs to customer {other}")
    row = session.get(CustomerRow, customer.customer_id)
    if row is None:
        row = CustomerRow(id=customer.customer_id, name=customer.name, currency=customer.currency)
        session.add(row)
    elif row.currency != customer.currency and _has_subscriptions(session, customer.customer_id):
        raise ConflictError(f"customer {customer.customer_id}",
                            f"has subscriptions in {row.currency}; its currency cannot become {customer.currency}")
    address = customer.billing_address
    row.name = customer.name
    row.currency = customer.currency
    row.timezone = customer.timezone
    row.address_line1, row.address_line2 = address.line1, address.line2
    row.city, row.postal_code, row.region, row.country = address.city, address.postal_code, address.region, \
        address.country
    row.payment_terms_days = customer.payment_terms_days
    row.tax_rate_percent = customer.tax_rate_percent
    row.tax_exempt_reason = customer.tax_exempt_reason
    row.vat_id = customer.vat_id
    row.salesforce_account_id = customer.salesforce_account_id
    session.flush()
    return customer


def _has_subscriptions(session: Session, customer_id: str) -> bool:
    return session.exec(select(SubscriptionRow.id).where(SubscriptionRow.customer_id == customer_id)).first() \
        is not None


def get_customer(session: Session, customer_id: str) -> Customer:
    row = session.get(CustomerRow, customer_id)
    if row is None:
        raise NotFoundError("customer", customer_id)
    return Customer(
        customer_id=row.id, name=row.name, currency=row.currency, timezone=row.timezone,
        billing_address=Address(row.address_line1, row.address_line2, row.city, row.postal_code, row.region,
                                row.country),
        payment_terms_days=row.payment_terms_days, tax_rate_percent=row.tax_rate_percent,
        tax_exempt_reason=row.tax_exempt_reason, vat_id=row.vat_id, salesforce_account_id=row.salesforce_account_id,
    )


def find_customer_by_salesforce_id(session: Session, account_id: str) -> Customer | None:
    row = session.exec(select(CustomerRow.id).where(CustomerRow.salesforce_account_id == account_id)).first()
    return None if row is None else get_customer(session, row)


# -------------------------------------------------------------------- catalog


def upsert_product(session: Session, product: Product) -> Product:
    """Create or update a product by id; its code is unique."""
    other = session.exec(select(ProductRow.id).where(ProductRow.code == product.code,
                                                     ProductRow.id != product.product_id)).first()
    if other is not None:
        raise ConflictError(f"product code {product.code}", f"already belongs to product {other}")
    row = session.get(ProductRow, product.product_id)
    if row is None:
        row = ProductRow(id=product.product_id, code=product.code, name=product.name)
        session.add(row)
    row.code, row.name = product.code, product.name
    row.salesforce_product_id, row.active = product.salesforce_product_id, product.active
    session.flush()
    return product


def get_product(session: Session, product_id: str) -> Product:
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFoundError("product", product_id)
    return Product(row.id, row.code, row.name, row.salesforce_product_id, row.active)


def upsert_price(session: Session, price: Price) -> Price:
    """Create or update a price by id (its product must exist; one price per product, currency, interval).

    A price already used by subscriptions keeps its terms: sell new terms as a new price.
    """
    if session.get(ProductRow, price.product.product_id) is None:
        raise NotFoundError("product", price.product.product_id)
    interval = None if price.interval is None else price.interval.value
    other = session.exec(select(PriceRow.id).where(
        PriceRow.product_id == price.product.product_id, PriceRow.currency == price.currency,
        PriceRow.interval == interval if interval is not None else PriceRow.interval.is_(None),
        PriceRow.id != price.price_id)).first()
    if other is not None:
        raise ConflictError(f"price {price.price_id}",
                            f"product {price.product.code} already has price {other} in {price.currency}"
                            f" per {interval or 'one-time'}")
    row = session.get(PriceRow, price.price_id)
    terms = price.terms
    if row is None:
        row = PriceRow(id=price.price_id, product_id=price.product.product_id, currency=price.currency,
                       charge_type=price.charge_type.value, model=terms.model)
        session.add(row)
    elif _price_in_use(session, price.price_id) and _load_price(session, row) != price:
        raise ConflictError(f"price {price.price_id}", "is used by subscriptions; create a new price instead")
    row.product_id, row.currency, row.interval = price.product.product_id, price.currency, interval
    row.charge_type, row.model = price.charge_type.value, terms.model
    row.unit_price, row.package_size = terms.unit_price, terms.package_size
    row.included_units, row.overage_unit_price, row.percent = terms.included_units, terms.overage_unit_price, \
        terms.percent
    row.tiers_json = json.dumps(tiers_to_rows(terms.tiers))
    row.covered_product_codes_json = json.dumps(list(terms.covered_product_codes))
    session.flush()
    return price


def _price_in_use(session: Session, price_id: str) -> bool:
    used = session.exec(select(SubscriptionItemRow.id).where(SubscriptionItemRow.price_id == price_id)).first()
    return used is not None or session.exec(
        select(AmendmentRow.id).where(AmendmentRow.price_id == price_id)).first() is not None


def _load_price(session: Session, row: PriceRow, cache: dict | None = None) -> Price:
    if cache is not None and row.id in cache:
        return cache[row.id]
    terms = PriceTerms(
        model=row.model, unit_price=row.unit_price, tiers=make_tiers(json.loads(row.tiers_json)),
        package_size=row.package_size, included_units=row.included_units,
        overage_unit_price=row.overage_unit_price, percent=row.percent,
        covered_product_codes=tuple(json.loads(row.covered_product_codes_json)),
    )
    price = Price(row.id, get_product(session, row.product_id), row.currency,
                  None if row.interval is None else Interval(row.interval), ChargeType(row.charge_type), terms)
    if cache is not None:
        cache[row.id] = price
    return price


def get_price(session: Session, price_id: str, cache: dict | None = None) -> Price:
    row = session.get(PriceRow, price_id)
    if row is None:
        raise NotFoundError("price", price_id)
    return _load_price(session, row, cache)


# -------------------------------------------------------------- subscriptions


def _changed_at(now: datetime | None, on: date) -> datetime:
    """When a change happened: ``now`` (tz-aware) if given, else midnight UTC of its effective date."""
    if now is None:
        return datetime.combine(on, time(), UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _outbox_row(topic: str, aggregate_type: str, aggregate_id: str, payload: dict[str, Any],
                created_at: datetime) -> dict[str, Any]:
    event = ob.OutboxEvent(topic, aggregate_type, aggregate_id, payload)
    return {"topic": topic, "aggregate_type": aggregate_type, "aggregate_id": aggregate_id,
            "payload": event.payload_json(), "coalesce_key": event.coalesce_key, "created_at": created_at,
            "status": ob.STATUS_PENDING, "attempts": 0}


def summary_changed_row(customer_id: str, created_at: datetime) -> dict[str, Any]:
    """The coalesced ``customer.summary_changed`` outbox row: the push reads the current figures
    (MRR, ARR, balance, status) with ``billing_services.account_billing_summary``."""
    return _outbox_row(ob.CUSTOMER_SUMMARY_CHANGED, "customer", customer_id, {"customer_id": customer_id},
                       created_at)


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
    if session.get(SubscriptionRow, subscription.subscription_id) is not None:
        raise ConflictError(f"subscription {subscription.subscription_id}", "already exists")
    if subscription.external_key:
        other = session.exec(select(SubscriptionRow.id).where(
            SubscriptionRow.external_key == subscription.external_key)).first()
        if other is not None:
            raise ConflictError(f"external_key {subscription.external_key}",
                                f"already belongs to subscription {other}")
    for item in subscription.items:
        _check_price_stored(session, item)
    session.add(SubscriptionRow(
        id=subscription.subscription_id, customer_id=subscription.customer_id, currency=subscription.currency,
        starts_on=subscription.starts_on, interval=subscription.interval.value,
        billing_anchor_on=subscription.billing_anchor_on, term_months=subscription.term_months,
        auto_renew=subscription.auto_renew, renewal_uplift_percent=subscription.renewal_uplift_percent,
        minimum_amount=subscription.minimum_amount, external_key=subscription.external_key,
        status="active", ends_before=subscription.ends_before,
    ))
    session.flush()
    for position, item in enumerate(subscription.items):
        session.add(SubscriptionItemRow(
            subscription_id=subscription.subscription_id, item_id=item.item_id, position=position,
            price_id=item.price.price_id, quantity=item.quantity, contract_unit_price=item.contract_unit_price,
            discount_percent=item.discount_percent, discount_amount=item.discount_amount,
        ))
    for amendment in sorted(subscription.amendments, key=lambda a: a.sequence):
        session.add(_amendment_row(subscription.subscription_id, amendment))
    session.flush()
    created_at = _changed_at(now, subscription.starts_on)
    add_outbox(session, [
        _outbox_row(ob.SUBSCRIPTION_CREATED, "subscription", subscription.subscription_id, {
            "subscription_id": subscription.subscription_id, "customer_id": subscription.customer_id,
            "salesforce_opportunity_id": subscription.external_key, "currency": subscription.currency,
            "starts_on": subscription.starts_on, "ends_before": subscription.ends_before}, created_at),
        summary_changed_row(subscription.customer_id, created_at)])
    return subscription


def _check_price_stored(session: Session, item: SubscriptionItem) -> None:
    stored = get_price(session, item.price.price_id)
    if stored != item.price:
        raise ConflictError(f"price {item.price.price_id}", "differs from the stored catalog price")


def get_subscription(session: Session, subscription_id: str, *, for_update: bool = False,
                     price_cache: dict | None = None) -> Subscription:
    """The pure domain subscription with its whole history."""
    query = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
    if for_update:
        query = query.with_for_update()
    row = session.exec(query).first()
    if row is None:
        raise NotFoundError("subscription", subscription_id)
    cache = {} if price_cache is None else price_cache
    item_rows = session.exec(select(SubscriptionItemRow).where(SubscriptionItemRow.subscription_id == row.id)
                             .order_by(SubscriptionItemRow.position)).all()
    items = tuple(SubscriptionItem(r.item_id, get_price(session, r.price_id, cache), r.quantity,
                                   r.contract_unit_price, r.discount_percent, r.discount_amount)
                  for r in item_rows)
    amendment_rows = session.exec(select(AmendmentRow).where(AmendmentRow.subscription_id == row.id)
                                  .order_by(AmendmentRow.sequence)).all()
    amendments = tuple(_amendment(session, r, cache) for r in amendment_rows)
    return Subscription(
        subscription_id=row.id, customer_id=row.customer_id, currency=row.currency, starts_on=row.starts_on,
        items=items, interval=Interval(row.interval), billing_anchor_on=row.billing_anchor_on,
        term_months=row.term_months, auto_renew=row.auto_renew, renewal_uplift_percent=row.renewal_uplift_percent,
        minimum_amount=row.minimum_amount, external_key=row.external_key, amendments=amendments,
    )


def _amendment(session: Session, row: AmendmentRow, cache: dict) -> Amendment:
    item = None
    action = AmendmentAction(row.action)
    if action is AmendmentAction.ADD_ITEM:
        item = SubscriptionItem(row.item_id, get_price(session, row.price_id, cache), row.quantity, row.unit_price,
                                row.discount_percent, row.discount_amount)
    return Amendment(
        amendment_id=row.amendment_id, sequence=row.sequence, action=action, effective_on=row.effective_on,
        item_id=None if item is not None else row.item_id, quantity=None if item is not None else row.quantity,
        item=item, unit_price=None if item is not None else row.unit_price, immediate=row.immediate,
        reason=row.reason,
    )


def _amendment_row(subscription_id: str, amendment: Amendment) -> AmendmentRow:
    item = amendment.item
    return AmendmentRow(
        subscription_id=subscription_id, amendment_id=amendment.amendment_id, sequence=amendment.sequence,
        action=amendment.action.value, effective_on=amendment.effective_on,
        item_id=item.item_id if item is not None else amendment.item_id,
        quantity=item.quantity if item is not None else amendment.quantity,
        unit_price=item.contract_unit_price if item is not None else amendment.unit_price,
        immediate=amendment.immediate, reason=amendment.reason,
        price_id=item.price.price_id if item is not None else None,
        discount_percent=item.discount_percent if item is not None else None,
        discount_amount=item.discount_amount if item is not None else None,
    )


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
    session.add(_amendment_row(subscription_id, recorded))
    row = session.get(SubscriptionRow, subscription_id)
    row.status = "cancelled" if amended.cancellation is not None else "active"
    row.ends_before = amended.ends_before
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"subscription {subscription_id}",
                            "was amended concurrently; reload and try again") from None
    add_outbox(session, [summary_changed_row(amended.customer_id, _changed_at(now, recorded.effective_on))])
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


# ------------------------------------------------------- bulk loading (bill run, metrics)


def load_prices(session: Session, price_ids: Iterable[str], cache: dict) -> None:
    """Load the missing prices (with their products) into ``cache`` in two queries."""
    missing = sorted({pid for pid in price_ids if pid not in cache})
    if not missing:
        return
    prices, products = PriceRow.__table__, ProductRow.__table__
    rows: list[Any] = []
    for start in range(0, len(missing), 900):
        rows.extend(session.execute(select(prices).where(prices.c.id.in_(missing[start:start + 900]))).all())
    product_ids = sorted({r.product_id for r in rows})
    product_of = {}
    for start in range(0, len(product_ids), 900):
        for p in session.execute(select(products).where(products.c.id.in_(product_ids[start:start + 900]))):
            product_of[p.id] = Product(p.id, p.code, p.name, p.salesforce_product_id, p.active)
    for row in rows:
        terms = PriceTerms(
            model=row.model, unit_price=row.unit_price, tiers=make_tiers(json.loads(row.tiers_json)),
            package_size=row.package_size, included_units=row.included_units,
            overage_unit_price=row.overage_unit_price, percent=row.percent,
            covered_product_codes=tuple(json.loads(row.covered_product_codes_json)),
        )
        cache[row.id] = Price(row.id, product_of[row.product_id], row.currency,
                              None if row.interval is None else Interval(row.interval), ChargeType(row.charge_type),
                              terms)


def subscriptions_of_customers(session: Session, customer_ids: Sequence[str], *, starts_by: date | None = None,
                               price_cache: dict | None = None,
                               subscription_ids: Sequence[str] | None = None) -> list[Subscription]:
    """The subscriptions of these customers (started by ``starts_by`` if given), whole histories,
    ordered by customer, currency, id: three queries per 900 customers (plus the prices not cached),
    not one per subscription. With ``subscription_ids``: those subscriptions instead."""
    cache = {} if price_cache is None else price_cache
    subs_t, items_t, amend_t = SubscriptionRow.__table__, SubscriptionItemRow.__table__, AmendmentRow.__table__
    out: list[Subscription] = []
    ids = list(customer_ids if subscription_ids is None else subscription_ids)
    by = subs_t.c.customer_id if subscription_ids is None else subs_t.c.id
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        query = select(subs_t).where(one_of(session, by, chunk))
        if starts_by is not None:
            query = query.where(subs_t.c.starts_on <= starts_by)
        rows = session.execute(query.order_by(subs_t.c.customer_id, subs_t.c.currency, subs_t.c.id)).all()
        if not rows:
            continue
        sids = [r.id for r in rows]
        items: dict[str, list[Any]] = {}
        amendments: dict[str, list[Any]] = {}
        for lo in range(0, len(sids), 900):
            part = sids[lo:lo + 900]
            for r in session.execute(select(items_t).where(one_of(session, items_t.c.subscription_id, part))
                                     .order_by(items_t.c.subscription_id, items_t.c.position)):
                items.setdefault(r.subscription_id, []).append(r)
            for r in session.execute(select(amend_t).where(one_of(session, amend_t.c.subscription_id, part))
                                     .order_by(amend_t.c.subscription_id, amend_t.c.sequence)):
                amendments.setdefault(r.subscription_id, []).append(r)
        load_prices(session, {r.price_id for rs in items.values() for r in rs}
                    | {r.price_id for rs in amendments.values() for r in rs if r.price_id}, cache)
        for row in rows:
            out.append(_subscription_from_rows(row, items.get(row.id, ()), amendments.get(row.id, ()), cache))
    return out


def _subscription_from_rows(row: Any, item_rows: Iterable[Any], amendment_rows: Iterable[Any],
                            cache: dict) -> Subscription:
    items = tuple(SubscriptionItem(r.item_id, cache[r.price_id], r.quantity, r.contract_unit_price,
                                   r.discount_percent, r.discount_amount) for r in item_rows)
    amendments = []
    for r in amendment_rows:
        action = AmendmentAction(r.action)
        item = None
        if action is AmendmentAction.ADD_ITEM:
            item = SubscriptionItem(r.item_id, cache[r.price_id], r.quantity, r.unit_price, r.discount_percent,
                                    r.discount_amount)
        amendments.append(Amendment(
            amendment_id=r.amendment_id, sequence=r.sequence, action=action, effective_on=r.effective_on,
            item_id=None if item is not None else r.item_id, quantity=None if item is not None else r.quantity,
            item=item, unit_price=None if item is not None else r.unit_price, immediate=r.immediate,
            reason=r.reason))
    return Subscription(
        subscription_id=row.id, customer_id=row.customer_id, currency=row.currency, starts_on=row.starts_on,
        items=items, interval=Interval(row.interval), billing_anchor_on=row.billing_anchor_on,
        term_months=row.term_months, auto_renew=row.auto_renew, renewal_uplift_percent=row.renewal_uplift_percent,
        minimum_amount=row.minimum_amount, external_key=row.external_key, amendments=tuple(amendments),
    )


def customers_page(session: Session, *, after: str | None, limit: int, starts_by: date | None = None) -> list[Any]:
    """Customer rows with at least one subscription (started by ``starts_by``), by id, after ``after``.

    Walks the subscriptions' customer index in order (a page costs its size, not the table's),
    then reads those customers."""
    customers, subs = CustomerRow.__table__, SubscriptionRow.__table__
    query = select(subs.c.customer_id).distinct().order_by(subs.c.customer_id).limit(limit)
    if starts_by is not None:
        query = query.where(subs.c.starts_on <= starts_by)
    if after is not None:
        query = query.where(subs.c.customer_id > after)
    ids = list(session.execute(query).scalars())
    if not ids:
        return []
    return list(session.execute(select(customers).where(one_of(session, customers.c.id, ids))
                                .order_by(customers.c.id)).all())


def subscription_terms_of_customers(session: Session, customer_ids: Sequence[str]) -> tuple[Sequence[Any], list[Any]]:
    """The raw rows the metrics' fast path reads, two queries: subscriptions of these customers
    ``(id, customer_id, currency, starts_on, term_months, auto_renew, renewal_uplift_percent, amended)``
    ordered by customer, currency, id, and their items ``(subscription_id, item_id, price_id, quantity,
    contract_unit_price, discount_percent, discount_amount)`` in position order.

    Plain tuples straight from the driver: the decimal columns of the items come back as the
    database has them (``Decimal`` on PostgreSQL, text on SQLite); read them with
    ``storage.columns.to_decimal_value``.
    """
    subs_t, items_t, amend_t = SubscriptionRow.__table__, SubscriptionItemRow.__table__, AmendmentRow.__table__
    amended = select(amend_t.c.id).where(amend_t.c.subscription_id == subs_t.c.id).exists()
    subs = session.execute(
        select(subs_t.c.id, subs_t.c.customer_id, subs_t.c.currency, subs_t.c.starts_on,  # type: ignore[call-overload]
               subs_t.c.term_months, subs_t.c.auto_renew, subs_t.c.renewal_uplift_percent, amended.label("amended"))
        .where(one_of(session, subs_t.c.customer_id, customer_ids))
        .order_by(subs_t.c.customer_id, subs_t.c.currency, subs_t.c.id)).all()
    raw = [type_coerce(c, NullType()) for c in (items_t.c.quantity, items_t.c.contract_unit_price,
                                                 items_t.c.discount_percent, items_t.c.discount_amount)]
    items: list[Any] = []
    sids = [sub.id for sub in subs]
    for start in range(0, len(sids), 900):  # by the items' subscription index, not a join the planner may scan
        result = session.connection().execute(
            select(items_t.c.subscription_id, items_t.c.item_id, items_t.c.price_id, *raw)
            .where(one_of(session, items_t.c.subscription_id, sids[start:start + 900]))
            .order_by(items_t.c.subscription_id, items_t.c.position))
        try:
            items.extend(result.cursor.fetchall())
        finally:
            result.close()
    return subs, items


def _plain_mrr_subscription() -> Any:
    """SQL: a subscription whose MRR is one amount for its whole life: no amendments, and no uplifted
    renewal (stricter than the metrics' own test, which also looks at the renewal date: a stricter
    test only sends more subscriptions down the exact per-customer path)."""
    subs_t, amend_t = SubscriptionRow.__table__, AmendmentRow.__table__
    return and_(~exists().where(amend_t.c.subscription_id == subs_t.c.id),
                or_(subs_t.c.renewal_uplift_percent == literal(0, type_=subs_t.c.renewal_uplift_percent.type),
                    subs_t.c.auto_renew.is_(False), subs_t.c.term_months.is_(None)))


def plain_subscription_groups(session: Session) -> list[tuple[str, int]]:
    """Customers whose only subscription is plain (see ``_plain_mrr_subscription``), grouped by what
    their MRR depends on (currency, start, term, auto-renew, every item's position, price, quantity,
    contract price and discounts): ``(one customer of the group, number of customers)`` per group,
    in one query. Every customer of a group has the same MRR on every date, so the metrics read one
    of them and weight it."""
    subs_t, items_t = SubscriptionRow.__table__, SubscriptionItemRow.__table__

    def text_of(column: Any) -> Any:
        return func.coalesce(cast(column, Text), "")

    term = (cast(items_t.c.position, Text) + "," + cast(func.length(items_t.c.price_id), Text) + ","
            + items_t.c.price_id + "," + text_of(items_t.c.quantity) + ","
            + text_of(items_t.c.contract_unit_price) + "," + text_of(items_t.c.discount_percent) + ","
            + text_of(items_t.c.discount_amount))
    # Each term is self-delimiting (position first, price id length-prefixed, decimals never hold
    # "," or ";"), so equal signatures mean the same items whatever order they were joined in.
    signature: Any = func.aggregate_strings(term, ";")
    if session.get_bind().dialect.name == "postgresql":
        signature = signature.aggregate_order_by(items_t.c.position)
    signatures = (select(items_t.c.subscription_id, signature.label("signature"))
                  .group_by(items_t.c.subscription_id).subquery())
    other = SubscriptionRow.__table__.alias("other")
    rows = session.execute(
        select(func.min(subs_t.c.customer_id), func.count())
        .join(signatures, signatures.c.subscription_id == subs_t.c.id)
        .where(_plain_mrr_subscription(),
               ~exists().where(other.c.customer_id == subs_t.c.customer_id, other.c.id != subs_t.c.id))
        .group_by(subs_t.c.currency, subs_t.c.starts_on, subs_t.c.term_months, subs_t.c.auto_renew,
                  signatures.c.signature)
        .order_by(func.min(subs_t.c.customer_id))).all()
    return [(customer_id, count) for customer_id, count in rows]


def other_subscription_customers_page(session: Session, *, after: str | None, limit: int) -> list[str]:
    """Ids of the customers ``plain_subscription_groups`` leaves out (more than one subscription, or
    one that is not plain), by id, after ``after``."""
    subs_t = SubscriptionRow.__table__
    query = (select(subs_t.c.customer_id).group_by(subs_t.c.customer_id)
             .having(or_(func.count() > 1, func.max(case((_plain_mrr_subscription(), 0), else_=1)) == 1))
             .order_by(subs_t.c.customer_id).limit(limit))
    if after is not None:
        query = query.where(subs_t.c.customer_id > after)
    return list(session.execute(query).scalars())


def iter_subscriptions(session: Session, *, batch_size: int = 1000) -> Iterator[Subscription]:
    """Every subscription, grouped by customer (in customer id order), loaded a batch of customers at a time."""
    cache: dict = {}
    after = None
    while True:
        page = customers_page(session, after=after, limit=batch_size)
        if not page:
            return
        after = page[-1].id
        yield from subscriptions_of_customers(session, [r.id for r in page], price_cache=cache)
