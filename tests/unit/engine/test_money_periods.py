"""Money rounding and period arithmetic, against docs/billing-rules.md §1 Money and rounding and
§2 Periods, anchors and dates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from billing_engine.errors import CurrencyMismatchError, InvalidInputError
from billing_engine.money import Money, check_currency, minor_units, round_money, to_decimal
from billing_engine.periods import (
    Interval,
    Period,
    add_months,
    local_date,
    period_containing,
    periods_between,
)


def test_minor_units_follow_iso_4217_for_the_currencies_named_in_the_rules():
    """docs/billing-rules.md §1 Money and rounding: EUR/USD/GBP 2, JPY/KRW/CLP 0, KWD/BHD/JOD/OMR/TND 3."""
    assert [minor_units(c) for c in ("EUR", "USD", "GBP")] == [2, 2, 2]
    assert [minor_units(c) for c in ("JPY", "KRW", "CLP")] == [0, 0, 0]
    assert [minor_units(c) for c in ("KWD", "BHD", "JOD", "OMR", "TND")] == [3, 3, 3, 3, 3]


def test_line_rounding_is_half_up_at_the_currency_minor_unit():
    """docs/billing-rules.md §1 Money and rounding: 10.00 for a 2-day stub of 31 days = 0.645… → 0.65;
    5.12345 × 10 = 51.2345 → 51.23."""
    assert round_money(D("10.00") * 2 / 31, "EUR") == D("0.65")
    assert round_money(D("5.12345") * 10, "EUR") == D("51.23")
    assert round_money(D("0.125"), "USD") == D("0.13")  # HALF_EVEN would give 0.12
    assert round_money(D("2.5"), "JPY") == D("3")
    assert round_money(D("1.2345"), "KWD") == D("1.235")


def test_mixing_currencies_is_refused_naming_both():
    """docs/billing-rules.md §1 Money and rounding: an amount has one currency; mixing them is an error,
    not a conversion."""
    with pytest.raises(CurrencyMismatchError) as err:
        Money(D("1"), "EUR") + Money(D("1"), "USD")
    assert "USD" in str(err.value) and "EUR" in str(err.value)


@pytest.mark.parametrize("bad", ["eur", "XXX", "EURO", ""])
def test_an_unknown_currency_names_the_field(bad):
    """docs/billing-rules.md §1 Money and rounding: ISO 4217 codes only."""
    with pytest.raises(InvalidInputError) as err:
        check_currency(bad)
    assert err.value.field == "currency" and "unknown currency" in err.value.reason


def test_floats_never_become_money():
    """docs/billing-rules.md §1 Money and rounding: binary floats never touch money."""
    with pytest.raises(InvalidInputError, match="float"):
        to_decimal(0.1, "unit_price")


def test_anchor_31_clamps_to_month_end_and_goes_back_to_31():
    """docs/billing-rules.md §2 Periods, anchors and dates: anchor Jan 31 → Jan 31, Feb 28 (Feb 29 in a
    leap year), Mar 31, Apr 30."""
    anchor = date(2026, 1, 31)
    starts = [p.starts_on for p in periods_between(anchor, Interval.MONTH, anchor, date(2026, 5, 1))]
    assert starts == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    leap = [p.starts_on for p in periods_between(date(2028, 1, 31), Interval.MONTH, date(2028, 1, 31),
                                                 date(2028, 4, 1))]
    assert leap == [date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31)]


def test_february_is_a_full_period_under_anchor_31():
    """docs/billing-rules.md §2 Periods, anchors and dates: February is billed in full, not prorated:
    [Feb 28, Mar 31) is one whole period."""
    period = period_containing(date(2026, 1, 31), Interval.MONTH, date(2026, 3, 15))
    assert period == Period(date(2026, 2, 28), date(2026, 3, 31))


def test_yearly_anchor_feb_29_falls_on_feb_28_and_returns_in_leap_years():
    """docs/billing-rules.md §2 Periods, anchors and dates: a yearly anchor of Feb 29 falls on Feb 28 in
    ordinary years, Feb 29 in leap years."""
    anchor = date(2028, 2, 29)
    assert [add_months(anchor, 12 * k) for k in range(0, 5)] == [
        date(2028, 2, 29), date(2029, 2, 28), date(2030, 2, 28), date(2031, 2, 28), date(2032, 2, 29)]


def test_quarterly_periods_clamp_the_same_way():
    """docs/billing-rules.md §2 Periods, anchors and dates: quarterly periods clamp like monthly ones
    (Nov 30 → Feb 28 → May 30)."""
    starts = [p.starts_on for p in periods_between(date(2026, 11, 30), Interval.QUARTER, date(2026, 11, 30),
                                                   date(2027, 9, 1))]
    assert starts == [date(2026, 11, 30), date(2027, 2, 28), date(2027, 5, 30), date(2027, 8, 30)]


def test_weekly_periods_are_seven_days():
    """docs/billing-rules.md §2 Periods, anchors and dates: week intervals."""
    period = period_containing(date(2026, 11, 2), Interval.WEEK, date(2026, 11, 24))
    assert period == Period(date(2026, 11, 23), date(2026, 11, 30)) and period.days == 7


def test_stub_denominators_follow_billsyncs_own_anchor_rule():
    """docs/billing-rules.md §3 Proration: Feb 14–Mar 1 anchored on the 1st divides by 28; Feb 14–Feb 28
    under anchor 31 lies in [Jan 31, Feb 28) and divides by 28 too (not Kill Bill's 31)."""
    assert period_containing(date(2026, 1, 1), Interval.MONTH, date(2026, 2, 14)).days == 28
    assert period_containing(date(2026, 1, 31), Interval.MONTH, date(2026, 2, 14)) == \
        Period(date(2026, 1, 31), date(2026, 2, 28))
    assert period_containing(date(2026, 1, 31), Interval.MONTH, date(2026, 2, 14)).days == 28


def test_a_salesforce_datetime_takes_its_date_in_the_customers_timezone():
    """docs/billing-rules.md §2 Periods, anchors and dates: a datetime is converted to the customer's
    timezone before its date is taken."""
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert local_date(at, "UTC") == date(2026, 11, 30)
    assert local_date(at, "Europe/Paris") == date(2026, 12, 1)
    assert local_date(at, "America/Los_Angeles") == date(2026, 11, 30)
    with pytest.raises(InvalidInputError, match="timezone"):
        local_date(datetime(2026, 11, 30), "UTC")  # noqa: DTZ001 - the naive datetime is the point
    with pytest.raises(InvalidInputError) as err:
        local_date(at, "Mars/Olympus")
    assert err.value.field == "timezone"
