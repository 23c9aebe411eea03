"""Money in the JSON API: ``{"amount": "12.50", "currency": "EUR"}``, docs/api.md *Money*.

The amount is a decimal string, never a JSON number (a float cannot hold 0.10 exactly),
in plain notation (no exponent) with at most 15 digits before the point and 6 after; the
currency is an ISO 4217 code. Routes turn it into ``Decimal`` for the engine with
``.decimal()`` and build it from the engine's values with ``Money.of``.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

#: A signed decimal in plain notation: ``12.50``, ``-3``, ``0.000001``.
AMOUNT_PATTERN = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"
#: An ISO 4217 currency code.
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def amount_text(value: Decimal) -> str:
    """A ``Decimal`` as the API writes it: plain notation, its scale kept (``12.50``)."""
    text = format(value, "f")
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text  # never "-0.00"


class Money(BaseModel):
    """An amount of money: a decimal string and its currency."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "12.50", "currency": "EUR"}]})

    amount: str = Field(pattern=AMOUNT_PATTERN, max_length=23, description="Decimal string, e.g. \"12.50\".")
    currency: str = Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code, e.g. \"EUR\".")

    def decimal(self) -> Decimal:
        return Decimal(self.amount)

    @classmethod
    def of(cls, amount: Decimal, currency: str) -> Money:
        return cls(amount=amount_text(amount), currency=currency)
