"""JSON on the wire with exact decimals: parsed to Decimal, written as number text."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

# A Decimal is written as a marked string first (the C encoder stays fast), then the
# marks are replaced by the bare digits. The mark is two private-use characters; a
# document whose own strings contain the mark takes the slower exact path instead.
_MARK = "\ue000\ue001"
_MARKED = re.compile(r'"\\ue000\\ue001(-?[0-9][0-9.]*)"')


class _MarkCollision(Exception):
    pass


class JsonBodyError(ValueError):
    """The request body is not valid JSON."""


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise JsonBodyError(str(exc)) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid number {name}")


def _prepare(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite decimal")
        return _MARK + _decimal_text(value)
    if isinstance(value, float):
        raise TypeError("float values are not allowed on the wire; use Decimal")
    if isinstance(value, str) and _MARK in value:
        raise _MarkCollision
    return value


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    if "E" in text or "e" in text:
        text = format(value, "f")
    return text


def dumps(value: Any) -> str:
    """Compact JSON; Decimals appear as their exact digits, never through float."""
    try:
        prepared = _prepare(value)
    except _MarkCollision:
        return _slow_dumps(value)
    return _MARKED.sub(r"\1", json.dumps(prepared, separators=(",", ":")))


def _slow_dumps(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + _slow_dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_slow_dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite decimal")
        return _decimal_text(value)
    if isinstance(value, float):
        raise TypeError("float values are not allowed on the wire; use Decimal")
    return json.dumps(value)
