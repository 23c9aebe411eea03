"""Request bodies as JSON with money kept exact.

The standard ``json`` module cannot encode ``Decimal`` (and ``requests``' ``json=``
uses it), and going through ``float`` would corrupt money. ``encode_payload``
writes a ``Decimal`` as its own digits (``Decimal("1234.50")`` → ``1234.50``) and
refuses floats outright: a float in a Salesforce payload is a bug upstream.

It runs on every record billsync pushes, so it leaves the work to the C encoder: each
Decimal is first replaced by a marker string, the structure is dumped once, and each
quoted marker is then swapped for the number's digits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_MARK = "\x00decimal:"
_MARKED = re.compile(r'"\\u0000decimal:(-?[0-9]+(?:\.[0-9]+)?)"')
_DUMPS = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _prepare(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("cannot send a NUL character to Salesforce")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} to Salesforce: not a finite number")
        return _MARK + format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prepare(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"cannot send naive datetime {value.isoformat()}: make it timezone-aware")
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        raise ValueError(f"refusing to send float {value!r} to Salesforce: use Decimal for numbers")
    raise TypeError(f"cannot send {type(value).__name__} to Salesforce")


def encode_payload(value: Any) -> str:
    """Serialise a request body; Decimal as exact number literals, dates ISO, aware datetimes in UTC."""
    return _MARKED.sub(r"\1", _DUMPS(_prepare(value)))
