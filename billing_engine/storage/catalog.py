"""Customers, products and prices: their tables and the row <-> domain mapping.

Ids are strings (uuid4 hex or caller-given) so they can travel to Salesforce.
Every money and quantity column is ``ExactDecimal`` (exact on SQLite and
PostgreSQL); tiers are stored as JSON text of decimal strings, never floats.
Natural keys are UNIQUE: product code, price per product + currency + interval,
customer Salesforce Account id.

``price_from_row`` is the one place a stored price becomes a ``Price`` (with its
``PriceTerms``); ``load_prices`` reads many at once into a cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, UniqueConstraint, func
from sqlmodel import Field, Session, SQLModel, select

from billing_engine.catalog import ChargeType, Price, Product
from billing_engine.customers import Address, Customer
from billing_engine.periods import Interval
from billing_engine.pricing import PriceTerms, make_tiers, tiers_to_rows
from billing_engine.storage.columns import decimal_field
from billing_engine.storage.database import is_postgresql, one_of
from billing_engine.tax import ProductTax, TaxCategory


class CustomerRow(SQLModel, table=True):
    __tablename__ = "customers"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=255, nullable=False)
    currency: str = Field(max_length=3, nullable=False)
    timezone: str = Field(default="UTC", max_length=64, nullable=False)
    address_line1: str = Field(default="", max_length=255, nullable=False)
    address_line2: str = Field(default="", max_length=255, nullable=False)
    city: str = Field(default="", max_length=120, nullable=False)
    postal_code: str = Field(default="", max_length=32, nullable=False)
    region: str = Field(default="", max_length=120, nullable=False)
    country: str = Field(default="", max_length=2, nullable=False)
    payment_terms_days: int = Field(default=30, nullable=False)
    tax_rate_percent: Decimal | None = decimal_field(nullable=True)
    tax_exempt_reason: str | None = Field(default=None, max_length=255)
    vat_id: str | None = Field(default=None, max_length=64)
    salesforce_account_id: str | None = Field(default=None, max_length=18, unique=True)
    language: str | None = Field(default=None, max_length=2)


class ProductRow(SQLModel, table=True):
    __tablename__ = "products"
    id: str = Field(primary_key=True, max_length=64)
    code: str = Field(max_length=64, nullable=False, unique=True)
    name: str = Field(max_length=255, nullable=False)
    salesforce_product_id: str | None = Field(default=None, max_length=18, unique=True)
    active: bool = Field(default=True, nullable=False)
    tax_category: str | None = Field(default=None, max_length=20)
    tax_rate_percent: Decimal | None = decimal_field(nullable=True)
    tax_exemption_reason: str | None = Field(default=None, max_length=255)
    #: Offered on the self-service pages: the pricing page, checkout and the portal's plan changes.
    self_service: bool = Field(default=False, nullable=False)


class PriceRow(SQLModel, table=True):
    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("product_id", "currency", "interval", name="uq_prices_product_currency_interval"),)
    id: str = Field(primary_key=True, max_length=64)
    product_id: str = Field(foreign_key="products.id", max_length=64, nullable=False, index=True)
    currency: str = Field(max_length=3, nullable=False)
    interval: str | None = Field(default=None, max_length=16)  # None for one-time prices
    charge_type: str = Field(max_length=16, nullable=False)
    model: str = Field(max_length=32, nullable=False)
    unit_price: Decimal | None = decimal_field(nullable=True)
    tiers_json: str = Field(default="[]", sa_type=Text, nullable=False)  # [{"up_to": "5", "unit_price": "200", ...}]
    package_size: Decimal | None = decimal_field(nullable=True)
    included_units: Decimal | None = decimal_field(nullable=True)
    overage_unit_price: Decimal | None = decimal_field(nullable=True)
    percent: Decimal | None = decimal_field(nullable=True)
    covered_product_codes_json: str = Field(default="[]", sa_type=Text, nullable=False)


# ------------------------------------------------------------------ customers


def customer_from_row(row: Any) -> Customer:
    return Customer(
        customer_id=row.id, name=row.name, currency=row.currency, timezone=row.timezone,
        billing_address=Address(row.address_line1, row.address_line2, row.city, row.postal_code, row.region,
                                row.country),
        payment_terms_days=row.payment_terms_days, tax_rate_percent=row.tax_rate_percent,
        tax_exempt_reason=row.tax_exempt_reason, vat_id=row.vat_id, salesforce_account_id=row.salesforce_account_id,
        language=row.language,
    )


def find_customer(session: Session, customer_id: str) -> Customer | None:
    row = session.get(CustomerRow, customer_id)
    return None if row is None else customer_from_row(row)


def customers_by_id(session: Session, customer_ids: Iterable[str]) -> dict[str, Customer]:
    """The customers with these ids (missing ids are absent): one query per 900."""
    ids = sorted(set(customer_ids))
    t = CustomerRow.__table__
    out: dict[str, Customer] = {}
    for start in range(0, len(ids), 900):
        for row in session.execute(select(t).where(one_of(session, t.c.id, ids[start:start + 900]))):
            out[row.id] = customer_from_row(row)
    return out


def customer_names(session: Session, customer_ids: Iterable[str]) -> dict[str, str]:
    """The name of each of these customers (missing ids are absent)."""
    ids = sorted(set(customer_ids))
    t = CustomerRow.__table__  # type: ignore[attr-defined]  # set on every table class
    out: dict[str, str] = {}
    for start in range(0, len(ids), 900):
        out.update(dict(session.execute(select(t.c.id, t.c.name).where(one_of(session, t.c.id, ids[start:start + 900])))
                        .all()))
    return out


def customers_after(session: Session, after: str | None, limit: int) -> list[Customer]:
    """At most ``limit`` customers by id, after the id ``after`` (a page of the primary key)."""
    t = CustomerRow.__table__  # type: ignore[attr-defined]  # set on every table class
    query = select(t).order_by(t.c.id).limit(limit)
    if after is not None:
        query = query.where(t.c.id > after)
    return [customer_from_row(row) for row in session.execute(query)]


def claim_customers(session: Session, customer_ids: Sequence[str], *, wait: bool) -> set[str]:
    """Lock the customers for this transaction so that no other transaction bills them at the same
    time; return the ids claimed.

    PostgreSQL: ``SELECT … FOR NO KEY UPDATE`` in id order (rows inserted elsewhere that only point
    to a customer are not blocked); without ``wait``, ``SKIP LOCKED`` leaves out the customers
    another transaction holds, so two bill runs share the work instead of queueing. SQLite: every
    id, since the transaction already holds the database's write lock (``BEGIN IMMEDIATE``).
    """
    if not customer_ids:
        return set()
    if not is_postgresql(session):
        return set(customer_ids)
    t = CustomerRow.__table__  # type: ignore[attr-defined]  # set on every table class
    query = (select(t.c.id).where(one_of(session, t.c.id, customer_ids)).order_by(t.c.id)
             .with_for_update(key_share=True, skip_locked=not wait))
    return set(session.execute(query).scalars())


def customer_id_of_account(session: Session, salesforce_account_id: str) -> str | None:
    """The customer whose Salesforce Account id this is."""
    return session.exec(select(CustomerRow.id).where(
        CustomerRow.salesforce_account_id == salesforce_account_id)).first()


def count_customers(session: Session) -> int:
    return session.exec(select(func.count()).select_from(CustomerRow)).one()


def customer_ids_with_accounts(session: Session) -> list[str]:
    """Every customer that has a Salesforce Account, by id."""
    t = CustomerRow.__table__  # type: ignore[attr-defined]  # set on every table class
    return list(session.execute(select(t.c.id).where(t.c.salesforce_account_id.is_not(None))
                                .order_by(t.c.id)).scalars())


def save_customer(session: Session, customer: Customer) -> None:
    """Insert or update the customer's row (the caller checked the rules)."""
    row = session.get(CustomerRow, customer.customer_id)
    if row is None:
        row = CustomerRow(id=customer.customer_id, name=customer.name, currency=customer.currency)
        session.add(row)
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
    row.language = customer.language
    session.flush()


