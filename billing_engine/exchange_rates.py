"""Exchange rates and conversion to the reporting currency (pure).

Rules (docs/reporting.md §2 Exchange rates and conversion):
- a rate is the amount of ``quote`` currency for 1 unit of ``base``; billsync stores rates with
  base EUR, as the ECB publishes them (``1 EUR = 1.0834 USD``). A rate is an exact positive
  decimal (at most 10 decimals), never a float.
- a figure for a month uses, per currency, the latest rate dated in that month on or before its
  last day (the ECB's rate of the month's last business day). A currency without a rate in the
  month is a gap: reported, never converted at 0 or 1.
- conversion goes through EUR: ``amount × rate(EUR→reporting) / rate(EUR→currency)``; EUR's rate
  to itself is 1. The product is taken before the one division, and the result is rounded once,
  at the end, to the reporting currency's minor unit, half up.
- a total in the reporting currency is the sum of its unrounded converted parts, rounded once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext

from billing_engine.errors import InvalidInputError
from billing_engine.money import MINOR_UNITS, check_currency, round_money

#: The currency every stored rate is quoted against.
BASE_CURRENCY = "EUR"
#: Where a rate came from.
SOURCES = ("manual", "ecb")
#: Most decimals a rate may carry (the ECB publishes at most 6 significant digits).
RATE_PLACES = 10
#: Precision of the conversion's intermediate values (more than Decimal's default 28 digits).
_PRECISION = 40


@dataclass(frozen=True, slots=True)
class ExchangeRate:
    """``1 base = rate quote`` on ``on``."""

    on: date
    base: str
    quote: str
    rate: Decimal
    source: str
    entered_by: str = ""


def check_rate(value: object, field: str = "rate") -> Decimal:
    """A positive exact decimal with at most ``RATE_PLACES`` decimals (floats refused)."""
    if isinstance(value, (float, bool)):
        raise InvalidInputError(field, f"{value!r} is a {type(value).__name__}; a rate must be an exact decimal")
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInputError(field, f"{value!r} is not a number") from None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInputError(field, f"{value!r} is not a number")
    if value <= 0:
        raise InvalidInputError(field, f"{value} must be greater than 0")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > RATE_PLACES:
        raise InvalidInputError(field, f"{value} has more than {RATE_PLACES} decimals")
    return value


def check_quote_currency(code: object, field: str = "currency") -> str:
    """A currency billsync knows, other than the base (EUR's rate to itself is 1)."""
    currency = check_currency(code, field) if isinstance(code, str) else check_currency(str(code), field)
    if currency == BASE_CURRENCY:
        raise InvalidInputError(field, f"{BASE_CURRENCY} is the base of every rate; its rate is always 1")
    return currency


def check_source(value: object) -> str:
    if value not in SOURCES:
        raise InvalidInputError("source", f"{value!r} is not a source; use one of {', '.join(SOURCES)}")
    return str(value)


# ---------------------------------------------------------------- the rate of a month


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """The first and last day of a month."""
    from billing_engine.revenue import month_end

    return date(year, month, 1), month_end(year, month)


def rate_of_month(rates: Iterable[ExchangeRate], currency: str, year: int, month: int) -> ExchangeRate | None:
    """The rate a figure for the month uses: the latest one dated in the month, on or before its
    last day (``None``: a gap). ``rates`` may hold any dates and currencies."""
    first, last = month_bounds(year, month)
    chosen = None
    for rate in rates:
        if rate.quote == currency and first <= rate.on <= last and (chosen is None or rate.on > chosen.on):
            chosen = rate
    return chosen


@dataclass(frozen=True, slots=True)
class RateSet:
    """The EUR-based rates a conversion may use, by currency (EUR itself needs none)."""

    rates: Mapping[str, ExchangeRate]

    def has(self, currency: str) -> bool:
        return currency == BASE_CURRENCY or currency in self.rates

    def missing(self, currencies: Iterable[str], reporting: str) -> list[str]:
        """The currencies (the reporting one included) a conversion would lack a rate for."""
        needed = set(currencies) | {reporting}
        return sorted(c for c in needed if not self.has(c))

    def factor_parts(self, currency: str, reporting: str) -> tuple[Decimal, Decimal]:
        """``(numerator, denominator)``: converted = amount × numerator / denominator."""
        if currency == reporting:
            return Decimal(1), Decimal(1)
        numerator = Decimal(1) if reporting == BASE_CURRENCY else self.rates[reporting].rate
        denominator = Decimal(1) if currency == BASE_CURRENCY else self.rates[currency].rate
        return numerator, denominator


class MissingRateError(InvalidInputError):
    """A conversion needs a rate that is not there."""

    def __init__(self, currencies: Sequence[str], period: str):
        self.currencies = tuple(currencies)
        self.period = period
        super().__init__("rate", f"no {BASE_CURRENCY} rate for {', '.join(currencies)} in {period}")


def convert_unrounded(amount: Decimal, currency: str, reporting: str, rates: RateSet) -> Decimal:
    """``amount`` in ``reporting``, unrounded: ``amount × rate(EUR→reporting) / rate(EUR→currency)``.
    Raises ``MissingRateError`` when a rate is lacking (0 needs none)."""
    if isinstance(amount, float):
        raise InvalidInputError("amount", "money must be a Decimal, not a float")
    if amount == 0:
        return Decimal(0)
    missing = rates.missing([currency], reporting)
    if missing:
        raise MissingRateError(missing, "the period")
    numerator, denominator = rates.factor_parts(currency, reporting)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return amount * numerator / denominator


def convert(amount: Decimal, currency: str, reporting: str, rates: RateSet) -> Decimal:
    """``amount`` converted and rounded once to the reporting currency's minor unit, half up."""
    return round_money(convert_unrounded(amount, currency, reporting, rates), reporting)


def convert_total(amounts: Mapping[str, Decimal], reporting: str, rates: RateSet) -> Decimal:
    """Σ per-currency amounts in the reporting currency: the unrounded parts summed, rounded once."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        total = sum((convert_unrounded(value, currency, reporting, rates) for currency, value in amounts.items()),
                    Decimal(0))
    return round_money(total, reporting)


# ---------------------------------------------------------------- the ECB reference rates file


@dataclass(frozen=True, slots=True)
class RateFileProblem:
    line: int
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.detail}"


def parse_ecb_csv(text: str) -> tuple[list[ExchangeRate], list[RateFileProblem]]:
    """The rates of an ECB reference-rates file (``eurofxref.csv`` or ``eurofxref-hist.csv``).

    The first column is ``Date`` (``YYYY-MM-DD``, or ``6 December 2026`` in the daily file), then
    one column per currency with its rate per 1 EUR; ``N/A`` or an empty cell is no rate.
    Currencies billsync does not bill in are skipped. Returns ``(rates, problems)``: one
    problem per bad line (its number in the file), and the caller writes nothing if any.
    """
    from datetime import datetime

    problems: list[RateFileProblem] = []
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0].strip().lstrip("\ufeff") != "Date":
        return [], [RateFileProblem(1, "not an ECB reference-rates file: the first column must be 'Date'")]
    header = [cell.strip() for cell in rows[0]]
    columns: list[tuple[int, str]] = []
    for index, name in enumerate(header[1:], start=1):
        if not name:
            continue  # the ECB's files end each line with a comma
        if len(name) != 3 or not name.isalpha() or not name.isupper():
            problems.append(RateFileProblem(1, f"column {index + 1}: {name!r} is not a currency code"))
        elif name in MINOR_UNITS and name != BASE_CURRENCY:
            columns.append((index, name))
    out: list[ExchangeRate] = []
    seen: dict[date, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        raw_day = row[0].strip()
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            try:
                day = datetime.strptime(raw_day, "%d %B %Y").date()  # noqa: DTZ007 - a calendar date
            except ValueError:
                problems.append(RateFileProblem(number, f"{raw_day!r} is not a date (YYYY-MM-DD)"))
                continue
        if day in seen:
            problems.append(RateFileProblem(number, f"{day} is also on line {seen[day]}"))
            continue
        seen[day] = number
        bad = []
        rates = []
        for index, currency in columns:
            cell = row[index].strip() if index < len(row) else ""
            if cell in ("", "N/A"):
                continue
            try:
                rates.append(ExchangeRate(day, BASE_CURRENCY, currency, check_rate(cell), "ecb"))
            except InvalidInputError as exc:
                bad.append(f"{currency} {exc.reason}")
        if bad:
            problems.append(RateFileProblem(number, "; ".join(bad)))
        else:
            out.extend(rates)
    if not problems and not out:
        problems.append(RateFileProblem(1, "the file holds no rate of a currency billsync knows"))
    return out, problems
