"""The pure parts of ``connector.sync.apply``: commands → engine values (no database, no network)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_engine.catalog import Product, make_price
from billing_engine.errors import InvalidInputError
from billing_engine.subscriptions import AmendmentAction, SubscriptionItem, make_subscription
from connector.sync.apply import (
    ApplyError,
    amendment_actions,
    command_hash,
    country_code,
    customer_from,
    item_from,
    price_from,
)

LIC = Product("prod-lic", "LIC", "Licences")
SEATS = Product("prod-seats", "SEATS", "Seats")
LIC_EUR = make_price("price-lic", LIC, currency="EUR", model="graduated",
                     tiers=[{"up_to": 5, "unit_price": "200"}, {"up_to": None, "unit_price": "100"}])
SEATS_EUR = make_price("price-seats", SEATS, currency="EUR", model="per_unit", unit_price=Decimal("25.00"))


def line(line_id: str, code: str, quantity: str, unit_price: str | None = None, list_price: str | None = None,
         **extra):
    return {"salesforce_line_id": line_id, "product_code": code, "quantity": Decimal(quantity),
            "unit_price": None if unit_price is None else Decimal(unit_price),
            "list_price": None if list_price is None else Decimal(list_price), **extra}


def subscription():
    return make_subscription("sub-1", "cus-1", "EUR", date(2026, 1, 5), [
        SubscriptionItem("0QL000000000001AAA", LIC_EUR, Decimal(12)),
        SubscriptionItem("0QL000000000002AAA", SEATS_EUR, Decimal(10), contract_unit_price=Decimal("22.00")),
    ])


def amendment(*lines, starts_on=date(2026, 2, 20)):
    return {"command": "amend_subscription", "key": "006000000000009AAA",
            "data": {"starts_on": starts_on, "items": list(lines)}}


def test_a_line_priced_away_from_its_list_price_carries_a_contract_price():
    assert item_from(line("0QL1", "SEATS", "20", "22.00", "25.00"), SEATS_EUR).contract_unit_price == Decimal("22.00")
    assert item_from(line("0QL1", "SEATS", "20", "25.00", "25.00"), SEATS_EUR).contract_unit_price is None
    # no ListPrice on the line: compared with the catalog price
    assert item_from(line("0QL1", "SEATS", "20", "25"), SEATS_EUR).contract_unit_price is None
    tiered = item_from(line("0QL2", "LIC", "12", "0.00", "0.00", discount_percent=Decimal(10)), LIC_EUR)
    assert (tiered.contract_unit_price, tiered.discount_percent) == (None, Decimal(10))


def test_an_amendment_deal_becomes_quantity_changes_additions_removals_and_explicit_reprices():
    actions = amendment_actions(subscription(), amendment(
        line("0QLnew", "LIC", "15", "0.00", "0.00"),  # matched by product code: 12 → 15
        line("0QL000000000002AAA", "SEATS", "10", "20.00", "25.00"),  # explicit new contract price
    ), price_of=lambda _line: pytest.fail("no price needed"))
    assert [(a.amendment_id, a.action, a.item_id, a.quantity, a.unit_price) for a in actions] == [
        ("006000000000009AAA-1", AmendmentAction.CHANGE_QUANTITY, "0QL000000000001AAA", Decimal(15), None),
        ("006000000000009AAA-2", AmendmentAction.CHANGE_PRICE, "0QL000000000002AAA", None, Decimal("20.00")),
    ]
    assert all(a.effective_on == date(2026, 2, 20) for a in actions)

    more = amendment_actions(subscription(), amendment(line("0QL3", "SEATS", "0"), line("0QL4", "DATA", "2")),
                             price_of=lambda _line: SEATS_EUR)
    assert [a.action for a in more] == [AmendmentAction.REMOVE_ITEM, AmendmentAction.ADD_ITEM]
    assert more[1].item.item_id == "0QL4" and more[1].item.quantity == Decimal(2)


def test_an_unchanged_line_asks_for_nothing_and_a_list_priced_line_never_reprices():
    same = amendment(line("x", "LIC", "12"), line("y", "SEATS", "10", "25.00", "25.00"))
    assert amendment_actions(subscription(), same, price_of=None) == []


def test_an_amendment_outside_the_subscription_is_refused_with_its_dates():
    with pytest.raises(ApplyError, match="not active on 2025-12-01"):
        amendment_actions(subscription(), amendment(line("x", "LIC", "3"), starts_on=date(2025, 12, 1)),
                          price_of=None)


def test_a_price_joins_the_entry_with_its_products_model_charge_type_and_interval():
    product = {"pricing_model": "allowance", "charge_type": "usage", "interval": "month",
               "included_units": Decimal(40)}
    entry = {"currency": "EUR", "unit_price": Decimal("10.00"), "overage_price": Decimal("0.50")}
    price = price_from(Product("p", "DATA", "Data"), product, entry, "price-1")
    assert (price.terms.model, price.terms.unit_price, price.terms.included_units, price.interval.value) == (
        "allowance", Decimal("10.00"), Decimal(40), "month")
    tiered = price_from(LIC, {"pricing_model": "volume", "interval": "month"},
                        {"currency": "EUR", "unit_price": Decimal(0),
                         "tiers": [{"up_to": None, "unit_price": Decimal(3), "flat_fee": Decimal(0)}]}, "price-2")
    assert tiered.terms.unit_price is None  # the entry's UnitPrice means nothing for tiers
    one_time = price_from(Product("p", "ONB", "Onboarding"), {"pricing_model": "flat", "charge_type": "one_time",
                                                              "interval": None},
                          {"currency": "USD", "unit_price": Decimal(1500)}, "price-3")
    assert one_time.interval is None
    with pytest.raises(ApplyError, match="needs an interval"):
        price_from(SEATS, {"pricing_model": "per_unit", "interval": None}, {"currency": "EUR",
                                                                            "unit_price": Decimal(1)}, "p")
    with pytest.raises(InvalidInputError, match="package_size"):
        price_from(SEATS, {"pricing_model": "package", "interval": "month"}, {"currency": "EUR",
                                                                             "unit_price": Decimal(5)}, "p")


def test_countries_become_iso_codes_and_an_unknown_name_is_a_clear_error():
    assert [country_code(v) for v in ("France", "united states", "de", None, "")] == ["FR", "US", "DE", "", ""]
    with pytest.raises(ApplyError, match="'Narnia' is neither an ISO 3166 code"):
        country_code("Narnia")
    customer = customer_from({"name": "Acme", "currency": "EUR", "timezone": "Europe/Paris",
                              "billing_address": {"street": "1 Main St\nBuilding B", "city": "Paris",
                                                  "state": None, "postal_code": "75002", "country": "France"},
                              "payment_terms_days": None, "tax_rate": Decimal(20)}, "cus-1")
    address = customer.billing_address
    assert (address.line1, address.line2, address.country, customer.payment_terms_days) == (
        "1 Main St", "Building B", "FR", 30)


def test_the_command_hash_sees_every_value_and_ignores_key_order():
    one = {"command": "upsert_price", "key": "01u", "data": {"unit_price": Decimal("10.00"), "active": True}}
    reordered = {"data": {"active": True, "unit_price": Decimal("10.00")}, "key": "01u", "command": "upsert_price"}
    changed = {"command": "upsert_price", "key": "01u", "data": {"unit_price": Decimal("10.01"), "active": True}}
    assert command_hash(one) == command_hash(reordered) != command_hash(changed)
