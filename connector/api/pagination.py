"""Keyset pagination for every listing of the JSON API, docs/api.md *Pagination*.

A listing takes ``limit`` (default 50, at most 200) and ``cursor``, and answers
``{"data": [...], "next": "<relative URL of the next page>" | null}``. The cursor is opaque
to clients: base64url of the listing's name and the sort key of the last row served, so
the next page is ``WHERE key < last`` (or ``>``) on an index, as fast on page 10,000 as on
page 1, and stable while rows are added. A cursor that does not decode, or belongs to
another listing, is a 400 problem naming the ``cursor`` parameter.

A route fetches ``query.limit + 1`` rows from its use case and hands them to ``page``:

    after = decode_cursor(query.cursor, "audit", (int,))
    rows = audit.list_actions(session, limit=query.limit + 1, before_id=after[0] if after else None)
    return respond(AuditPage(**page(rows, query, "audit", key=lambda e: [e.id], item=entry_out)))
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from connector.api.problems import malformed
from connector.api.values import Absent

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 512
#: Largest integer a cursor may carry (a BIGINT).
MAX_CURSOR_INT = 2**63 - 1

T = TypeVar("T")


class PageQuery(BaseModel):
    """The query parameters of every listing; a listing's own filters subclass it (declare an
    optional filter as ``name: str | Absent = Field(None, ...)``)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Items per page (1 to {MAX_LIMIT}).")
    cursor: str | Absent = Field(None, max_length=MAX_CURSOR_LENGTH, pattern=r"^[A-Za-z0-9_-]+$",
                               description="The cursor of the page to read, from the previous page's `next`.")


class Page(BaseModel, Generic[T]):
    """One page of a listing; subclass it per listing (``class AuditPage(Page[AuditEntryOut])``)."""

    data: list[T]
    next: str | None = Field(description="Relative URL of the next page; null on the last page.")


def encode_cursor(listing: str, values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, date | datetime) else v for v in values]
    raw = json.dumps([listing, plain], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor(reason: str) -> Exception:
    return malformed(f"the cursor is not valid: {reason}; start again without one",
                     [{"parameter": "cursor", "detail": reason}])


def _value(kind: type, value: Any) -> Any:
    if kind is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_CURSOR_INT:
        return value
    if kind is str and isinstance(value, str) and len(value) <= 200:
        return value
    if kind in (date, datetime) and isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value) if kind is datetime else date.fromisoformat(value)
        except ValueError:
            raise _bad_cursor("a value is not a date") from None
        if isinstance(parsed, datetime) and parsed.tzinfo is None:
            raise _bad_cursor("a time has no time zone")
        return parsed
    raise _bad_cursor("a value has the wrong type")


def decode_cursor(cursor: str | None, listing: str, kinds: Sequence[type]) -> list[Any] | None:
    """The sort key a cursor of ``listing`` carries (one value per type in ``kinds``: int, str,
    date, datetime), or ``None`` without a cursor. Anything else: a 400 problem."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _bad_cursor("it does not decode") from None
    if (not isinstance(decoded, list) or len(decoded) != 2 or decoded[0] != listing
            or not isinstance(decoded[1], list) or len(decoded[1]) != len(kinds)):
        raise _bad_cursor("it does not belong to this listing")
    return [_value(kind, value) for kind, value in zip(kinds, decoded[1], strict=True)]


def next_url(query: PageQuery, cursor: str) -> str:
    """The relative URL of the next page: this path, the same filters and limit, the new cursor."""
    params = query.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"cursor"})
    params["cursor"] = cursor
    return f"{request.path}?{urlencode(params, doseq=True)}"


def page(rows: Sequence[Any], query: PageQuery, listing: str, *, key: Callable[[Any], Sequence[Any]],
         item: Callable[[Any], Any]) -> dict[str, Any]:
    """``{"data", "next"}`` from up to ``query.limit + 1`` rows fetched in key order: the extra
    row only says that a next page exists."""
    shown = list(rows[:query.limit])
    following = None
    if len(rows) > query.limit and shown:
        following = next_url(query, encode_cursor(listing, key(shown[-1])))
    return {"data": [item(row) for row in shown], "next": following}
