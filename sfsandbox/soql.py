"""SOQL engine for the local Salesforce sandbox.

``parse`` turns a SOQL string into a :class:`Query` (syntax only). ``execute``
resolves it against a :class:`SchemaView`, compiles the WHERE clause into one
Python closure, runs it over a :class:`RecordSource` and returns records in the
shape Salesforce's REST ``query`` resource uses.

Supported subset (anything else raises ``SoqlError("MALFORMED_QUERY", ...)``):

- ``SELECT`` fields, parent paths (``Account.Owner.Name``), child subqueries
  ``(SELECT ... FROM QuoteLineItems [WHERE] [ORDER BY] [LIMIT] [OFFSET])`` and
  ``COUNT()``; ``FROM`` one object; keywords and names are case-insensitive.
- ``WHERE`` with AND / OR / NOT and parentheses (mixing AND and OR without
  parentheses is an error, as in Salesforce); ``= != < <= > >=``, ``IN``,
  ``NOT IN``, ``LIKE``; semi-/anti-joins ``Id [NOT] IN (SELECT AccountId FROM ...)``.
- literals: strings with SOQL's escapes (``\\n \\r \\t \\b \\f \\" \\' \\\\``, ``\\uXXXX``,
  and ``\\% \\_`` only in LIKE), numbers (Decimal), true/false/null, dates,
  datetimes (``Z``, ``+hh:mm``, ``+hhmm``, optional fraction), and the date literals
  TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n, NEXT_N_DAYS:n, N_DAYS_AGO:n, LAST_90_DAYS, NEXT_90_DAYS,
  THIS_MONTH, LAST_MONTH, NEXT_MONTH, THIS_YEAR, LAST_YEAR, NEXT_YEAR (UTC).
- ``ORDER BY`` (ASC/DESC, NULLS FIRST/LAST, parent paths), ``LIMIT``, ``OFFSET``
  (at most 2000).

This module imports nothing from billsync outside ``sfsandbox``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import methodcaller
from typing import Any, Protocol

from sfsandbox.ids import to18

__all__ = [
    "FieldDef",
    "Query",
    "QueryResult",
    "RecordSource",
    "SchemaView",
    "SoqlError",
    "execute",
    "parse",
]

MAX_OFFSET = 2000


# --------------------------------------------------------------------------- public types


class SoqlError(Exception):
    """A query Salesforce would reject; ``error_code`` and ``message`` go into the error body."""

    def __init__(self, error_code: str, message: str):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    reference_to: str | None = None
    relationship_name: str | None = None


class SchemaView(Protocol):
    def object_name(self, name: str) -> str | None: ...

    def field(self, obj: str, name: str) -> FieldDef | None: ...

    def fields(self, obj: str) -> list[FieldDef]: ...

    def child(self, obj: str, relationship_name: str) -> tuple[str, str] | None: ...


class RecordSource(Protocol):
    def scan(self, obj: str, include_deleted: bool) -> Iterable[dict]: ...

    def get(self, obj: str, record_id: str) -> dict | None: ...

    def children(self, obj: str, fk_field: str, parent_id: str, include_deleted: bool) -> Iterable[dict]: ...


@dataclass
class QueryResult:
    object_name: str
    records: list[dict]
    total_size: int
    is_count: bool


# --------------------------------------------------------------------------- errors


def _error(code: str, text: str, pos: int, message: str) -> SoqlError:
    """A Salesforce-style message: the offending line, a caret, Row/Column, the reason."""
    pos = max(0, min(pos, len(text)))
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    col = pos - line_start + 1
    shown, caret = line, col - 1
    if caret > 80:  # long line: echo a window ending after the error, as Salesforce does
        start = line.rfind(" ", 0, caret - 40) + 1
        shown, caret = line[start:], caret - start
    return SoqlError(code, f"\n{shown}\n{' ' * caret}^\nERROR at Row:{row}:Column:{col}\n{message}")


_NO_COLUMN_TAIL = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)
_NO_OBJECT_TAIL = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity "
    "name. Please reference your WSDL or the describe call for the appropriate names."
)
_RELATIONSHIP_TAIL = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the "
    "custom relationship name. Please reference your WSDL or the describe call for the "
    "appropriate names."
)


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident string number date datetime op punct eof
    text: str
    pos: int
    value: Any = None
    like_regex: str | None = None  # strings: the pattern as a regex, for LIKE
    like_escape_pos: int | None = None  # strings: where a \% or \_ sits (only valid in LIKE)

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "ident" else self.text


_TOKEN_RE = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<datetime>(?P<dy>\d{4})-(?P<dm>\d{2})-(?P<dd>\d{2})T(?P<th>\d{2}):(?P<tm>\d{2}):(?P<ts>\d{2})
        (?P<tf>\.\d{1,9})?(?P<tz>Z|[+-]\d{2}:?\d{2}))
    |(?P<baddatetime>\d{4}-\d{2}-\d{2}T[^\s,()]*)
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>[+-]?(?:\d+(?:\.\d+)?|\.\d+))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><>|!=|<=|>=|=|<|>)
    |(?P<quote>')
    |(?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_SIMPLE_ESCAPES = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}


def _lex_string(text: str, start: int) -> tuple[_Tok, int]:
    """Read a quoted literal starting at the opening quote; returns the token and the end offset."""
    out: list[str] = []
    rx: list[str] = []
    like_escape_pos = None
    i = start + 1
    n = len(text)
    while True:
        if i >= n:
            raise _error("MALFORMED_QUERY", text, start, "unterminated string literal: missing closing quote")
        c = text[i]
        if c == "'":
            break
        if c == "\\":
            e = text[i + 1] if i + 1 < n else ""
            if e in _SIMPLE_ESCAPES:
                ch = _SIMPLE_ESCAPES[e]
                out.append(ch)
                rx.append(re.escape(ch))
                i += 2
                continue
            if e == "u":
                hexs = text[i + 2 : i + 6]
                if len(hexs) == 4 and all(h in "0123456789abcdefABCDEF" for h in hexs):
                    ch = chr(int(hexs, 16))
                    out.append(ch)
                    rx.append(re.escape(ch))
                    i += 6
                    continue
                raise _error(
                    "MALFORMED_QUERY",
                    text,
                    i,
                    f"Invalid unicode escape sequence '\\u{hexs}' in string literal.",
                )
            if e in ("%", "_"):
                if like_escape_pos is None:
                    like_escape_pos = i
                out.append(e)
                rx.append(re.escape(e))
                i += 2
                continue
            raise _error(
                "MALFORMED_QUERY",
                text,
                i,
                f"Invalid string literal '{text[start + 1 : i + 2]}...'. "
                f"Illegal character sequence '\\{e}' in string literal.",
            )
        out.append(c)
        rx.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    tok = _Tok(
        "string",
        text[start : i + 1],
        start,
        "".join(out),
        like_regex="".join(rx),
        like_escape_pos=like_escape_pos,
    )
    return tok, i + 1


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        assert m is not None  # the last alternative matches any character
        s = m.group()
        if m.group("ws") is not None:
            pos = m.end()
            continue
        if m.group("quote") is not None:
            tok, pos = _lex_string(text, pos)
            toks.append(tok)
            continue
        if m.group("datetime") is not None:
            toks.append(_Tok("datetime", s, pos, _datetime_value(m, text, pos)))
        elif m.group("baddatetime") is not None:
            raise _error("MALFORMED_QUERY", text, pos, f"unexpected token: '{s}'")
        elif m.group("date") is not None:
            try:
                d = date.fromisoformat(s)
            except ValueError:
                raise _error("MALFORMED_QUERY", text, pos, f"invalid date: '{s}'") from None
            toks.append(_Tok("date", s, pos, d))
        elif m.group("number") is not None:
            toks.append(_Tok("number", s, pos, Decimal(s)))
        elif m.group("ident") is not None:
            toks.append(_Tok("ident", s, pos))
        elif m.group("op") is not None:
            toks.append(_Tok("op", s, pos))
        else:
            toks.append(_Tok("punct", s, pos))
        pos = m.end()
    toks.append(_Tok("eof", "<EOF>", n))
    return toks


def _datetime_value(m: re.Match[str], text: str, pos: int) -> datetime:
    tz = m.group("tz")
    frac = m.group("tf") or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    try:
        if tz == "Z":
            offset = timedelta(0)
        else:
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            hh, mm = int(digits[:2]), int(digits[2:])
            if hh > 23 or mm > 59:
                raise ValueError(tz)
            offset = sign * timedelta(hours=hh, minutes=mm)
        naive = datetime(  # noqa: DTZ001 - made aware on the next line
            int(m.group("dy")),
            int(m.group("dm")),
            int(m.group("dd")),
            int(m.group("th")),
            int(m.group("tm")),
            int(m.group("ts")),
            micro,
        )
        return (naive.replace(tzinfo=UTC) - offset).astimezone(UTC)
    except ValueError:
        raise _error("MALFORMED_QUERY", text, pos, f"invalid dateTime: '{m.group()}'") from None


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]
    pos: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Value:
    kind: str  # string number boolean null date datetime dateliteral
    value: Any
    pos: int
    like_regex: str | None = None
    like_escape_pos: int | None = None


@dataclass
class Comparison:
    path: Path
    op: str  # = != < <= > >= LIKE
    value: Value


@dataclass
class InList:
    path: Path
    negate: bool
    values: list[Value]


@dataclass
class InSubquery:
    path: Path
    negate: bool
    query: Query


@dataclass
class BoolOp:
    op: str  # AND | OR
    items: list[Any]


@dataclass
class NotOp:
    item: Any


@dataclass(frozen=True)
class OrderItem:
    path: Path
    descending: bool
    nulls_first: bool


@dataclass
class Query:
    """Parsed SOQL. ``fields`` holds :class:`Path` items and child-subquery :class:`Query` items."""

    text: str
    fields: list[Any]
    object_name: str
    object_pos: int
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    offset_pos: int = 0
    is_count: bool = False
    pos: int = 0  # where the SELECT keyword is


# --------------------------------------------------------------------------- parser

# Words that end a select list or a condition; they can never be field names.
_RESERVED = frozenset(
    """SELECT FROM WHERE AND OR NOT IN LIKE ORDER BY ASC DESC NULLS LIMIT OFFSET GROUP HAVING
    WITH FOR UPDATE TYPEOF USING INCLUDES EXCLUDES NULL TRUE FALSE""".split()
)

_CLAUSE_WORDS = frozenset("SELECT FROM WHERE LIMIT OFFSET WITH FOR USING".split())

_DATE_LITERALS = frozenset(
    """TODAY YESTERDAY TOMORROW THIS_MONTH LAST_MONTH NEXT_MONTH THIS_YEAR LAST_YEAR NEXT_YEAR
    LAST_90_DAYS NEXT_90_DAYS""".split()
)
_DATE_LITERALS_N = frozenset(("LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def unexpected(self, tok: _Tok | None = None) -> SoqlError:
        tok = tok or self.tok
        return _error("MALFORMED_QUERY", self.text, tok.pos, f"unexpected token: '{tok.text}'")

    def is_kw(self, word: str, tok: _Tok | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "ident" and tok.text.upper() == word

    def expect_kw(self, word: str) -> _Tok:
        if not self.is_kw(word):
            raise self.unexpected()
        return self.advance()

    def is_punct(self, ch: str, tok: _Tok | None = None) -> bool:
        tok = tok or self.tok
        return tok.kind == "punct" and tok.text == ch

    def expect_punct(self, ch: str) -> _Tok:
        if not self.is_punct(ch):
            raise self.unexpected()
        return self.advance()

    # -- grammar
    def parse(self) -> Query:
        q = self.query(subquery=None)
        if self.tok.kind != "eof":
            raise self.unexpected()
        return q

    def query(self, subquery: str | None) -> Query:
        """``subquery`` is None at top level, "child" inside a select list, "semi" after IN."""
        start = self.expect_kw("SELECT")
        fields: list[Any] = []
        is_count = False
        if self.is_kw("COUNT") and self.is_punct("(", self.peek()):
            count_tok = self.advance()
            self.advance()
            if not self.is_punct(")"):
                raise self.unexpected()  # COUNT(field) is an aggregate: outside the subset
            self.advance()
            if subquery is not None:
                raise self.unexpected(count_tok)
            is_count = True
            if self.is_punct(","):
                raise self.unexpected()
        else:
            while True:
                if self.is_punct("("):
                    if subquery is not None:
                        raise self.unexpected()
                    self.advance()
                    fields.append(self.query(subquery="child"))
                    self.expect_punct(")")
                else:
                    fields.append(self.path())
                if not self.is_punct(","):
                    break
                self.advance()
        self.expect_kw("FROM")
        obj_tok = self.tok
        # Order and Group are objects: after FROM only clause keywords are refused
        if obj_tok.kind != "ident" or obj_tok.up in _CLAUSE_WORDS:
            raise self.unexpected()
        self.advance()
        q = Query(
            text=self.text,
            fields=fields,
            object_name=obj_tok.text,
            object_pos=obj_tok.pos,
            is_count=is_count,
            pos=start.pos,
        )
        if self.is_kw("WHERE"):
            self.advance()
            q.where = self.condition()
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            q.order_by = self.order_list()
        if self.is_kw("LIMIT"):
            self.advance()
            q.limit = self.integer()
        if self.is_kw("OFFSET"):
            off_tok = self.advance()
            q.offset_pos = off_tok.pos
            q.offset = self.integer()
        return q

    def integer(self) -> int:
        t = self.tok
        if t.kind != "number" or not t.text.isdigit():
            raise self.unexpected()
        self.advance()
        return int(t.text)

    def path(self) -> Path:
        t = self.tok
        if t.kind != "ident" or (t.up in _RESERVED and not self.is_punct(".", self.peek())):
            raise self.unexpected()  # a reserved word may still start a path: Order.Status
        if self.is_punct("(", self.peek()):
            # FIELDS(), SUM(), toLabel(), CALENDAR_YEAR() ...: functions are outside the subset
            raise self.unexpected()
        parts = [self.advance().text]
        while self.is_punct("."):
            self.advance()
            nt = self.tok
            if nt.kind != "ident":
                raise self.unexpected()
            parts.append(self.advance().text)
        return Path(tuple(parts), t.pos)

    def order_list(self) -> list[OrderItem]:
        items = []
        while True:
            p = self.path()
            desc = False
            if self.is_kw("ASC"):
                self.advance()
            elif self.is_kw("DESC"):
                self.advance()
                desc = True
            nulls_first = True  # Salesforce default: null values are sorted first
            if self.is_kw("NULLS"):
                self.advance()
                if self.is_kw("FIRST"):
                    self.advance()
                elif self.is_kw("LAST"):
                    self.advance()
                    nulls_first = False
                else:
                    raise self.unexpected()
            items.append(OrderItem(p, desc, nulls_first))
            if not self.is_punct(","):
                return items
            self.advance()

    def condition(self) -> Any:
        first = self.term()
        if not (self.is_kw("AND") or self.is_kw("OR")):
            return first
        op = self.tok.up
        items = [first]
        while self.is_kw(op):
            self.advance()
            items.append(self.term())
        # a following AND/OR of the other kind is left over and reported as an unexpected
        # token: Salesforce requires parentheses whenever AND and OR are mixed
        return BoolOp(op, items)

    def term(self) -> Any:
        if self.is_kw("NOT"):
            self.advance()
            return NotOp(self.term())
        if self.is_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.field_expression()

    def field_expression(self) -> Any:
        p = self.path()
        t = self.tok
        if self.is_kw("NOT"):
            self.advance()
            if not self.is_kw("IN"):
                raise self.unexpected()
            self.advance()
            return self.in_rhs(p, negate=True)
        if self.is_kw("IN"):
            self.advance()
            return self.in_rhs(p, negate=False)
        if self.is_kw("LIKE"):
            self.advance()
            v = self.tok
            if v.kind != "string":
                raise self.unexpected()
            self.advance()
            return Comparison(p, "LIKE", Value("string", v.value, v.pos, like_regex=v.like_regex))
        if t.kind == "op" and t.text != "<>":
            self.advance()
            return Comparison(p, t.text, self.value())
        raise self.unexpected()

    def in_rhs(self, p: Path, negate: bool) -> Any:
        self.expect_punct("(")
        if self.is_kw("SELECT"):
            sub = self.query(subquery="semi")
            self.expect_punct(")")
            return InSubquery(p, negate, sub)
        values = [self.value()]
        while self.is_punct(","):
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        return InList(p, negate, values)

    def value(self) -> Value:
        t = self.tok
        if t.kind == "string":
            self.advance()
            if t.like_escape_pos is not None:
                raise _error(
                    "MALFORMED_QUERY",
                    self.text,
                    t.like_escape_pos,
                    f"Invalid string literal {t.text}. '\\%' and '\\_' are only allowed in LIKE patterns.",
                )
            return Value("string", t.value, t.pos)
        if t.kind == "number":
            self.advance()
            return Value("number", t.value, t.pos)
        if t.kind == "date":
            self.advance()
            return Value("date", t.value, t.pos)
        if t.kind == "datetime":
            self.advance()
            return Value("datetime", t.value, t.pos)
        if t.kind == "ident":
            up = t.up
            if up in ("TRUE", "FALSE"):
                self.advance()
                return Value("boolean", up == "TRUE", t.pos)
            if up == "NULL":
                self.advance()
                return Value("null", None, t.pos)
            if up in _DATE_LITERALS:
                self.advance()
                return Value("dateliteral", (up, 0), t.pos)
            if up in _DATE_LITERALS_N and self.is_punct(":", self.peek()):
                self.advance()
                self.advance()
                n = self.tok
                if n.kind != "number" or not n.text.isdigit():
                    raise self.unexpected()
                self.advance()
                return Value("dateliteral", (up, int(n.text)), t.pos)
        raise self.unexpected()


def parse(soql: str) -> Query:
    """Parse SOQL syntax (no schema checks). Raises ``SoqlError("MALFORMED_QUERY", ...)``."""
    return _Parser(soql).parse()


# --------------------------------------------------------------------------- typing of fields

_STRING_TYPES = frozenset(
    "string textarea picklist multipicklist combobox email phone url encryptedstring".split()
)
_ID_TYPES = frozenset(("id", "reference"))
_NUMBER_TYPES = frozenset(("int", "double", "currency", "percent", "long"))


def _category(ftype: str) -> str:
    t = ftype.lower()
    if t in _ID_TYPES:
        return "id"
    if t in _NUMBER_TYPES:
        return "number"
    if t == "boolean":
        return "boolean"
    if t == "date":
        return "date"
    if t == "datetime":
        return "datetime"
    return "string"


def _type_label(fd: FieldDef) -> str:
    t = fd.type.lower()
    return {
        "datetime": "dateTime",
        "currency": "double",
        "percent": "double",
        "reference": "id",
    }.get(t, t if t in ("id", "int", "double", "boolean", "date", "long") else "string")


_DT_CACHE: dict[str, str] = {}


def _dt_key(v: Any) -> str:
    """A stored datetime as a sortable UTC key 'YYYY-MM-DDTHH:MM:SS.mmm' (cached parse)."""
    if type(v) is str:
        if v[23:] == "+0000":
            return v[:23]  # the canonical stored form 'YYYY-MM-DDTHH:MM:SS.000+0000': no parsing
        key = _DT_CACHE.get(v)
        if key is None:
            s = v[:-1] + "+00:00" if v.endswith("Z") else v
            try:
                d = datetime.fromisoformat(s)
            except ValueError:
                return v
            if d.tzinfo is None:
                d = d.replace(tzinfo=UTC)
            key = _fmt_dt_key(d)
            if len(_DT_CACHE) > 200_000:
                _DT_CACHE.clear()
            _DT_CACHE[v] = key
        return key
    if isinstance(v, datetime):
        return _fmt_dt_key(v if v.tzinfo else v.replace(tzinfo=UTC))
    return str(v)


def _fmt_dt_key(d: datetime) -> str:
    d = d.astimezone(UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}"


def _date_key(v: Any) -> str:
    if type(v) is str:
        return v[:10]
    if isinstance(v, datetime):
        return v.astimezone(UTC).date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _lower(v: Any) -> Any:
    return v.lower() if type(v) is str else v


_NORMALIZERS: dict[str, Callable[[Any], Any] | None] = {
    "string": _lower,
    "id": None,
    "number": None,
    "boolean": None,
    "date": _date_key,
    "datetime": _dt_key,
}


@dataclass(frozen=True)
class _Range:
    """A date literal: the half-open interval [lo, hi) of normalised keys."""

    lo: str
    hi: str


def _add_months(d: date, months: int) -> date:
    m = d.year * 12 + (d.month - 1) + months
    return date(m // 12, m % 12 + 1, 1)


def _date_range(name: str, n: int, today: date) -> tuple[date, date]:
    one = timedelta(days=1)
    if name == "TODAY":
        return today, today + one
    if name == "YESTERDAY":
        return today - one, today
    if name == "TOMORROW":
        return today + one, today + 2 * one
    if name in ("LAST_N_DAYS", "LAST_90_DAYS"):  # includes today: LAST_N_DAYS:1 is yesterday and today
        n = 90 if name == "LAST_90_DAYS" else n
        return today - n * one, today + one
    if name in ("NEXT_N_DAYS", "NEXT_90_DAYS"):  # starts tomorrow
        n = 90 if name == "NEXT_90_DAYS" else n
        return today + one, today + (n + 1) * one
    if name == "N_DAYS_AGO":
        return today - n * one, today - (n - 1) * one
    if name in ("THIS_MONTH", "LAST_MONTH", "NEXT_MONTH"):
        shift = {"THIS_MONTH": 0, "LAST_MONTH": -1, "NEXT_MONTH": 1}[name]
        start = _add_months(today, shift)
        return start, _add_months(start, 1)
    shift = {"THIS_YEAR": 0, "LAST_YEAR": -1, "NEXT_YEAR": 1}[name]
    start = date(today.year + shift, 1, 1)
    return start, date(start.year + 1, 1, 1)


# --------------------------------------------------------------------------- compilation


Getter = Callable[[dict], Any]
Pred = Callable[[dict], bool]


@dataclass
class _Resolved:
    hops: list[tuple[str, str, str]]  # (fk field, target object, relationship name)
    field: FieldDef
    owner: str  # object that holds the final field


@dataclass
class _Compiled:
    obj: str
    pred: Pred | None
    order: list[tuple[Getter, Callable[[Any], Any] | None, bool, bool]]
    limit: int | None
    offset: int
    plan: list[tuple]
    is_count: bool
    fk: str | None = None  # child subqueries: the field on obj pointing at the parent
    key: str | None = None  # child subqueries: the key in the parent record


class _Ctx:
    def __init__(
        self,
        text: str,
        schema: SchemaView,
        source: RecordSource,
        include_deleted: bool,
        api_version: str,
        today: date,
    ):
        self.text = text
        self.schema = schema
        self.source = source
        self.include_deleted = include_deleted
        self.api_version = api_version
        self.today = today
        self._rels: dict[str, dict[str, FieldDef]] = {}
        self._parents: dict[tuple[str, str], dict | None] = {}

    def err(self, code: str, pos: int, message: str) -> SoqlError:
        return _error(code, self.text, pos, message)

    def relationships(self, obj: str) -> dict[str, FieldDef]:
        rels = self._rels.get(obj)
        if rels is None:
            rels = {
                f.relationship_name.lower(): f
                for f in self.schema.fields(obj)
                if f.relationship_name and f.reference_to
            }
            self._rels[obj] = rels
        return rels

    def parent(self, obj: str, record_id: str) -> dict | None:
        key = (obj, record_id)
        try:
            return self._parents[key]
        except KeyError:
            pass
        rec = self.source.get(obj, record_id)
        if rec is not None and rec.get("IsDeleted") and not self.include_deleted:
            rec = None
        self._parents[key] = rec
        return rec

    def url(self, obj: str, record_id: Any) -> str:
        return f"/services/data/v{self.api_version}/sobjects/{obj}/{record_id}"

    # -- name resolution
    def resolve_object(self, name: str, pos: int) -> str:
        obj = self.schema.object_name(name)
        if obj is None:
            raise self.err("INVALID_TYPE", pos, f"sObject type '{name}' is not supported. {_NO_OBJECT_TAIL}")
        return obj

    def resolve(self, obj: str, path: Path) -> _Resolved:
        parts = path.parts
        if (
            len(parts) > 1
            and parts[0].lower() == obj.lower()
            and parts[0].lower() not in self.relationships(obj)
        ):
            parts = parts[1:]  # "SELECT Account.Name FROM Account": the object name as a qualifier
        hops: list[tuple[str, str, str]] = []
        cur = obj
        for part in parts[:-1]:
            fd = self.relationships(cur).get(part.lower())
            target = self.schema.object_name(fd.reference_to or "") if fd is not None else None
            if fd is None or target is None:
                raise self.err(
                    "INVALID_FIELD",
                    path.pos,
                    f"Didn't understand relationship '{part}' in field path. {_RELATIONSHIP_TAIL}",
                )
            hops.append((fd.name, target, fd.relationship_name or part))
            cur = target
        fd = self.schema.field(cur, parts[-1])
        if fd is None:
            raise self.err(
                "INVALID_FIELD",
                path.pos,
                f"No such column '{parts[-1]}' on entity '{cur}'. {_NO_COLUMN_TAIL}",
            )
        return _Resolved(hops, fd, cur)

    def getter(self, res: _Resolved) -> Getter:
        name = res.field.name
        if not res.hops:
            return methodcaller("get", name)  # r.get(name), without a Python-level frame
        hops = tuple((fk, target) for fk, target, _ in res.hops)
        parent = self.parent

        def get(r: dict) -> Any:
            cur: dict | None = r
            for fk, target in hops:
                pid = cur.get(fk)  # type: ignore[union-attr]
                if pid is None:
                    return None
                cur = parent(target, pid)
                if cur is None:
                    return None
            return cur.get(name)  # type: ignore[union-attr]

        return get

    # -- queries
    def compile_query(
        self, q: Query, *, obj: str, fk: str | None = None, key: str | None = None
    ) -> _Compiled:
        pred = self.compile_where(obj, q.where) if q.where is not None else None
        order = []
        for item in q.order_by:
            res = self.resolve(obj, item.path)
            order.append(
                (self.getter(res), _NORMALIZERS[_category(res.field.type)], item.descending, item.nulls_first)
            )
        if q.offset is not None and q.offset > MAX_OFFSET:
            raise self.err(
                "NUMBER_OUTSIDE_VALID_RANGE",
                q.offset_pos,
                f"Maximum SOQL offset allowed is {MAX_OFFSET}",
            )
        plan = self.plan(obj, q.fields)
        return _Compiled(obj, pred, order, q.limit, q.offset or 0, plan, q.is_count, fk, key)

    def plan(self, obj: str, items: list[Any]) -> list[tuple]:
        """The projection: ("f", name) | ("p", rel, fk, target, subplan) | ("c", key, compiled)."""
        plan: list[tuple] = []
        index: dict[int, dict[str, tuple]] = {}

        def level(p: list[tuple]) -> dict[str, tuple]:
            return index.setdefault(id(p), {})

        for item in items:
            if isinstance(item, Query):
                child = self.schema.child(obj, item.object_name)
                if child is None:
                    raise self.err(
                        "INVALID_TYPE",
                        item.object_pos,
                        f"Didn't understand relationship '{item.object_name}' in FROM part of query call. "
                        f"{_RELATIONSHIP_TAIL}",
                    )
                child_obj, fk = child[0], child[1]
                key = child[2] if len(child) > 2 else item.object_name  # type: ignore[misc]
                compiled = self.compile_query(item, obj=child_obj, fk=fk, key=key)
                if key.lower() not in level(plan):
                    entry = ("c", key, compiled)
                    level(plan)[key.lower()] = entry
                    plan.append(entry)
                continue
            res = self.resolve(obj, item)
            cur = plan
            for fk, target, rel in res.hops:
                entry = level(cur).get("r:" + rel.lower())
                if entry is None:
                    entry = ("p", rel, fk, target, [])
                    level(cur)["r:" + rel.lower()] = entry
                    cur.append(entry)
                cur = entry[4]
            name = res.field.name
            if "f:" + name.lower() not in level(cur):
                entry = ("f", name)
                level(cur)["f:" + name.lower()] = entry
                cur.append(entry)
        return plan

    # -- WHERE
    def compile_where(self, obj: str, node: Any) -> Pred:
        if isinstance(node, BoolOp):
            preds = [self.compile_where(obj, n) for n in node.items]
            if node.op == "AND":
                if len(preds) == 2:
                    a, b = preds
                    return lambda r: a(r) and b(r)
                return lambda r: all(p(r) for p in preds)
            if len(preds) == 2:
                a, b = preds
                return lambda r: a(r) or b(r)
            return lambda r: any(p(r) for p in preds)
        if isinstance(node, NotOp):
            inner = self.compile_where(obj, node.item)
            return lambda r: not inner(r)
        if isinstance(node, InSubquery):
            return self.compile_semijoin(obj, node)
        res = self.resolve(obj, node.path)
        cat = _category(res.field.type)
        get = self.getter(res)
        norm = _NORMALIZERS[cat]
        if isinstance(node, InList):
            return self.compile_in(res, cat, get, norm, node)
        if node.op == "LIKE":
            if cat not in ("string", "id"):
                raise self.err(
                    "INVALID_FIELD",
                    node.path.pos,
                    f"invalid operator on field '{res.field.name}': LIKE can only be used with string fields",
                )
            rx = re.compile(node.value.like_regex or "", re.IGNORECASE | re.DOTALL).fullmatch
            return lambda r: (v := get(r)) is not None and rx(v) is not None
        lit = self.literal(res, cat, node.path, node.value)
        return _compare(get, norm, node.op, lit)

    def literal(self, res: _Resolved, cat: str, path: Path, v: Value) -> Any:
        """The literal as a normalised key comparable with normalised stored values."""
        kind = v.kind
        if kind == "null":
            return None
        fd = res.field
        ok = {
            "string": ("string",),
            "id": ("string",),
            "number": ("number",),
            "boolean": ("boolean",),
            "date": ("date", "dateliteral"),
            "datetime": ("datetime", "dateliteral"),
        }[cat]
        if kind not in ok:
            quoted = (
                "should be enclosed in quotes"
                if cat in ("string", "id")
                else "should not be enclosed in quotes"
            )
            raise self.err(
                "INVALID_FIELD",
                path.pos,
                f"value of filter criterion for field '{fd.name}' must be of type {_type_label(fd)} and {quoted}",
            )
        if kind == "string":
            s = v.value
            if cat == "string":
                return s.lower()
            if len(s) == 15 and s.isalnum():
                return to18(s)
            return s
        if kind == "dateliteral":
            lo, hi = _date_range(v.value[0], v.value[1], self.today)
            if cat == "date":
                return _Range(lo.isoformat(), hi.isoformat())
            return _Range(lo.isoformat() + "T00:00:00.000", hi.isoformat() + "T00:00:00.000")
        if kind == "date":
            return v.value.isoformat()
        if kind == "datetime":
            return _fmt_dt_key(v.value)
        return v.value  # number (Decimal) or boolean

    def compile_in(
        self,
        res: _Resolved,
        cat: str,
        get: Getter,
        norm: Callable[[Any], Any] | None,
        node: InList,
    ) -> Pred:
        lits = [self.literal(res, cat, node.path, v) for v in node.values]
        has_null = any(x is None for x in lits)
        ranges = [x for x in lits if isinstance(x, _Range)]
        values = frozenset(x for x in lits if x is not None and not isinstance(x, _Range))
        negate = node.negate

        def member(r: dict) -> bool:
            v = get(r)
            if v is None:
                return has_null
            k = norm(v) if norm else v
            if k in values:
                return True
            return any(rg.lo <= k < rg.hi for rg in ranges)

        if negate:
            return lambda r: not member(r)
        return member

    def compile_semijoin(self, obj: str, node: InSubquery) -> Pred:
        res = self.resolve(obj, node.path)
        sub = node.query
        if len(sub.fields) != 1 or not isinstance(sub.fields[0], Path) or sub.is_count:
            raise self.err(
                "MALFORMED_QUERY",
                sub.pos,
                "The selected field in a semi-join subquery must be a single Id field",
            )
        inner_obj = self.resolve_object(sub.object_name, sub.object_pos)
        inner_res = self.resolve(inner_obj, sub.fields[0])
        if _category(inner_res.field.type) != "id" or _category(res.field.type) != "id":
            raise self.err(
                "INVALID_FIELD",
                sub.fields[0].pos,
                "Semi join sub-selects are only allowed on Id and reference fields",
            )
        compiled = self.compile_query(sub, obj=inner_obj)
        inner_get = self.getter(inner_res)
        values = frozenset(v for v in (inner_get(r) for r in self.rows(compiled)) if v is not None)
        get = self.getter(res)
        if node.negate:
            return lambda r: get(r) not in values
        return lambda r: get(r) in values

    # -- running
    def filtered(self, compiled: _Compiled, records: Iterable[dict]) -> list[dict]:
        pred = compiled.pred
        stop = None
        if not compiled.order and compiled.limit is not None:
            stop = compiled.offset + compiled.limit
            if stop == 0:
                return []
        out: list[dict] = []
        if stop is None:
            if self.include_deleted:
                return [r for r in records if pred(r)] if pred else list(records)
            if pred is None:
                return [r for r in records if not r.get("IsDeleted")]
            return [r for r in records if not r.get("IsDeleted") and pred(r)]
        for r in records:
            if (self.include_deleted or not r.get("IsDeleted")) and (pred is None or pred(r)):
                out.append(r)
                if len(out) >= stop:
                    break
        return out

    def window(self, compiled: _Compiled, rows: list[dict]) -> list[dict]:
        if compiled.order:
            rows = _sort(rows, compiled.order)
        start = compiled.offset
        end = None if compiled.limit is None else start + compiled.limit
        if start or end is not None:
            rows = rows[start:end]
        return rows

    def rows(self, compiled: _Compiled) -> list[dict]:
        matched = self.filtered(compiled, self.source.scan(compiled.obj, self.include_deleted))
        return self.window(compiled, matched)

    def project(self, rec: dict, obj: str, plan: list[tuple]) -> dict:
        out: dict[str, Any] = {"attributes": {"type": obj, "url": self.url(obj, rec.get("Id"))}}
        for entry in plan:
            kind = entry[0]
            if kind == "f":
                out[entry[1]] = rec.get(entry[1])
            elif kind == "p":
                _, rel, fk, target, sub = entry
                pid = rec.get(fk)
                parent = self.parent(target, pid) if pid is not None else None
                out[rel] = self.project(parent, target, sub) if parent is not None else None
            else:
                _, key, compiled = entry
                out[key] = self.child_block(rec, compiled)
        return out

    def child_block(self, rec: dict, compiled: _Compiled) -> dict | None:
        parent_id = rec.get("Id")
        if parent_id is None:
            return None
        children = self.source.children(compiled.obj, compiled.fk or "", parent_id, self.include_deleted)
        rows = self.window(compiled, self.filtered(compiled, children))
        if not rows:
            return None
        return {
            "totalSize": len(rows),
            "done": True,
            "records": [self.project(r, compiled.obj, compiled.plan) for r in rows],
        }


def _compare(get: Getter, norm: Callable[[Any], Any] | None, op: str, lit: Any) -> Pred:
    """One closure per comparison; SOQL null semantics (``!=`` matches nulls, ``<`` never does)."""
    if lit is None:
        if op == "=":
            return lambda r: get(r) is None
        if op == "!=":
            return lambda r: get(r) is not None
        return lambda r: False
    if isinstance(lit, _Range):
        lo, hi = lit.lo, lit.hi
        n = norm or (lambda v: v)
        if op == "=":
            return lambda r: (v := get(r)) is not None and lo <= n(v) < hi
        if op == "!=":
            return lambda r: (v := get(r)) is None or not (lo <= n(v) < hi)
        if op == "<":
            return lambda r: (v := get(r)) is not None and n(v) < lo
        if op == "<=":
            return lambda r: (v := get(r)) is not None and n(v) < hi
        if op == ">":
            return lambda r: (v := get(r)) is not None and n(v) >= hi
        return lambda r: (v := get(r)) is not None and n(v) >= lo
    if norm is None:
        if op == "=":
            return lambda r: get(r) == lit
        if op == "!=":
            return lambda r: get(r) != lit
        if op == "<":
            return lambda r: (v := get(r)) is not None and v < lit
        if op == "<=":
            return lambda r: (v := get(r)) is not None and v <= lit
        if op == ">":
            return lambda r: (v := get(r)) is not None and v > lit
        return lambda r: (v := get(r)) is not None and v >= lit
    if op == "=":
        return lambda r: (v := get(r)) is not None and norm(v) == lit
    if op == "!=":
        return lambda r: (v := get(r)) is None or norm(v) != lit
    if op == "<":
        return lambda r: (v := get(r)) is not None and norm(v) < lit
    if op == "<=":
        return lambda r: (v := get(r)) is not None and norm(v) <= lit
    if op == ">":
        return lambda r: (v := get(r)) is not None and norm(v) > lit
    return lambda r: (v := get(r)) is not None and norm(v) >= lit


def _sort(
    rows: list[dict], order: list[tuple[Getter, Callable[[Any], Any] | None, bool, bool]]
) -> list[dict]:
    """Stable multi-key sort, least significant key first; nulls placed per key."""
    for get, norm, desc, nulls_first in reversed(order):
        keyed = [(get(r), r) for r in rows]
        nulls = [r for v, r in keyed if v is None]
        present = [(norm(v) if norm else v, r) for v, r in keyed if v is not None]
        present.sort(key=lambda kv: kv[0], reverse=desc)
        ordered = [r for _, r in present]
        rows = nulls + ordered if nulls_first else ordered + nulls
    return rows


# --------------------------------------------------------------------------- entry point


def execute(
    soql: str,
    schema: SchemaView,
    source: RecordSource,
    *,
    now: datetime,
    include_deleted: bool = False,
    api_version: str = "59.0",
) -> QueryResult:
    """Run a SOQL query. Raises :class:`SoqlError` for anything Salesforce would reject."""
    q = parse(soql)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = _Ctx(soql, schema, source, include_deleted, api_version, now.astimezone(UTC).date())
    obj = ctx.resolve_object(q.object_name, q.object_pos)
    compiled = ctx.compile_query(q, obj=obj)
    rows = ctx.rows(compiled)
    if compiled.is_count:
        return QueryResult(obj, [], len(rows), True)
    records = [ctx.project(r, obj, compiled.plan) for r in rows]
    return QueryResult(obj, records, len(records), False)
