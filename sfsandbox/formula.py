"""A small, safe formula language for validation rules and notification criteria.

``Total__c < 0``, ``StageName = 'Closed Won' AND Amount > 1000``,
``ISBLANK(Account__c) || NOT(Status__c = 'draft')``. No eval: a tokenizer and a
recursive-descent parser over a closed grammar.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^'\\]|\\.)*')|(?P<op><=|>=|==|!=|<>|&&|\|\||[=<>(),!])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


class FormulaError(ValueError):
    pass


Node = Callable[[Mapping[str, Any]], Any]


class Formula:
    """Parsed once; ``evaluate(record)`` with a case-insensitive field lookup."""

    def __init__(self, text: str):
        self.text = text
        self.fields: set[str] = set()
        self._tokens = self._tokenize(text)
        self._pos = 0
        self._root = self._or()
        if self._pos != len(self._tokens):
            raise FormulaError(f"unexpected {self._tokens[self._pos][1]!r} in {text!r}")

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        lowered = {k.lower(): v for k, v in record.items()}
        return bool(self._root(lowered))

    # -------------------------------------------------------------- parsing

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise FormulaError(f"cannot read {text[pos:]!r}")
            kind = m.lastgroup or ""
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        tok = self._peek()
        if tok is None or (value is not None and tok[1].upper() != value):
            raise FormulaError(f"expected {value or 'a value'} in {self.text!r}")
        self._pos += 1
        return tok

    def _is(self, *values: str) -> bool:
        tok = self._peek()
        return tok is not None and tok[1].upper() in values

    def _or(self) -> Node:
        parts = [self._and()]
        while self._is("OR", "||"):
            self._pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def _and(self) -> Node:
        parts = [self._not()]
        while self._is("AND", "&&"):
            self._pos += 1
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def _not(self) -> Node:
        if self._is("!"):
            self._pos += 1
            inner = self._not()
            return lambda r: not inner(r)
        return self._primary()

    def _args(self) -> list[Node]:
        self._take("(")
        args = [self._or()]
        while self._is(","):
            self._pos += 1
            args.append(self._or())
        self._take(")")
        return args

    def _primary(self) -> Node:
        tok = self._peek()
        if tok is None:
            raise FormulaError(f"unexpected end of {self.text!r}")
        word = tok[1].upper()
        nxt = self._tokens[self._pos + 1][1] if self._pos + 1 < len(self._tokens) else None
        if tok[1] == "(":
            self._pos += 1
            inner = self._or()
            self._take(")")
            return inner
        if word in ("NOT", "AND", "OR", "ISBLANK") and nxt == "(":
            self._pos += 1
            args = self._args()
            if word == "NOT" and len(args) == 1:
                return lambda r: not args[0](r)
            if word == "AND":
                return lambda r: all(a(r) for a in args)
            if word == "OR":
                return lambda r: any(a(r) for a in args)
            if word == "ISBLANK" and len(args) == 1:
                return lambda r: args[0](r) in (None, "")
            raise FormulaError(f"bad arguments to {word} in {self.text!r}")
        left = self._operand()
        if self._is("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            op = self._take()[1]
            right = self._operand()
            return lambda r: _compare(op, left(r), right(r))
        return left

    def _operand(self) -> Node:
        kind, text = self._take()
        if kind == "num":
            value = Decimal(text)
            return lambda r: value
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
            return lambda r: value
        if kind == "word":
            upper = text.upper()
            if upper in ("TRUE", "FALSE"):
                flag = upper == "TRUE"
                return lambda r: flag
            if upper == "NULL":
                return lambda r: None
            self.fields.add(text)
            key = text.lower()
            return lambda r: r.get(key)
        raise FormulaError(f"unexpected {text!r} in {self.text!r}")


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "=="):
        return _norm(left) == _norm(right)
    if op in ("!=", "<>"):
        return _norm(left) != _norm(right)
    a, b = _norm(left), _norm(right)
    if a is None or b is None:
        return False
    try:
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    except TypeError:
        return False


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | Decimal):
        return Decimal(value)
    return value
