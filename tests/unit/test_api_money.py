"""Money as the API writes it: a decimal string in plain notation, never a negative zero."""

from decimal import Decimal

import pytest

from connector.api.money import Money, amount_text


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("12.50"), "12.50"), (Decimal("-3"), "-3"), (Decimal("0.000001"), "0.000001"),
    (Decimal("-0.00"), "0.00"), (Decimal("0.00") * -1, "0.00"), (Decimal("-0"), "0"), (Decimal("1E+2"), "100"),
])
def test_amounts_are_plain_decimal_strings(value, text):
    assert amount_text(value) == text


def test_a_zero_reached_by_negation_is_a_valid_amount():
    assert Money.of(Decimal("0.00") * -1, "EUR").amount == "0.00"
