"""What finance commands print: aligned tables for people, JSON for scripts (``--json``).

Money stays exact in both: a table shows the decimal as the engine holds it, JSON carries
``{"amount": "179.99", "currency": "EUR"}`` (a string, never a number), as the API does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

from billing_engine.money import Money, with_minor_units


def decimal_text(value: Money) -> str:
    """The amount with at least its currency's decimals (0 EUR → 0.00; a unit price of 0.0004 stays)."""
    return format(with_minor_units(value.amount, value.currency), "f")


def plain(value: Any) -> Any:
    """An engine result as JSON-ready values: dataclasses as objects, money as amount + currency,
    decimals as strings, dates in ISO 8601."""
    if isinstance(value, Money):
        return {"amount": decimal_text(value), "currency": value.currency}
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2, ensure_ascii=False))


def amount(value: Money | None) -> str:
    """A money amount without its currency (the table has a currency column)."""
    return "" if value is None else decimal_text(value)


def money(value: Money) -> str:
    """``179.99 EUR``."""
    return f"{decimal_text(value)} {value.currency}"


def text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def echo_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, right: Iterable[str] = (),
               indent: str = "") -> None:
    """Columns padded to their widest cell; the columns named in ``right`` (amounts) right-aligned."""
    rows = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[n]) for r in rows)]) for n, h in enumerate(header)]
    aligned = set(right)

    def line(cells: Sequence[str]) -> str:
        return indent + "  ".join(c.rjust(w) if h in aligned else c.ljust(w)
                                  for c, w, h in zip(cells, widths, header, strict=True)).rstrip()

    click.echo(line(header))
    for row in rows:
        click.echo(line(row))