# -------------------------------------------------------------------- catalog


def product_from_row(row: Any) -> Product:
    tax = ProductTax(TaxCategory(row.tax_category) if row.tax_category else None, row.tax_rate_percent,
                     row.tax_exemption_reason or "")
    return Product(row.id, row.code, row.name, row.salesforce_product_id, row.active, tax, bool(row.self_service))


def find_product(session: Session, product_id: str) -> Product | None:
    row = session.get(ProductRow, product_id)
    return None if row is None else product_from_row(row)


def product_id_of_code(session: Session, code: str) -> str | None:
    return session.exec(select(ProductRow.id).where(ProductRow.code == code)).first()


def save_product(session: Session, product: Product) -> None:
    row = session.get(ProductRow, product.product_id)
    if row is None:
        row = ProductRow(id=product.product_id, code=product.code, name=product.name)
        session.add(row)
    row.code, row.name = product.code, product.name
    row.salesforce_product_id, row.active = product.salesforce_product_id, product.active
    row.self_service = product.self_service
    row.tax_category = product.tax.category.value if product.tax.category else None
    row.tax_rate_percent, row.tax_exemption_reason = product.tax.percent, product.tax.exemption_reason or None
    session.flush()


def price_from_row(row: Any, product: Product) -> Price:
    """The one mapping of a ``prices`` row (ORM object or Core row) to a ``Price``."""
    terms = PriceTerms(
        model=row.model, unit_price=row.unit_price, tiers=make_tiers(json.loads(row.tiers_json)),
        package_size=row.package_size, included_units=row.included_units,
        overage_unit_price=row.overage_unit_price, percent=row.percent,
        covered_product_codes=tuple(json.loads(row.covered_product_codes_json)),
    )
    return Price(row.id, product, row.currency, None if row.interval is None else Interval(row.interval),
                 ChargeType(row.charge_type), terms)


