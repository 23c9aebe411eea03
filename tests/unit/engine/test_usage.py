"""Usage records and usage events: validation, customer-timezone dates, metrics, aggregation per period."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from billing_engine.catalog import make_price, make_product
from billing_engine.errors import InvalidInputError
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.usage import (
    EventError,
    UsageEvent,
    aggregate_usage,
    check_usage,
    metric_items,
    parse_event,
    usage_date,
)

AT = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def test_a_valid_record():
    rec = check_usage("item-1", "12.5", AT, "meter", "evt-1")
    assert rec.quantity == D("12.5")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", D(1), AT, "s", "k"), "item_id"),
        (("i", D(-1), AT, "s", "k"), "quantity"),
        (("i", 1.5, AT, "s", "k"), "quantity"),
        (("i", D(1), datetime(2026, 3, 1), "s", "k"), "occurred_at"),  # noqa: DTZ001 - naive on purpose
        (("i", D(1), AT, "", "k"), "source"),
        (("i", D(1), AT, "s", " "), "idempotency_key"),
    ],
)
def test_bad_records_name_the_field(args, field):
    with pytest.raises(InvalidInputError) as err:
        check_usage(*args)
    assert err.value.field == field


def test_the_date_is_taken_in_the_customer_timezone():
    # 23:30 UTC on Mar 31 is 01:30 on Apr 1 in Paris (CEST, +02:00)
    assert usage_date(AT) == date(2026, 3, 31)
    assert usage_date(AT, "Europe/Paris") == date(2026, 4, 1)


def test_aggregation_per_item_and_period():
    def month_start(_item, on):
        return on.replace(day=1)

    records = [("i", D(10), date(2026, 3, 1)), ("i", D("2.5"), date(2026, 3, 31)), ("i", D(7), date(2026, 4, 1)),
               ("j", D(1), date(2026, 3, 5))]
    assert aggregate_usage(records, month_start) == {("i", date(2026, 3, 1)): D("12.5"),
                                                     ("i", date(2026, 4, 1)): D(7), ("j", date(2026, 3, 1)): D(1)}


# ------------------------------------------------------------------ usage events (docs/usage.md)

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def good(**fields):
    return {"transaction_id": "t-1", "subscription_id": "sub-1", "metric": "api_calls", "quantity": "12.5",
            "timestamp": "2026-12-05T10:00:00Z", **fields}


def fields_of(errors):
    return {e.field: e.message for e in errors}


def test_a_valid_event_keeps_its_exact_quantity_and_moment():
    event = parse_event(good(quantity="0.000000001"), NOW)
    assert event.quantity == D("0.000000001")
    assert event.occurred_at == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert parse_event(good(quantity=7), NOW).quantity == D(7)


@pytest.mark.parametrize(("quantity", "message"), [
    ("-1", "must not be negative, got -1"),
    (1.5, "1.5 is a float; send an integer or a decimal string"),
    ("1e15", "must be below 1,000,000,000,000,000, got 1E+15"),
    ("0.0000000001", "has more than 9 decimals: 1E-10"),
    ("twelve", "'twelve' is not a number"),
    ("NaN", "'NaN' is not a finite number"),
    (None, "is required"),
])
def test_a_bad_quantity_is_named(quantity, message):
    assert fields_of(parse_event(good(quantity=quantity), NOW)) == {"quantity": message}


@pytest.mark.parametrize(("timestamp", "accepted"), [
    ("2026-12-05T12:05:00Z", True),  # 5 minutes of clock skew
    ("2026-12-05T12:05:01Z", False),
    ("2026-10-31T12:00:00Z", True),  # exactly 35 days
    ("2026-10-31T11:59:59Z", False),
    ("2026-12-05T13:04:00+01:00", True),  # the offset counts: 12:04 UTC
])
def test_the_timestamp_window_is_35_days_back_and_5_minutes_ahead(timestamp, accepted):
    assert isinstance(parse_event(good(timestamp=timestamp), NOW), UsageEvent) is accepted


def test_every_problem_of_an_event_is_named_once():
    errors = parse_event({"subscription_id": "s", "customer_id": "c", "quantity": "-2",
                          "timestamp": "2026-12-05"}, NOW)
    assert fields_of(errors) == {
        "transaction_id": "is required", "customer_id": "give subscription_id or customer_id, not both",
        "metric": "is required", "quantity": "must not be negative, got -2",
        "timestamp": "2026-12-05 has no UTC offset; add one (Z, +02:00, …)"}
    assert fields_of(parse_event(good(subscription_id=None), NOW)) == {
        "subscription_id": "give subscription_id or customer_id"}
    assert fields_of(parse_event(good(transaction_id="x" * 201), NOW)) == {
        "transaction_id": "is longer than 200 characters"}
    assert parse_event(["not", "a", "mapping"], NOW) == [EventError("", "an event must be an object")]


def test_a_metric_is_the_product_code_of_a_usage_item_on_the_day():
    api = make_price("pr-api", make_product("p-api", "api_calls", "API"), currency="EUR", model="per_unit",
                     charge_type="usage", unit_price="0.1")
    seats = make_price("pr-seats", make_product("p-seats", "api_seats", "Seats"), currency="EUR",
                       model="per_unit", unit_price="10")
    sub = make_subscription("sub-1", "cus-1", "EUR", date(2026, 11, 1),
                            [SubscriptionItem("api", api), SubscriptionItem("seats", seats)])
    assert metric_items(sub, "api_calls", date(2026, 11, 20)) == ["api"]
    assert metric_items(sub, "api_seats", date(2026, 11, 20)) == []  # recurring, not usage
    assert metric_items(sub, "api_calls", date(2026, 10, 31)) == []  # before the start
