"""Usage records: validation, customer-timezone dates, aggregation per period."""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from billing_engine.errors import InvalidInputError
from billing_engine.usage import aggregate_usage, check_usage, usage_date

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
