"""Salesforce record ids: 15-character base-62 ids with the 3-character case suffix."""

from __future__ import annotations

import re
import threading

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")
_ID18 = re.compile(r"^[a-zA-Z0-9]{18}$")
# Characters 4-5 of a real id name the pod; "Dn" stands in for this sandbox's pod.
POD = "Dn"
EMPTY_ID = "000000000000000AAA"


def to18(id15: str) -> str:
    """Append the 3-character case suffix: for each 5-character chunk, one bit per upper-case
    letter (first character = lowest bit), read as an index into A–Z0–5 (docs/sandbox.md,
    What it supports › Records)."""
    suffix = ""
    for i in range(3):
        bits = 0
        for j, c in enumerate(id15[i * 5 : (i + 1) * 5]):
            if "A" <= c <= "Z":
                bits |= 1 << j
        suffix += _SUFFIX[bits]
    return id15 + suffix


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when malformed."""
    if not isinstance(value, str):
        return None
    if _ID15.match(value):
        return to18(value)
    if _ID18.match(value):
        fixed = to18(value[:15])
        # The suffix is case-insensitive; a suffix that disagrees with the id is malformed.
        return fixed if fixed.upper() == value.upper() else None
    return None


def base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError("id space exhausted")
    return text.rjust(width, "0")


def make_id(prefix: str, number: int) -> str:
    """The 18-character id number ``number`` under ``prefix`` (3 chars)."""
    return to18(f"{prefix}{POD}0{base62(number, 9)}")


class IdFactory:
    """Hands out increasing ids per key prefix; thread-safe; restorable counters."""

    def __init__(self, start: int = 1_000_000) -> None:
        self._start = start
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            # Each prefix starts at its own offset so ids of different objects differ.
            n = self._counters.get(prefix, self._start + sum(map(ord, prefix)) * 7919 % 99991) + 1
            self._counters[prefix] = n
        return make_id(prefix, n)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def restore(self, counters: dict[str, int]) -> None:
        with self._lock:
            self._counters = dict(counters)
