"""SOQL is built with every value escaped; money goes in as exact digits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connector.salesforce.soql import build_soql

HOSTILE = "O'Brien\\' OR Name != '"


def test_a_hostile_account_name_stays_one_string_literal():
    soql = build_soql("SELECT Id, Name FROM Account WHERE Name = {}", HOSTILE)
    # Every quote and backslash of the value is escaped: the literal ends only at the final quote.
    assert soql == "SELECT Id, Name FROM Account WHERE Name = 'O\\'Brien\\\\\\' OR Name != \\''"
    literal = soql.split("Name = ", 1)[1]
    unescaped_quotes = [i for i, ch in enumerate(literal) if ch == "'" and
                        (len(literal[:i]) - len(literal[:i].rstrip("\\"))) % 2 == 0]
    assert unescaped_quotes == [0, len(literal) - 1]


def test_like_fragments_escape_wildcards_too():
    assert build_soql("SELECT Id FROM Account WHERE Name LIKE '{:like}%'", "50%_off's") == (
        "SELECT Id FROM Account WHERE Name LIKE '50\\%\\_off\\'s%'")


def test_decimal_money_goes_in_as_exact_digits():
    assert build_soql("SELECT Id FROM Opportunity WHERE Amount >= {}", Decimal("1234.50")) == (
        "SELECT Id FROM Opportunity WHERE Amount >= 1234.50")
    assert build_soql("WHERE Amount = {}", Decimal("1E+3")) == "WHERE Amount = 1000"
    assert build_soql("WHERE Amount IN {}", [Decimal("0.10"), Decimal("-2")]) == "WHERE Amount IN (0.10,-2)"


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_decimals_are_refused(value):
    with pytest.raises(ValueError, match="not a finite number"):
        build_soql("WHERE Amount = {}", value)


def test_floats_are_refused_so_money_never_goes_through_float():
    with pytest.raises(ValueError, match="pass Decimal"):
        build_soql("WHERE Amount = {}", 0.1)


def test_datetimes_must_be_aware_and_are_written_in_utc():
    paris = timezone(timedelta(hours=1))
    assert build_soql("WHERE SystemModstamp >= {}", datetime(2026, 11, 24, 13, 30, 15, 999, tzinfo=paris)) == (
        "WHERE SystemModstamp >= 2026-11-24T12:30:15Z")
    with pytest.raises(ValueError, match="naive datetime"):
        build_soql("WHERE SystemModstamp >= {}", datetime(2026, 11, 24))  # noqa: DTZ001
    assert build_soql("WHERE CloseDate = {}", date(2026, 11, 24)) == "WHERE CloseDate = 2026-11-24"


def test_other_values_keep_simple_salesforce_quoting():
    assert build_soql("{} {} {} {} {}", True, None, 7, ["a", "b'c"], "x\ny") == (
        "true null 7 ('a','b\\'c') 'x\\ny'")
    with pytest.raises(ValueError, match="empty list"):
        build_soql("WHERE Id IN {}", [])
    assert build_soql("WHERE CreatedDate > {}", datetime(2026, 1, 1, tzinfo=UTC)) == (
        "WHERE CreatedDate > 2026-01-01T00:00:00Z")
