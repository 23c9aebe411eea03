"""Request bodies as JSON with money kept exact.

The standard ``json`` module cannot encode ``Decimal`` (and ``requests``' ``json=``
uses it), and going through ``float`` would corrupt money. ``encode_payload``
writes a ``Decimal`` as its own digits (``Decimal("1234.50")`` → ``1234.50``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


def encode_payload(value: Any) -> str:
    """Serialise a request body; Decimal as exact number literals, dates ISO, aware datetimes in UTC."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode_payload(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode_payload(v) for v in value) + "]"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} to Salesforce: not a finite number")
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"cannot send naive datetime {value.isoformat()}: make it timezone-aware")
        return json.dumps(value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, float) and value != value:  # NaN
        raise ValueError("cannot send NaN to Salesforce")
    return json.dumps(value, allow_nan=False)
