"""Catalog use cases: products and their prices.

A product's code is unique; a product has at most one price per currency and interval.
A price already used by subscriptions keeps its terms: new terms are sold as a new price.
"""

from __future__ import annotations

from billing_engine.catalog import Price, Product
from billing_engine.errors import ConflictError, NotFoundError
from billing_engine.storage import catalog as store
from billing_engine.storage.database import Session
from billing_engine.storage.subscriptions import price_in_use


def upsert_product(session: Session, product: Product) -> Product:
    """Create or update a product by id; its code is unique."""
    other = store.product_id_of_code(session, product.code)
    if other is not None and other != product.product_id:
        raise ConflictError(f"product code {product.code}", f"already belongs to product {other}")
    store.save_product(session, product)
    return product


def get_product(session: Session, product_id: str) -> Product:
    product = store.find_product(session, product_id)
    if product is None:
        raise NotFoundError("product", product_id)
    return product


def find_product(session: Session, product_id: str) -> Product | None:
    return store.find_product(session, product_id)


def upsert_price(session: Session, price: Price) -> Price:
    """Create or update a price by id (its product must exist; one price per product, currency, interval).

    A price already used by subscriptions keeps its terms: sell new terms as a new price.
    """
    if store.find_product(session, price.product.product_id) is None:
        raise NotFoundError("product", price.product.product_id)
    interval = None if price.interval is None else price.interval.value
    other = store.price_id_in_slot(session, price.product.product_id, price.currency, interval,
                                   other_than=price.price_id)
    if other is not None:
        raise ConflictError(f"price {price.price_id}",
                            f"product {price.product.code} already has price {other} in {price.currency}"
                            f" per {interval or 'one-time'}")
    stored = store.find_price(session, price.price_id)
    if stored is not None and stored != price and price_in_use(session, price.price_id):
        raise ConflictError(f"price {price.price_id}", "is used by subscriptions; create a new price instead")
    store.save_price(session, price)
    return price


def get_price(session: Session, price_id: str, cache: dict[str, Price] | None = None) -> Price:
    price = store.find_price(session, price_id, cache)
    if price is None:
        raise NotFoundError("price", price_id)
    return price


def find_price(session: Session, price_id: str) -> Price | None:
    return store.find_price(session, price_id)


def find_price_of_product(session: Session, product_code: str, currency: str) -> Price | None:
    """The catalog price of a product (by code) in a currency: the first by id (the recurring one
    when its ids sort first), None when the product or the price is missing."""
    product_id = store.product_id_of_code(session, product_code)
    if product_id is None:
        return None
    ids = store.price_ids_of_product(session, product_id, currency)
    return get_price(session, ids[0]) if ids else None


def self_service_prices(session: Session, currency: str, interval: str) -> list[Price]:
    """The plans a customer may switch to on the self-service pages: the recurring prices in
    ``currency`` and ``interval`` of the active products offered there."""
    cache: dict[str, Price] = {}
    return [get_price(session, price_id, cache) for price_id in store.self_service_price_ids(session, currency,
                                                                                              interval)]
