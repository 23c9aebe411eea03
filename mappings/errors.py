"""The mappings package's errors and the problems ``mappings check`` reports.

- ``Problem``: one thing wrong in a mapping file, located by file and line
  (``str()`` is ``file:line: field: reason``, the format ``billsync mappings check`` prints).
- ``SpecError``: a mapping set with problems was asked to map a record; fix the files.
- ``MappingError``: one bad value in one record (names the field and the value).
- ``InvalidRecordError``: a record could not be mapped; carries every ``MappingError``.
  The record is wrong, not the files: report it and skip the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Missing:
    """Marks a value that is absent (not even null) from a record or a spec."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class MappingsError(Exception):
    """Base of every error this package raises on purpose."""


class SpecError(MappingsError):
    """The mapping files have problems; nothing can be mapped with them until they are fixed."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "mapping files have problems")


def describe_value(value: Any, limit: int = 80) -> str:
    """How a bad value is quoted in a message: text in quotes, numbers and dates as written."""
    if value is None:
        return "empty"
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, list | dict | tuple):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class MappingError(MappingsError, ValueError):
    """One bad value: ``Quantity: 'abc' is not a decimal number``.

    ``record`` names the record when it is not the one being mapped (a line item), e.g.
    ``QuoteLineItem 0QL...``; it then prefixes the message.
    """

    def __init__(self, field: str, value: Any, reason: str, record: str | None = None):
        self.field = field
        self.value = value
        self.reason = reason
        self.record = record
        where = f"{record}: " if record else ""
        if value is MISSING:
            message = f"{where}{field}: {reason}"
        else:
            message = f"{where}{field}: {describe_value(value)} {reason}"
        super().__init__(message)


class InvalidRecordError(MappingsError, ValueError):
    """A record could not be mapped. ``errors`` lists every bad value, one per line in ``str()``."""

    def __init__(self, errors: list[MappingError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class UnknownSpecError(MappingsError, LookupError):
    def __init__(self, kind: str, name: str):
        self.kind = kind
        self.name = name
        super().__init__(f"no {kind} mapping named {name!r}")
