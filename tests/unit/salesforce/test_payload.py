"""Request bodies keep money exact."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from connector.salesforce.payload import encode_payload


def test_decimals_are_written_as_their_digits():
    text = encode_payload({"a": Decimal("0.10"), "b": [Decimal("123456789012345.67"), Decimal("1E+2")],
                           "c": "x\"y", "d": None, "e": True, "f": 3})
    assert text == '{"a":0.10,"b":[123456789012345.67,100],"c":"x\\"y","d":null,"e":true,"f":3}'
    assert json.loads(text, parse_float=Decimal)["b"][0] == Decimal("123456789012345.67")


def test_dates_and_aware_datetimes():
    assert encode_payload({"on": date(2026, 11, 24), "at": datetime(2026, 11, 24, 12, tzinfo=UTC)}) == (
        '{"on":"2026-11-24","at":"2026-11-24T12:00:00.000Z"}')


@pytest.mark.parametrize("value", [Decimal("NaN"), float("nan"), datetime(2026, 1, 1)])  # noqa: DTZ001
def test_values_salesforce_would_misread_are_refused(value):
    with pytest.raises(ValueError):
        encode_payload({"x": value})


def test_a_float_is_refused_even_when_it_looks_harmless():
    with pytest.raises(ValueError, match="use Decimal"):
        encode_payload({"records": [{"Amount__c": 0.5}]})


def test_text_that_looks_like_a_number_stays_text():
    text = encode_payload({"Name": "1234.50", "Description__c": "decimal:12", "Amount__c": Decimal("-0.000001")})
    assert text == '{"Name":"1234.50","Description__c":"decimal:12","Amount__c":-0.000001}'
    assert json.loads(text, parse_float=Decimal)["Amount__c"] == Decimal("-0.000001")
