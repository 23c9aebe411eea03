"""Building SOQL with every value escaped: never paste a value into a query string.

``build_soql`` is ``simple_salesforce.format_soql`` (which quotes and escapes each
``{}`` value: strings, booleans, None, ints, dates, lists) plus what billsync needs:

- ``Decimal`` (money), which format_soql refuses: written as plain digits after
  checking it is finite, never through float.
- datetimes must be timezone-aware (format_soql would read a naive one as local
  time) and are written in UTC as ``YYYY-MM-DDTHH:MM:SSZ``.
- ``float`` is refused: pass ``Decimal`` or ``int``, so money never goes through float.

``{:like}`` escapes a LIKE fragment and ``{:literal}`` inserts a value unchanged
(use it only for trusted names such as field lists from our own mapping files).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from simple_salesforce.format import SoqlFormatter, quote_soql_value


def soql_literal(value: Any) -> str:
    """One value as a SOQL literal, quoted and escaped."""
    if isinstance(value, bool) or value is None:
        return quote_soql_value(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot put {value} in SOQL: not a finite number")
        return format(value, "f")
    if isinstance(value, float):
        raise ValueError(f"cannot put float {value!r} in SOQL: pass Decimal (money) or int")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"cannot put naive datetime {value.isoformat()} in SOQL: make it timezone-aware")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        if not items:
            raise ValueError("cannot put an empty list in SOQL: IN () is a syntax error")
        return "(" + ",".join(soql_literal(v) for v in items) + ")"
    return quote_soql_value(value)


class _Formatter(SoqlFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        if not format_spec:
            return soql_literal(value)
        return super().format_field(value, format_spec)


def build_soql(template: str, *args: Any, **kwargs: Any) -> str:
    """``build_soql("SELECT Id FROM Account WHERE Name = {}", name)`` with every ``{}`` escaped."""
    return _Formatter().vformat(template, args, kwargs)
