"""The JSON API in tests: API keys, and the app served over real HTTP on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask
from werkzeug.serving import make_server

from connector.api.auth import create_key


def new_key(app: Flask, name: str, *scopes: str) -> str:
    """A new API key (its secret) with ``scopes`` on ``app``'s database."""
    _, secret = create_key(app.extensions["billsync"].engine, name, scopes, now=datetime.now(UTC))
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """``app`` served by a threaded HTTP server on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="api-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def seed_subscriptions(engine) -> None:
    """Three customers and subscriptions with a history, and two months billed:

    - ``sub-a`` (``cus-a``, EUR) from 2026-01-01: 12 graduated seats (5×200 + 5×150 + 2×100) and
      support at 10 % of seats: MRR 2,145.00; 15 seats from 2026-03-01 (``a1``): MRR 2,475.00;
    - ``sub-b`` (``cus-b``, USD) from 2026-01-01: a flat 300.00 plan, cancelled immediately on
      2026-04-15;
    - ``sub-c`` (``cus-c``, EUR) from 2026-09-01: 2 seats.
    """
    from datetime import date
    from decimal import Decimal

    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
    from billing_engine.use_cases.billing import bill_customers
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import (
        amend_subscription,
        cancel_subscription,
        start_subscription,
    )
    from connector.database import transaction

    seats = make_price("pr-seats", make_product("p-seats", "SEATS", "Licences"), currency="EUR", model="graduated",
                       tiers=[{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150},
                              {"up_to": None, "unit_price": 100}])
    support = make_price("pr-support", make_product("p-support", "SUPPORT", "Premium support"), currency="EUR",
                         model="percent_of", percent="10", covered_product_codes=["SEATS"])
    pro = make_price("pr-pro", make_product("p-pro", "PRO", "Pro plan"), currency="USD", model="flat",
                     unit_price="300")
    with transaction(engine) as session:
        for price in (seats, support, pro):
            upsert_product(session, price.product)
            upsert_price(session, price)
        for cid, currency in (("cus-a", "EUR"), ("cus-b", "USD"), ("cus-c", "EUR")):
            upsert_customer(session, Customer(cid, f"Customer {cid}", currency))
        start_subscription(session, make_subscription("sub-a", "cus-a", "EUR", date(2026, 1, 1), [
            SubscriptionItem("a-seats", seats, quantity=Decimal(12)), SubscriptionItem("a-support", support)]))
        start_subscription(session, make_subscription("sub-b", "cus-b", "USD", date(2026, 1, 1), [
            SubscriptionItem("b-pro", pro)]))
        start_subscription(session, make_subscription("sub-c", "cus-c", "EUR", date(2026, 9, 1), [
            SubscriptionItem("c-seats", seats, quantity=Decimal(2))]))
    bill_customers(engine, date(2026, 2, 1))
    with transaction(engine) as session:
        amend_subscription(session, "sub-a", Amendment("a1", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 3, 1),
                                                       item_id="a-seats", quantity=Decimal(15), reason="more staff"))
        cancel_subscription(session, "sub-b", date(2026, 4, 15), immediate=True, reason="closed")
