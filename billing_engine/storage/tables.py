"""Tables of the catalog, customers and subscriptions (issue 3, Engine I).

Ids are strings (uuid4 hex or caller-given) so they can travel to Salesforce.
Every money and quantity column is ``ExactDecimal`` (exact on SQLite and
PostgreSQL); tiers are stored as JSON text of decimal strings, never floats.

A subscription is stored as its initial items plus its append-only amendments;
its versions ("what was it on date D") are derived by the pure domain
(``billing_engine.subscriptions``). Natural keys are UNIQUE: product code,
price per product + currency + interval, customer Salesforce Account id,
subscription external key (e.g. the Salesforce Opportunity id).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from billing_engine.storage.columns import ExactDecimal


def _decimal(nullable: bool = False, **kw: Any) -> Any:
    return Field(default=None if nullable else Decimal(0), sa_type=ExactDecimal, nullable=nullable, **kw)


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
    tax_rate_percent: Decimal | None = _decimal(nullable=True)
    tax_exempt_reason: str | None = Field(default=None, max_length=255)
    vat_id: str | None = Field(default=None, max_length=64)
    salesforce_account_id: str | None = Field(default=None, max_length=18, unique=True)


class ProductRow(SQLModel, table=True):
    __tablename__ = "products"
    id: str = Field(primary_key=True, max_length=64)
    code: str = Field(max_length=64, nullable=False, unique=True)
    name: str = Field(max_length=255, nullable=False)
    salesforce_product_id: str | None = Field(default=None, max_length=18, unique=True)
    active: bool = Field(default=True, nullable=False)


class PriceRow(SQLModel, table=True):
    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("product_id", "currency", "interval", name="uq_prices_product_currency_interval"),)
    id: str = Field(primary_key=True, max_length=64)
    product_id: str = Field(foreign_key="products.id", max_length=64, nullable=False, index=True)
    currency: str = Field(max_length=3, nullable=False)
    interval: str | None = Field(default=None, max_length=16)  # None for one-time prices
    charge_type: str = Field(max_length=16, nullable=False)
    model: str = Field(max_length=32, nullable=False)
    unit_price: Decimal | None = _decimal(nullable=True)
    tiers_json: str = Field(default="[]", sa_type=Text, nullable=False)  # [{"up_to": "5", "unit_price": "200", ...}]
    package_size: Decimal | None = _decimal(nullable=True)
    included_units: Decimal | None = _decimal(nullable=True)
    overage_unit_price: Decimal | None = _decimal(nullable=True)
    percent: Decimal | None = _decimal(nullable=True)
    covered_product_codes_json: str = Field(default="[]", sa_type=Text, nullable=False)


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
    renewal_uplift_percent: Decimal = _decimal()
    minimum_amount: Decimal | None = _decimal(nullable=True)
    external_key: str | None = Field(default=None, max_length=64, unique=True)
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
    quantity: Decimal = _decimal()
    contract_unit_price: Decimal | None = _decimal(nullable=True)
    discount_percent: Decimal | None = _decimal(nullable=True)
    discount_amount: Decimal | None = _decimal(nullable=True)


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
    quantity: Decimal | None = _decimal(nullable=True)
    unit_price: Decimal | None = _decimal(nullable=True)
    immediate: bool = Field(default=False, nullable=False)
    reason: str = Field(default="", max_length=500, nullable=False)
    # add_item: the new item's terms
    price_id: str | None = Field(default=None, foreign_key="prices.id", max_length=64)
    discount_percent: Decimal | None = _decimal(nullable=True)
    discount_amount: Decimal | None = _decimal(nullable=True)
