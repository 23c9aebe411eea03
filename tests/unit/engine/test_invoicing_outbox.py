"""The outbox payload contract: exact decimals as strings, never floats."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from billing_engine.outbox import CUSTOMER_SUMMARY_CHANGED, INVOICE_FINALIZED, OutboxEvent, encode_payload


def test_payload_keeps_decimals_exact_as_strings():
    text = encode_payload({"total": D("1234.50"), "tiny": D("1E-6"), "on": date(2026, 1, 1),
                           "at": datetime(2026, 1, 1, 12, tzinfo=UTC)})
    assert text == ('{"at":"2026-01-01T12:00:00+00:00","on":"2026-01-01","tiny":"0.000001",'
                    '"total":"1234.50"}')


def test_floats_and_naive_datetimes_are_refused():
    with pytest.raises(TypeError, match="float"):
        encode_payload({"lines": [{"amount": 0.1}]})
    with pytest.raises(TypeError, match="aware"):
        encode_payload({"at": datetime(2026, 1, 1)})  # noqa: DTZ001


def _reference_encoding(payload):
    """The contract spelled out with the json module's ``default`` hook (the one-pass encoder must match)."""
    import json

    def default(value):
        if isinstance(value, D):
            return format(value, "f")
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    return json.dumps(payload, default=default, sort_keys=True, separators=(",", ":"))


def test_the_one_pass_encoder_matches_the_reference_encoding():
    from enum import IntEnum, StrEnum

    class Kind(StrEnum):
        A = "a"

    class Level(IntEnum):
        HIGH = 3

    payload = {"invoice_id": 42, "number": "INV-2026-000001", "none": None, "flag": True, "kind": Kind.A,
               "level": Level.HIGH, "total": D("-1234.50"), "big": D("1E+3"), "zero": D("0.00"),
               "on": date(2026, 2, 28), "at": datetime(2026, 1, 1, 12, 30, tzinfo=UTC), "text": "é \" \n",
               "lines": [{"key": "s:i:2026-01-01:recurring", "net": D("0.65"), "starts_on": date(2026, 1, 1)},
                         ({"nested": (D("1.5"), [date(2026, 3, 1)])},)],
               "tax_breakdown": [], "empty": {}}
    assert encode_payload(payload) == _reference_encoding(payload)
    with pytest.raises(TypeError, match="float"):
        encode_payload({"lines": [({"amount": D(1), "rate": 0.2},)]})
    with pytest.raises(TypeError, match="set"):
        encode_payload({"ids": {1, 2}})


def test_only_snapshot_topics_coalesce():
    assert OutboxEvent(CUSTOMER_SUMMARY_CHANGED, "customer", "c1", {}).coalesce_key == \
        "customer.summary_changed:customer:c1"
    assert OutboxEvent(INVOICE_FINALIZED, "invoice", "1", {}).coalesce_key is None
    with pytest.raises(ValueError):
        OutboxEvent("invoice.exploded", "invoice", "1", {})
