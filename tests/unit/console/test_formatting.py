"""Money, numbers and amounts typed in forms, in English and French (docs/console.md *Languages*)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask
from flask_babel import Babel, force_locale

from billing_engine.money import Money
from connector.console.formatting import money, number, parse_amount


@pytest.fixture(autouse=True)
def app_context():
    app = Flask(__name__)
    Babel(app)
    with app.test_request_context():
        yield


@pytest.mark.parametrize(("locale", "shown"), [("en", "€1,950.00"), ("fr", "1\u202f950,00\xa0€")])
def test_money_in_each_language(locale, shown):
    with force_locale(locale):
        assert money(Money(Decimal("1950.00"), "EUR")) == shown


def test_a_unit_price_keeps_its_digits_and_yen_have_none():
    with force_locale("en"):
        assert money(Money(Decimal("0.123456"), "EUR")) == "€0.123456"
        assert money(Money(Decimal("1100"), "JPY")) == "¥1,100"
        assert number(Decimal("1950")) == "1,950"


def test_a_float_is_never_formatted():
    with pytest.raises(TypeError):
        number(0.1)


@pytest.mark.parametrize(("locale", "typed", "amount"), [
    ("en", "1,950.50", Decimal("1950.50")), ("en", "1950.50", Decimal("1950.50")),
    ("fr", "1 950,50", Decimal("1950.50")), ("fr", "1950.50", Decimal("1950.50")), ("fr", "100,5", Decimal("100.5")),
])
def test_amounts_typed_in_either_language(locale, typed, amount):
    with force_locale(locale):
        assert parse_amount(typed) == amount


@pytest.mark.parametrize("typed", ["", "abc", "1,2,3.4.5", "NaN", "Infinity"])
def test_what_is_not_an_amount(typed):
    with force_locale("en"), pytest.raises(ValueError):
        parse_amount(typed)