def load_prices(session: Session, price_ids: Iterable[str], cache: dict[str, Price]) -> None:
    """Load the missing prices (with their products) into ``cache`` in two queries per 900."""
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
            product_of[p.id] = product_from_row(p)
    for row in rows:
        cache[row.id] = price_from_row(row, product_of[row.product_id])


def self_service_prices(session: Session) -> list[Price]:
    """The prices of the active products offered on the self-service pages, by product code and price id."""
    ids = session.exec(select(PriceRow.id).join(ProductRow, ProductRow.id == PriceRow.product_id)
                       .where(ProductRow.self_service == True, ProductRow.active == True)  # noqa: E712
                       .order_by(ProductRow.code, PriceRow.id)).all()
    cache: dict[str, Price] = {}
    load_prices(session, ids, cache)
    return [cache[i] for i in ids]


def find_price(session: Session, price_id: str, cache: dict[str, Price] | None = None) -> Price | None:
    prices = {} if cache is None else cache
    load_prices(session, [price_id], prices)
    return prices.get(price_id)


def price_ids_of_product(session: Session, product_id: str, currency: str) -> list[str]:
    """The ids of a product's prices in a currency, in id order."""
    return list(session.exec(select(PriceRow.id).where(PriceRow.product_id == product_id,
                                                       PriceRow.currency == currency)
                             .order_by(PriceRow.id)).all())


def price_id_in_slot(session: Session, product_id: str, currency: str, interval: str | None,
                     *, other_than: str) -> str | None:
    """Another price of the product in this currency and interval (one is allowed per slot)."""
    return session.exec(select(PriceRow.id).where(
        PriceRow.product_id == product_id, PriceRow.currency == currency,
        PriceRow.interval == interval if interval is not None else PriceRow.interval.is_(None),
        PriceRow.id != other_than)).first()


def self_service_price_ids(session: Session, currency: str, interval: str) -> list[str]:
    """The recurring prices, in this currency and interval, of the active products offered on the
    self-service pages, in id order."""
    return list(session.exec(select(PriceRow.id).join(ProductRow, ProductRow.id == PriceRow.product_id).where(
        ProductRow.self_service.is_(True), ProductRow.active.is_(True), PriceRow.currency == currency,
        PriceRow.interval == interval, PriceRow.charge_type == "recurring").order_by(PriceRow.id)).all())


def save_price(session: Session, price: Price) -> None:
    row = session.get(PriceRow, price.price_id)
    terms = price.terms
    interval = None if price.interval is None else price.interval.value
    if row is None:
        row = PriceRow(id=price.price_id, product_id=price.product.product_id, currency=price.currency,
                       charge_type=price.charge_type.value, model=terms.model)
        session.add(row)
    row.product_id, row.currency, row.interval = price.product.product_id, price.currency, interval
    row.charge_type, row.model = price.charge_type.value, terms.model
    row.unit_price, row.package_size = terms.unit_price, terms.package_size
    row.included_units, row.overage_unit_price, row.percent = terms.included_units, terms.overage_unit_price, \
        terms.percent
    row.tiers_json = json.dumps(tiers_to_rows(terms.tiers))
    row.covered_product_codes_json = json.dumps(list(terms.covered_product_codes))
    session.flush()


def salesforce_product_ids(session: Session, codes: Iterable[str]) -> dict[str, str | None]:
    """Product code → its Salesforce Product2 id (None when it has none)."""
    wanted = sorted(set(codes))
    t = ProductRow.__table__
    out: dict[str, str | None] = {}
    for start in range(0, len(wanted), 900):
        out.update(dict(session.execute(select(t.c.code, t.c.salesforce_product_id)
                                        .where(t.c.code.in_(wanted[start:start + 900]))).all()))
    return out
