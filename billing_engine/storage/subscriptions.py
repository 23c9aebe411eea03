"""Subscriptions, their items and amendments: the tables, THE rows <-> ``Subscription`` mapper
and its bulk loaders.

A subscription is stored as its initial items plus its append-only amendments; its
versions ("what was it on date D") are derived by the pure domain
(``billing_engine.subscriptions``). The subscription's external key (e.g. the Salesforce
Opportunity id) is UNIQUE.

Every read of whole subscriptions goes through ``subscriptions_of_customers`` (three
queries per 900 customers or subscriptions, plus the prices not cached yet) and
``subscription_from_rows``; the MRR fast path reads plain rows
(``subscription_terms_of_customers``, ``plain_subscription_groups``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Text, UniqueConstraint, and_, case, cast, exists, func, literal, or_, type_coerce
from sqlalchemy.types import NullType
from sqlmodel import Field, Session, SQLModel, select

from billing_engine.catalog import Price
from billing_engine.periods import Interval
from billing_engine.storage.catalog import CustomerRow, load_prices
from billing_engine.storage.columns import decimal_field
from billing_engine.storage.database import one_of
from billing_engine.subscriptions import Amendment, AmendmentAction, Subscription, SubscriptionItem


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"
    id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, nullable=False, index=True)
    currency: str = Field(max_length=3, nullable=False)
    starts_on: date = Field(nullable=False)
    interval: str = Field(max_length=16, nullable=False)
    billing_anchor_on: date = Field(nullable=False)
    term_months: int | None = Field(default=None)
    auto_renew: bool = Field(default=True, nullable=False)
    renewal_uplift_percent: Decimal = decimal_field()
    minimum_amount: Decimal | None = decimal_field(nullable=True)
    external_key: str | None = Field(default=None, max_length=64, unique=True)
    bills_from: date | None = Field(default=None)  # the first day billsync may invoice (None: the start)
    purchase_order: str = Field(default="", max_length=80, nullable=False)
    buyer_reference: str = Field(default="", max_length=80, nullable=False)
    # The admin's custom attributes: a JSON object of strings, {"cost_centre": "CC-42"}.
    attributes_json: str = Field(default="{}", sa_type=Text, nullable=False)
    # Derived, kept for queries and lists: "active" or "cancelled"; the dates come from amendments.
    status: str = Field(default="active", max_length=16, nullable=False)
    ends_before: date | None = Field(default=None)


class SubscriptionItemRow(SQLModel, table=True):
    """The items a subscription started with (later changes are amendments)."""

    __tablename__ = "subscription_items"
    __table_args__ = (UniqueConstraint("subscription_id", "item_id", name="uq_subscription_items_item"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", max_length=64, nullable=False, index=True)
    item_id: str = Field(max_length=64, nullable=False)
    position: int = Field(default=0, nullable=False)
    price_id: str = Field(foreign_key="prices.id", max_length=64, nullable=False)
    quantity: Decimal = decimal_field()
    contract_unit_price: Decimal | None = decimal_field(nullable=True)
    discount_percent: Decimal | None = decimal_field(nullable=True)
    discount_amount: Decimal | None = decimal_field(nullable=True)


class AmendmentRow(SQLModel, table=True):
    """One recorded change, in recording order (``sequence``), with its effective date."""

    __tablename__ = "amendments"
    __table_args__ = (
        UniqueConstraint("subscription_id", "amendment_id", name="uq_amendments_id"),
        UniqueConstraint("subscription_id", "sequence", name="uq_amendments_sequence"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", max_length=64, nullable=False, index=True)
    amendment_id: str = Field(max_length=64, nullable=False)
    sequence: int = Field(nullable=False)
    action: str = Field(max_length=32, nullable=False)
    effective_on: date = Field(nullable=False)
    item_id: str | None = Field(default=None, max_length=64)
    quantity: Decimal | None = decimal_field(nullable=True)
    unit_price: Decimal | None = decimal_field(nullable=True)
    immediate: bool = Field(default=False, nullable=False)
    reason: str = Field(default="", max_length=500, nullable=False)
    # add_item: the new item's terms
    price_id: str | None = Field(default=None, foreign_key="prices.id", max_length=64)
    discount_percent: Decimal | None = decimal_field(nullable=True)
    discount_amount: Decimal | None = decimal_field(nullable=True)


# ------------------------------------------------------------------ writing


def attributes_json(attributes: Iterable[tuple[str, str]]) -> str:
    """The stored form of custom attributes: a JSON object of strings, keys sorted."""
    return json.dumps(dict(attributes), sort_keys=True, ensure_ascii=False)


def attributes_of(text: str | None) -> tuple[tuple[str, str], ...]:
    """Custom attributes read back from their JSON column (sorted by name)."""
    return tuple(sorted((str(k), str(v)) for k, v in json.loads(text or "{}").items()))


def set_attributes(session: Session, subscription_id: str, attributes: Iterable[tuple[str, str]]) -> None:
    """Replace a subscription's custom attributes (the caller checked them)."""
    session.execute(sa.update(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
                    .values(attributes_json=attributes_json(attributes)))


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


def add_subscription(session: Session, subscription: Subscription) -> None:
    """Insert a new subscription with its items and amendments (the caller checked the rules)."""
    session.add(SubscriptionRow(
        id=subscription.subscription_id, customer_id=subscription.customer_id, currency=subscription.currency,
        starts_on=subscription.starts_on, interval=subscription.interval.value,
        billing_anchor_on=subscription.billing_anchor_on, term_months=subscription.term_months,
        auto_renew=subscription.auto_renew, renewal_uplift_percent=subscription.renewal_uplift_percent,
        minimum_amount=subscription.minimum_amount, external_key=subscription.external_key,
        bills_from=subscription.bills_from, status="active", ends_before=subscription.ends_before,
        purchase_order=subscription.purchase_order, buyer_reference=subscription.buyer_reference,
        attributes_json=attributes_json(subscription.attributes),
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


def _stored_status(subscription: Subscription) -> str:
    return "cancelled" if subscription.cancellation is not None else "active"


def add_amendment(session: Session, amended: Subscription, amendment: Amendment) -> None:
    """Append ``amendment`` (already part of ``amended``) and refresh the derived columns.

    Raises ``IntegrityError`` when another transaction recorded the same sequence first."""
    session.add(_amendment_row(amended.subscription_id, amendment))
    row = session.get(SubscriptionRow, amended.subscription_id)
    row.status = _stored_status(amended)
    row.ends_before = amended.ends_before
    session.flush()


# ------------------------------------------------------------------ reading


def subscription_exists(session: Session, subscription_id: str) -> bool:
    return session.get(SubscriptionRow, subscription_id) is not None


def subscription_id_of_key(session: Session, external_key: str) -> str | None:
    """The subscription whose external key (e.g. the Opportunity id) this is."""
    return session.exec(select(SubscriptionRow.id).where(SubscriptionRow.external_key == external_key)).first()


def set_external_key(session: Session, subscription_id: str, external_key: str) -> None:
    row = session.get(SubscriptionRow, subscription_id)
    if row is not None:
        row.external_key = external_key
        session.add(row)
        session.flush()


def customer_has_subscriptions(session: Session, customer_id: str) -> bool:
    return session.exec(select(SubscriptionRow.id).where(SubscriptionRow.customer_id == customer_id)).first() \
        is not None


def subscription_counts(session: Session) -> dict[str, int]:
    """How many subscriptions have each stored status (``active``, ``cancelled``)."""
    t = SubscriptionRow.__table__
    return {status: count for status, count in
            session.execute(select(t.c.status, func.count()).group_by(t.c.status))}


def price_in_use(session: Session, price_id: str) -> bool:
    """Whether a subscription item or an amendment uses this price."""
    used = session.exec(select(SubscriptionItemRow.id).where(SubscriptionItemRow.price_id == price_id)).first()
    return used is not None or session.exec(
        select(AmendmentRow.id).where(AmendmentRow.price_id == price_id)).first() is not None


def subscription_from_rows(row: Any, item_rows: Iterable[Any], amendment_rows: Iterable[Any],
                           prices: dict[str, Price]) -> Subscription:
    """THE mapping of a subscription's rows (ORM objects or Core rows) to the domain ``Subscription``;
    ``prices`` must hold every price the items and amendments use (``load_prices``)."""
    items = tuple(SubscriptionItem(r.item_id, prices[r.price_id], r.quantity, r.contract_unit_price,
                                   r.discount_percent, r.discount_amount) for r in item_rows)
    amendments = []
    for r in amendment_rows:
        action = AmendmentAction(r.action)
        item = None
        if action is AmendmentAction.ADD_ITEM:
            item = SubscriptionItem(r.item_id, prices[r.price_id], r.quantity, r.unit_price, r.discount_percent,
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
        bills_from=row.bills_from, purchase_order=row.purchase_order or "", buyer_reference=row.buyer_reference or "",
        attributes=attributes_of(row.attributes_json),
    )


def subscriptions_of_customers(session: Session, customer_ids: Sequence[str], *, starts_by: date | None = None,
                               price_cache: dict[str, Price] | None = None,
                               subscription_ids: Sequence[str] | None = None,
                               for_update: bool = False) -> list[Subscription]:
    """The subscriptions of these customers (started by ``starts_by`` if given), whole histories,
    ordered by customer, currency, id: three queries per 900 customers (plus the prices not cached),
    not one per subscription. With ``subscription_ids``: those subscriptions instead.
    ``for_update`` locks the subscription rows (PostgreSQL) until the transaction ends."""
    cache: dict[str, Price] = {} if price_cache is None else price_cache
    subs_t, items_t, amend_t = SubscriptionRow.__table__, SubscriptionItemRow.__table__, AmendmentRow.__table__
    out: list[Subscription] = []
    ids = list(customer_ids if subscription_ids is None else subscription_ids)
    by = subs_t.c.customer_id if subscription_ids is None else subs_t.c.id
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        query = select(subs_t).where(one_of(session, by, chunk))
        if starts_by is not None:
            query = query.where(subs_t.c.starts_on <= starts_by)
        query = query.order_by(subs_t.c.customer_id, subs_t.c.currency, subs_t.c.id)
        if for_update:
            query = query.with_for_update()
        rows = session.execute(query).all()
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
            out.append(subscription_from_rows(row, items.get(row.id, ()), amendments.get(row.id, ()), cache))
    return out


def find_subscription(session: Session, subscription_id: str, *, for_update: bool = False,
                      price_cache: dict[str, Price] | None = None) -> Subscription | None:
    found = subscriptions_of_customers(session, (), subscription_ids=[subscription_id], for_update=for_update,
                                       price_cache=price_cache)
    return found[0] if found else None


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


def subscription_terms_of_customers(session: Session, customer_ids: Sequence[str]) -> tuple[list[Any], list[Any]]:
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
    subs: list[Any] = session.execute(
        select(subs_t.c.id, subs_t.c.customer_id, subs_t.c.currency, subs_t.c.starts_on, subs_t.c.term_months,
               subs_t.c.auto_renew, subs_t.c.renewal_uplift_percent, amended.label("amended"))  # type: ignore[call-overload]
        .where(one_of(session, subs_t.c.customer_id, customer_ids))
        .order_by(subs_t.c.customer_id, subs_t.c.currency, subs_t.c.id)).all()  # type: ignore[assignment]
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


def subscription_keys(session: Session, subscription_ids: Iterable[str]) -> dict[str, tuple[str | None, str]]:
    """Subscription id → (its external key, its stored status ``active``/``cancelled``)."""
    wanted = sorted(set(subscription_ids))
    t = SubscriptionRow.__table__
    out: dict[str, tuple[str | None, str]] = {}
    for start in range(0, len(wanted), 900):
        for sid, key, status in session.execute(select(t.c.id, t.c.external_key, t.c.status)
                                                .where(t.c.id.in_(wanted[start:start + 900]))):
            out[sid] = (key, status)
    return out


def subscription_ids_page(session: Session, *, on: date, limit: int, after: str | None = None,
                          customer_id: str | None = None, status: str | None = None) -> list[str]:
    """Subscription ids in id order after ``after``, of one customer and with one status on ``on``
    (``pending``, ``active``, ``cancelled``, ``ended``, as ``Subscription.status_on`` says, from the
    stored start, end and cancellation): one index range scan per page."""
    t = SubscriptionRow.__table__
    query = sa.select(t.c.id)
    if after is not None:
        query = query.where(t.c.id > after)
    if customer_id is not None:
        query = query.where(t.c.customer_id == customer_id)
    running = or_(t.c.ends_before.is_(None), t.c.ends_before > on)
    if status == "pending":
        query = query.where(t.c.starts_on > on)
    elif status == "ended":
        query = query.where(t.c.starts_on <= on, t.c.ends_before.is_not(None), t.c.ends_before <= on)
    elif status in ("active", "cancelled"):
        query = query.where(t.c.starts_on <= on, t.c.status == status, running)
    return list(session.execute(query.order_by(t.c.id).limit(limit)).scalars())


def invoices_of_subscription(session: Session, subscription_id: str) -> list[Any]:
    """The invoices with a line of this subscription, by id: ``(id, number, status, issued_on,
    created_at, currency, total, lines)``, ``lines`` counting this subscription's lines on it."""
    from billing_engine.storage.invoices import Invoice, InvoiceLine

    inv, line = Invoice.__table__, InvoiceLine.__table__
    return list(session.execute(
        sa.select(inv.c.id, inv.c.number, inv.c.status, inv.c.issued_on, inv.c.created_at, inv.c.currency,
               inv.c.total, func.count(line.c.id).label("lines"))
        .join(line, line.c.invoice_id == inv.c.id)
        .where(line.c.subscription_id == subscription_id)
        .group_by(inv.c.id, inv.c.number, inv.c.status, inv.c.issued_on, inv.c.created_at, inv.c.currency,
                  inv.c.total)
        .order_by(inv.c.id)).all())
