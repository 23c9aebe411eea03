"""Billing periods: intervals, anchors with month-end clamping, half-open date ranges.

Rules (docs/billing-rules.md §2 Periods, anchors and dates; the last bullet: §3 Proration):
- periods are half-open ``[starts_on, ends_before)`` and counted in whole days in
  the customer's timezone;
- monthly, quarterly and yearly periods start on the anchor day; when the month is
  shorter the period starts on its last day, and the next one goes back to the
  anchor day (anchor Jan 31 → Jan 31, Feb 28, Mar 31, Apr 30);
- a partial period is prorated over the days of the *full* period that contains
  it, as the anchor rule draws it.

Pure functions of plain values: no clock, no I/O.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing_engine.errors import InvalidInputError


class Interval(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def months(self) -> int:
        """Calendar months per period (0 for weeks)."""
        return _MONTHS[self]

    @classmethod
    def parse(cls, value: Any, field: str = "interval") -> Interval:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(
                field, f"unknown interval {value!r}; use one of {', '.join(i.value for i in cls)}"
            ) from None


_MONTHS = {Interval.WEEK: 0, Interval.MONTH: 1, Interval.QUARTER: 3, Interval.YEAR: 12}


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A half-open range of calendar days ``[starts_on, ends_before)``."""

    starts_on: date
    ends_before: date

    def __post_init__(self) -> None:
        if self.ends_before < self.starts_on:
            raise InvalidInputError("ends_before", f"{self.ends_before} is before starts_on {self.starts_on}")

    @property
    def days(self) -> int:
        return (self.ends_before - self.starts_on).days

    def is_empty(self) -> bool:
        return self.ends_before <= self.starts_on

    def contains(self, day: date) -> bool:
        return self.starts_on <= day < self.ends_before

    def clip(self, starts_on: date | None, ends_before: date | None) -> Period | None:
        """The part of this period inside ``[starts_on, ends_before)``; ``None`` when empty."""
        start = self.starts_on if starts_on is None or starts_on < self.starts_on else starts_on
        end = self.ends_before if ends_before is None or ends_before > self.ends_before else ends_before
        if end <= start:
            return None
        return Period(start, end)

    def label(self) -> str:
        """``Nov 1 – Dec 1 2026`` (the end is exclusive, as everywhere)."""
        return format_range(self.starts_on, self.ends_before)


_MONTH_NAMES = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_range(starts_on: date, ends_before: date) -> str:
    """``Nov 1 – Dec 1 2026``; the start's year is shown only when it differs."""
    if starts_on.year != ends_before.year:
        return (f"{_MONTH_NAMES[starts_on.month]} {starts_on.day} {starts_on.year} – "
                f"{_MONTH_NAMES[ends_before.month]} {ends_before.day} {ends_before.year}")
    return f"{_MONTH_NAMES[starts_on.month]} {starts_on.day} – {_MONTH_NAMES[ends_before.month]} " \
           f"{ends_before.day} {ends_before.year}"


def last_day_of_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def add_months(anchor: date, months: int) -> date:
    """The anchor's day ``months`` later, clamped to the month's last day (Jan 31 + 1 → Feb 28/29)."""
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month0 = divmod(total, 12)
    month = month0 + 1
    day = anchor.day
    if day > 28:
        day = min(day, last_day_of_month(year, month))
    return date(year, month, day)


def period_start(anchor: date, interval: Interval, index: int) -> date:
    """Start of the ``index``-th period counted from the anchor (negative = before it).

    Always computed from the anchor itself, never from the previous period, so a
    clamped February start goes back to the anchor day in March.
    """
    return _period_start(anchor, _MONTHS[interval], index)


@lru_cache(maxsize=131072)
def _period_start(anchor: date, months: int, index: int) -> date:
    if not months:
        return anchor + timedelta(days=7 * index)
    return add_months(anchor, months * index)


def period_index(anchor: date, interval: Interval, day: date) -> int:
    """Index of the anchored period that contains ``day``."""
    return _period_index(anchor, _MONTHS[interval], day)


@lru_cache(maxsize=131072)
def _period_index(anchor: date, months: int, day: date) -> int:
    if not months:
        return (day - anchor).days // 7
    index = ((day.year - anchor.year) * 12 + day.month - anchor.month) // months
    while _period_start(anchor, months, index) > day:
        index -= 1
    while _period_start(anchor, months, index + 1) <= day:
        index += 1
    return index


def period_containing(anchor: date, interval: Interval, day: date) -> Period:
    """The full anchored period containing ``day`` (the proration denominator)."""
    index = period_index(anchor, interval, day)
    return Period(period_start(anchor, interval, index), period_start(anchor, interval, index + 1))


def periods_between(anchor: date, interval: Interval, starts_on: date, ends_before: date) -> list[Period]:
    """The full anchored periods overlapping ``[starts_on, ends_before)``, in order."""
    if ends_before <= starts_on:
        return []
    index = period_index(anchor, interval, starts_on)
    result = []
    start = period_start(anchor, interval, index)
    while start < ends_before:
        end = period_start(anchor, interval, index + 1)
        result.append(Period(start, end))
        index += 1
        start = end
    return result


def check_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInputError(field, f"unknown timezone {name!r}; use an IANA name such as Europe/Paris") from None


def local_date(at: datetime, timezone: str) -> date:
    """The calendar date of an aware datetime in the customer's timezone."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError("at", f"{at.isoformat()} has no timezone; datetimes must be timezone-aware")
    return at.astimezone(check_timezone(timezone)).date()
