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


def test_only_snapshot_topics_coalesce():
    assert OutboxEvent(CUSTOMER_SUMMARY_CHANGED, "customer", "c1", {}).coalesce_key == \
        "customer.summary_changed:customer:c1"
    assert OutboxEvent(INVOICE_FINALIZED, "invoice", "1", {}).coalesce_key is None
    with pytest.raises(ValueError):
        OutboxEvent("invoice.exploded", "invoice", "1", {})
