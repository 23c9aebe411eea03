"""The billing engine's errors, classified by what the caller should do.

- ``InvalidInputError``: the input is wrong; fix it and try again (HTTP 4xx, CLI exit 2).
  It names the field and the reason.
- ``NotFoundError``: the thing asked for does not exist.
- ``ConflictError``: the request contradicts the current state (cancel twice, void a paid invoice).
"""

from __future__ import annotations


class BillingError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidInputError(BillingError, ValueError):
    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CurrencyMismatchError(InvalidInputError):
    def __init__(self, field: str, expected: str, got: str):
        super().__init__(field, f"currency {got} does not match {expected}")
        self.expected = expected
        self.got = got


class NotFoundError(BillingError, LookupError):
    def __init__(self, kind: str, key: object):
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class ConflictError(BillingError):
    def __init__(self, subject: str, reason: str):
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")
