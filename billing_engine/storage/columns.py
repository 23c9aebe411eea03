"""Column types that keep money and quantities exact on every backend.

SQLite has no decimal type: a ``NUMERIC`` column there stores a binary float, so
``0.1`` would come back as ``0.1000000000000000055511151231257827``. billsync
stores decimals as canonical text on SQLite and as unconstrained ``NUMERIC`` on
PostgreSQL (exact, and it keeps the scale it was given). The ``*_field`` helpers declare
model fields of these types.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Column, DateTime, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field


class ExactDecimal(TypeDecorator):
    """A ``Decimal`` column that round-trips to the last digit. Floats are refused."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC())
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, float) or isinstance(value, bool):
            raise TypeError(f"refusing to store {type(value).__name__} {value!r} in a decimal column; use Decimal")
        if isinstance(value, int):
            value = Decimal(value)
        if isinstance(value, str):
            try:
                value = Decimal(value)
            except InvalidOperation as exc:
                raise TypeError(f"not a decimal: {value!r}") from exc
        if not isinstance(value, Decimal):
            raise TypeError(f"refusing to store {type(value).__name__} in a decimal column; use Decimal")
        if not value.is_finite():
            raise TypeError(f"refusing to store non-finite decimal {value!r}")
        if dialect.name == "postgresql":
            return value
        # Plain notation (no exponent) keeps the text readable in the SQLite shell.
        return format(value, "f")

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        if isinstance(value, float):  # pragma: no cover - would mean a schema drift
            raise TypeError("decimal column came back as float: the column type is wrong")
        return Decimal(str(value))


def to_decimal_value(value):
    """A decimal column's raw driver value (``Decimal`` on PostgreSQL, text on SQLite, or None)
    as ``Decimal`` (or None): for reads that skip the column types for speed."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):  # pragma: no cover - would mean a schema drift
        raise TypeError("decimal column came back as float: the column type is wrong")
    return Decimal(str(value))


def decimal_field(nullable: bool = False, **kw: Any) -> Any:
    """A model field of ``ExactDecimal`` (0 by default; None when ``nullable``)."""
    return Field(default=None if nullable else Decimal(0), sa_type=ExactDecimal, nullable=nullable, **kw)


def money_field(**kw: Any) -> Any:
    """A required ``ExactDecimal`` money or quantity field, 0 by default."""
    return Field(default=Decimal(0), sa_type=ExactDecimal, nullable=False, **kw)


def timestamp_field(nullable: bool = False) -> Any:
    """A timezone-aware ``DateTime`` field (``*_at``)."""
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))
