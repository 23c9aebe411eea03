"""Money: ``Decimal`` amounts with an ISO 4217 currency. Never a float.

Rules (docs/billing-rules.md §1 Money and rounding): line amounts round to the
currency's minor unit with ROUND_HALF_UP; unit prices keep up to 6 decimals;
intermediate values are not rounded (``Decimal``'s 28 significant digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing_engine.errors import CurrencyMismatchError, InvalidInputError

# ISO 4217 minor units. Everything billsync bills in must be listed here.
MINOR_UNITS: dict[str, int] = {
    # 2 decimals
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "RON": 2, "BGN": 2, "SGD": 2, "HKD": 2, "CNY": 2,
    "INR": 2, "BRL": 2, "MXN": 2, "ZAR": 2, "ILS": 2, "AED": 2, "SAR": 2, "TRY": 2, "THB": 2,
    "MYR": 2, "PHP": 2, "IDR": 2, "TWD": 2,
    # 0 decimals
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "XOF": 0, "XAF": 0, "PYG": 0, "UGX": 0,
    # 3 decimals
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3, "IQD": 3, "LYD": 3,
}

UNIT_PRICE_PLACES = 6

_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(0, UNIT_PRICE_PLACES + 1)}


def check_currency(code: str, field: str = "currency") -> str:
    if not isinstance(code, str) or code.upper() != code or code not in MINOR_UNITS:
        raise InvalidInputError(field, f"unknown currency {code!r}; use an ISO 4217 code such as EUR, USD or JPY")
    return code


def minor_units(currency: str) -> int:
    return MINOR_UNITS[check_currency(currency)]


def to_decimal(value: object, field: str) -> Decimal:
    """Accept Decimal, int or a decimal string; refuse float and garbage, naming the field."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInputError(field, f"{value!r} is a {type(value).__name__}; money and quantities must be exact decimals")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInputError(field, f"{value!r} is not a number") from None
    else:
        raise InvalidInputError(field, f"{value!r} is not a number")
    if not result.is_finite():
        raise InvalidInputError(field, f"{value!r} is not a finite number")
    return result


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half up (0.645 → 0.65; 51.2345 → 51.23)."""
    return amount.quantize(_QUANTA[minor_units(currency)], rounding=ROUND_HALF_UP)


def with_minor_units(amount: Decimal, currency: str) -> Decimal:
    """The same amount written with at least the currency's decimals (0 → 0.00 EUR, 50 → 50.00);
    never rounds (a unit price of 0.0004 stays)."""
    places = minor_units(currency)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -places:
        return amount.quantize(_QUANTA[places])
    return amount


def round_unit_price(price: Decimal) -> Decimal:
    return price.quantize(_QUANTA[UNIT_PRICE_PLACES], rounding=ROUND_HALF_UP)


def check_unit_price(value: object, field: str) -> Decimal:
    price = to_decimal(value, field)
    if price.as_tuple().exponent < -UNIT_PRICE_PLACES and price != round_unit_price(price):  # type: ignore[operator]
        raise InvalidInputError(field, f"{price} has more than {UNIT_PRICE_PLACES} decimals")
    return price


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency. Arithmetic across currencies raises."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            object.__setattr__(self, "amount", to_decimal(self.amount, "amount"))
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError("currency", self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):
            raise TypeError("multiply Money by a Decimal, not a float")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def rounded(self) -> Money:
        return Money(round_money(self.amount, self.currency), self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def money_of(amount: Decimal, currency: str) -> Money:
    """``Money`` written with at least the currency's decimals (``with_minor_units``), as reports show it."""
    return Money(with_minor_units(amount, currency), currency)
