"""Catalog, customers and subscriptions stored and read back on the backend under test: exact decimals,
natural keys unique, and the stored history bills exactly like the in-memory one."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import text

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.customers import Address, Customer
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError, NotFoundError
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.catalog import get_price, upsert_price, upsert_product
from billing_engine.use_cases.customers import find_customer_by_salesforce_id, get_customer, upsert_customer
from billing_engine.use_cases.subscriptions import (
    amend_subscription,
    cancel_subscription,
    get_subscription,
    renew_subscription,
    start_subscription,
)
from connector.database import transaction

LIC = make_product("p-lic", "LIC", "Licences", salesforce_product_id="01t000000000001AAA")
API = make_product("p-api", "API", "API calls")
SEED_TIERS = [{"up_to": "5", "unit_price": "200"}, {"up_to": "10", "unit_price": "150"},
              {"up_to": None, "unit_price": "100"}]
LIC_PRICE = make_price("pr-lic", LIC, currency="EUR", model="graduated", tiers=SEED_TIERS)
API_PRICE = make_price("pr-api", API, currency="EUR", model="per_unit", unit_price="0.0004", charge_type="usage")
CUSTOMER = Customer("cust-1", "ACME SARL", "EUR", "Europe/Paris", Address("1 rue de la Paix", city="Paris",
                    postal_code="75002", country="FR"), 45, D("20.0"), vat_id="FR40303265045",
                    salesforce_account_id="001000000000001AAA")


def seed(session):
    upsert_customer(session, CUSTOMER)
    for product in (LIC, API):
        upsert_product(session, product)
    for price in (LIC_PRICE, API_PRICE):
        upsert_price(session, price)


def subscription(**kw):
    return make_subscription("sub-1", "cust-1", "EUR", date(2026, 1, 31),
                             [SubscriptionItem("lic", LIC_PRICE, D("12"), discount_percent=D("12.5")),
                              SubscriptionItem("api", API_PRICE, D(0))],
                             billing_anchor_day=31, renewal_uplift_percent="3.5", minimum_amount="999.99",
                             external_key="006000000000001AAA", **kw)


def test_catalog_and_customer_round_trip_exactly(engine):
    """docs/billing-rules.md §1 Money and rounding: unit prices to 6 decimals and tiers survive storage
    digit for digit, never as floats."""
    with transaction(engine) as session:
        seed(session)
    with transaction(engine) as session:
        assert get_customer(session, "cust-1") == CUSTOMER
        assert get_price(session, "pr-lic") == LIC_PRICE
        api = get_price(session, "pr-api")
        assert api == API_PRICE and str(api.terms.unit_price) == "0.0004"
        assert find_customer_by_salesforce_id(session, "001000000000001AAA") == CUSTOMER
    with engine.connect() as conn:
        tiers = json.loads(conn.execute(text("SELECT tiers_json FROM prices WHERE id = 'pr-lic'")).scalar_one())
    assert tiers[0] == {"up_to": "5", "unit_price": "200", "flat_fee": "0"}


def test_a_stored_subscription_bills_like_the_one_in_memory(engine):
    """docs/billing-rules.md §9 Amendments: start, amend (past-dated too), cancel; the loaded history gives
    the same lines."""
    sub = subscription()
    with transaction(engine) as session:
        seed(session)
        start_subscription(session, sub)
    with transaction(engine) as session:
        amend_subscription(session, "sub-1", Amendment(
            "", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 3, 15), item_id="lic", quantity=D("14.5")))
        amend_subscription(session, "sub-1", Amendment(
            "", 0, AmendmentAction.ADD_ITEM, date(2026, 2, 10), item=SubscriptionItem(
                "extra", LIC_PRICE, D(2), contract_unit_price=D("123.456789"), discount_amount=D("0.01"))))
        cancel_subscription(session, "sub-1", date(2026, 6, 1), immediate=True)
    expected = subscription()
    expected = expected.amend(Amendment("a1", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 3, 15),
                                        item_id="lic", quantity=D("14.5")))
    expected = expected.amend(Amendment("a2", 0, AmendmentAction.ADD_ITEM, date(2026, 2, 10), item=SubscriptionItem(
        "extra", LIC_PRICE, D(2), contract_unit_price=D("123.456789"), discount_amount=D("0.01"))))
    expected = expected.amend(Amendment("a3", 0, AmendmentAction.CANCEL, date(2026, 6, 1), immediate=True))
    with transaction(engine) as session:
        loaded = get_subscription(session, "sub-1")
    assert loaded == expected
    usage = {("api", date(2026, 1, 31)): D("1234567")}
    lines = charges_due(loaded, date(2026, 7, 1), usage=usage)
    assert lines == charges_due(expected, date(2026, 7, 1), usage=usage)
    assert lines[0].amount == D("1706.25")  # 1,950 − 12.5 %
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, ends_before FROM subscriptions WHERE id = 'sub-1'")).one()
    assert row[0] == "cancelled" and str(row[1]) == "2026-06-01"


def test_renewal_of_a_fixed_term_is_recorded_at_the_term_end(engine):
    """docs/billing-rules.md §11 Terms and renewals: a renewal starts a new term and keeps contract prices
    with the uplift."""
    with transaction(engine) as session:
        seed(session)
        start_subscription(session, subscription(auto_renew=False))
        renewed = renew_subscription(session, "sub-1")
    assert renewed.ends_before == date(2028, 1, 31)
    with transaction(engine) as session:
        assert get_subscription(session, "sub-1").ends_before == date(2028, 1, 31)


def test_natural_keys_are_unique_and_errors_name_them(engine):
    """Natural keys are unique: product code, price per product+currency+interval, Salesforce ids,
    subscription external key; cancelling twice is a conflict; a missing customer is not found."""
    with transaction(engine) as session:
        seed(session)
        start_subscription(session, subscription())
    with transaction(engine) as session, pytest.raises(ConflictError, match="product code LIC"):
        upsert_product(session, make_product("p-other", "LIC", "Other"))
    with transaction(engine) as session, pytest.raises(ConflictError, match="already has price pr-lic"):
        upsert_price(session, make_price("pr-lic-2", LIC, currency="EUR", model="flat", unit_price="1"))
    with transaction(engine) as session, pytest.raises(ConflictError, match="001000000000001AAA"):
        upsert_customer(session, Customer("cust-2", "Other", "EUR",
                                                   salesforce_account_id="001000000000001AAA"))
    with transaction(engine) as session, pytest.raises(ConflictError, match="external_key"):
        start_subscription(session, make_subscription(
            "sub-2", "cust-1", "EUR", date(2026, 1, 1), [SubscriptionItem("lic", LIC_PRICE)],
            external_key="006000000000001AAA"))
    with transaction(engine) as session, pytest.raises(ConflictError, match="used by subscriptions"):
        upsert_price(session, make_price("pr-lic", LIC, currency="EUR", model="volume", tiers=SEED_TIERS))
    with transaction(engine) as session:
        cancel_subscription(session, "sub-1", date(2026, 5, 1))
    with transaction(engine) as session, pytest.raises(ConflictError, match="already cancelled"):
        cancel_subscription(session, "sub-1", date(2026, 6, 1))
    with transaction(engine) as session, pytest.raises(InvalidInputError) as err:
        amend_subscription(session, "sub-1", Amendment(
            "", 0, AmendmentAction.CHANGE_QUANTITY, date(2025, 1, 1), item_id="lic", quantity=D(1)))
    assert err.value.field == "effective_on"
    with transaction(engine) as session, pytest.raises(NotFoundError):
        start_subscription(session, make_subscription("sub-3", "nobody", "EUR", date(2026, 1, 1),
                                                               [SubscriptionItem("lic", LIC_PRICE)]))
    usd = make_price("pr-lic-usd", LIC, currency="USD", model="flat", unit_price="1")
    with transaction(engine) as session, pytest.raises(CurrencyMismatchError):
        upsert_price(session, usd)
        start_subscription(session, make_subscription("sub-4", "cust-1", "USD", date(2026, 1, 1),
                                                               [SubscriptionItem("lic", usd)]))
