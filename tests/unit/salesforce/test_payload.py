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
