"""Pricing models and catalog validation, against docs/billing-rules.md §5 Pricing models."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from billing_engine.catalog import make_price, make_product
from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money
from billing_engine.pricing import PRICING_MODELS, compound_percent, rate

PRODUCT = make_product("p-lic", "LIC", "Licences")
STRIPE_TIERS = [{"up_to": "5", "unit_price": "7"}, {"up_to": "10", "unit_price": "6.5"},
                {"up_to": None, "unit_price": "6"}]
ZUPLO_TIERS = [{"starts_at": "0", "up_to": "1000", "unit_price": "0.10"},
               {"starts_at": "1001", "up_to": "10000", "unit_price": "0.05"},
               {"starts_at": "10001", "up_to": None, "unit_price": "0.01"}]
SEED_TIERS = [{"starts_at": "1", "up_to": "5", "unit_price": "200"},
              {"starts_at": "6", "up_to": "10", "unit_price": "150"},
              {"starts_at": "11", "up_to": None, "unit_price": "100"}]


def price(model, **terms):
    terms.setdefault("currency", "EUR")
    return make_price("pr-1", PRODUCT, model=model, **terms)


def amount(model, quantity, **terms):
    return round_money(rate(price(model, **terms).terms, D(quantity)).amount, "EUR")


@pytest.mark.parametrize(("model", "quantity", "expected"), [
    ("volume", 6, "39.00"), ("volume", 20, "120.00"), ("graduated", 6, "41.50"), ("graduated", 20, "127.50")])
def test_stripe_tier_examples(model, quantity, expected):
    """docs/billing-rules.md §5 Pricing models (Stripe tiers 1–5 at 7, 6–10 at 6.5, 11+ at 6)."""
    assert amount(model, quantity, tiers=STRIPE_TIERS) == D(expected)


def test_zuplo_example_graduated_600_volume_150():
    """docs/billing-rules.md §5 Pricing models (Zuplo tiers 0–1,000 / 1,001–10,000 / 10,001+, q = 15,000)."""
    assert amount("graduated", 15000, tiers=ZUPLO_TIERS) == D("600.00")
    assert amount("volume", 15000, tiers=ZUPLO_TIERS) == D("150.00")


def test_seed_licences_graduated_1950_volume_1200_with_explanations():
    """docs/billing-rules.md §5 Pricing models, seed example: 12 licences → graduated 1,950 €,
    volume 1,200 €."""
    graduated = rate(price("graduated", tiers=SEED_TIERS).terms, D(12))
    volume = rate(price("volume", tiers=SEED_TIERS).terms, D(12))
    assert (graduated.amount, volume.amount) == (D(1950), D(1200))
    assert graduated.detail == "12 × graduated: 5 × 200 + 5 × 150 + 2 × 100"
    assert volume.detail == "12 × volume: 12 × 100 (tier 3)"


def test_seed_data_plan_allowance_17_50():
    """docs/billing-rules.md §5 Pricing models, seed example: 10 €/month including 40 GB, 0.50 €/GB over,
    55 GB → 17.50 €."""
    terms = dict(unit_price="10", included_units="40", overage_unit_price="0.50")
    assert amount("allowance", 55, **terms) == D("17.50")
    assert amount("allowance", 40, **terms) == D("10.00")
    assert amount("allowance", 0, **terms) == D("10.00")  # the allowance is not a refund


def test_flat_per_unit_and_package():
    """docs/billing-rules.md §5 Pricing models: flat whatever q; q × unit price (5.12345 × 10 → 51.23);
    package ceil(q/size), 0 → 0."""
    assert amount("flat", 7, unit_price="49") == D("49.00")
    assert amount("per_unit", 10, unit_price="5.12345") == D("51.23")
    assert amount("package", 2500, unit_price="20", package_size="1000") == D("60.00")
    assert amount("package", 1000, unit_price="20", package_size="1000") == D("20.00")
    assert amount("package", 0, unit_price="20", package_size="1000") == D("0.00")


def test_percent_of_rounds_once_from_the_base():
    """docs/billing-rules.md §5 Pricing models, percent_of: 10 % of a prorated 0.65 line → 0.07."""
    terms = price("percent_of", percent="10", covered_product_codes=["LIC"]).terms
    assert round_money(PRICING_MODELS["percent_of"].rate(terms, D("0.65")).amount, "EUR") == D("0.07")


def test_first_tier_flat_fee_is_charged_at_zero_and_fractions_fall_in_their_tier():
    """docs/billing-rules.md §5 Pricing models: a first-tier flat fee is charged even at q = 0 (Lago); 5.5
    falls in tier 2."""
    tiers = [{"up_to": "5", "unit_price": "1", "flat_fee": "10"}, {"up_to": None, "unit_price": "2", "flat_fee": "3"}]
    assert amount("graduated", 0, tiers=tiers) == D("10.00")
    assert amount("volume", 0, tiers=tiers) == D("10.00")
    assert amount("graduated", D("5.5"), tiers=tiers) == D("19.00")  # 5×1 + 10 + 0.5×2 + 3
    assert amount("volume", D("5.5"), tiers=tiers) == D("14.00")  # 5.5×2 + 3


def test_unit_prices_keep_six_decimals():
    """docs/billing-rules.md §1 Money and rounding: unit prices may carry up to 6 decimals (0.0004 per API
    call)."""
    assert amount("per_unit", 123457, unit_price="0.0004") == D("49.38")
    with pytest.raises(InvalidInputError) as err:
        price("per_unit", unit_price="0.0000001")
    assert err.value.field == "unit_price" and "6 decimals" in err.value.reason


def test_two_ten_percent_discounts_make_nineteen():
    """docs/billing-rules.md §7 Discounts: two 10 % discounts in a row make 19 %, not 20 %."""
    assert compound_percent([D(10), D(10)]) == D(19)


@pytest.mark.parametrize(("tiers", "field", "words"), [
    ([{"starts_at": "1", "up_to": "5", "unit_price": "7"}, {"starts_at": "7", "up_to": None, "unit_price": "6"}],
     "tiers[1].starts_at", "gap"),
    ([{"starts_at": "1", "up_to": "5", "unit_price": "7"}, {"starts_at": "4", "up_to": None, "unit_price": "6"}],
     "tiers[1].starts_at", "overlap"),
    ([{"up_to": "10", "unit_price": "7"}, {"up_to": "5", "unit_price": "6"}, {"up_to": None, "unit_price": "5"}],
     "tiers[1].up_to", "overlap"),
    ([{"up_to": None, "unit_price": "7"}, {"up_to": None, "unit_price": "6"}], "tiers[0].up_to", "only the last"),
    ([{"up_to": "5", "unit_price": "7"}, {"up_to": "10", "unit_price": "6"}], "tiers[1].up_to", "open-ended"),
    ([{"up_to": "5", "unit_price": "7"}, {"up_to": None, "unit_price": "-6"}], "tiers[1].unit_price", "negative"),
    ([{"up_to": "5", "unit_price": "7", "flat_fee": "-1"}, {"up_to": None, "unit_price": "6"}],
     "tiers[0].flat_fee", "negative"),
    ([], "tiers", "at least one tier"),
])
def test_malformed_tiers_are_rejected_naming_the_tier_and_the_problem(tiers, field, words):
    """docs/billing-rules.md §5 Pricing models: tier validation refuses gaps, overlaps, a non-final tier
    without up_to, negative prices."""
    for model in ("graduated", "volume"):
        with pytest.raises(InvalidInputError) as err:
            price(model, tiers=tiers)
        assert err.value.field == field and words in err.value.reason


@pytest.mark.parametrize(("model", "terms", "field"), [
    ("tiered", {}, "model"),
    ("per_unit", {}, "unit_price"),
    ("per_unit", {"unit_price": "-1"}, "unit_price"),
    ("package", {"unit_price": "5"}, "package_size"),
    ("package", {"unit_price": "5", "package_size": "0"}, "package_size"),
    ("allowance", {"unit_price": "5", "overage_unit_price": "1"}, "included_units"),
    ("percent_of", {"percent": "10"}, "covered_product_codes"),
    ("flat", {"unit_price": "5", "currency": "EURO"}, "currency"),
    ("flat", {"unit_price": 0.5}, "unit_price"),
    ("flat", {"unit_price": "5", "interval": "fortnight"}, "interval"),
    ("flat", {"unit_price": "5", "charge_type": "sometimes"}, "charge_type"),
])
def test_bad_prices_name_the_field(model, terms, field):
    """docs/billing-rules.md §5 Pricing models: price validation refuses an unknown model, missing or
    negative terms, unknown currency, floats."""
    with pytest.raises(InvalidInputError) as err:
        price(model, **terms)
    assert err.value.field == field, err.value


def test_a_bad_product_code_names_the_field():
    """docs/billing-rules.md §5 Pricing models (the catalog): products have a stable code."""
    with pytest.raises(InvalidInputError) as err:
        make_product("p-1", "has space", "Licences")
    assert err.value.field == "code"
