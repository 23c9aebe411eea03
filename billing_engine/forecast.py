"""The MRR forecast (pure): contracted MRR month by month, adjusted by the churn and expansion the
installation's own history shows, with a band; and the accuracy of past forecasts.

Rules (docs/intelligence.md, MRR forecast):
- **contracted** MRR of a future month is the MRR bridge's closing computed from the subscriptions
  as they stand (terms, automatic renewals with their uplift, non-renewing terms ending, recorded
  cancellations and amendments with a future date). It is given, not computed here.
- the **history** is the bridge of the complete months before the forecast's first month; each
  month with an opening MRR above 0 gives an expansion rate (expansion / opening) and a churn rate
  ((contraction + churn) / opening). New and reactivated revenue are left out: the forecast is
  the existing book's.
- the **expected** MRR of the month ``k`` months ahead is the contracted one times
  ``Π (1 − extra churn_j) × (1 + extra expansion_j)`` over the months ``j ≤ k``, where a month's
  extra churn is the history's churn rate less the contracted path's own churn rate that month
  (a recorded cancellation, a term ending), and its extra expansion the history's expansion rate
  less the contracted expansion (an uplift), never below 0: a change already known is not
  counted twice, and a month without one takes the history's rates.
- the **band**: the same with the rates one standard deviation of the monthly rates apart
  (low: more churn and less expansion; high: less churn and more expansion; never below 0).
- amounts are rounded once, half up, to the currency's minor unit.
- a forecast's error for a month is |forecast − actual| / actual; the MAPE of a horizon is the
  mean of its errors in percent (months with an actual MRR of 0 are left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing_engine.money import round_money
from billing_engine.revenue import BridgeRow, parse_month

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
#: How many months a forecast covers (the month it is made in and the 11 after).
HORIZON_MONTHS = 12
_RATE_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Rates:
    """Monthly expansion and churn rates (fractions) and their standard deviations."""

    expansion: Decimal = ZERO
    churn: Decimal = ZERO
    expansion_spread: Decimal = ZERO
    churn_spread: Decimal = ZERO
    months: int = 0  # months of history they come from

    def shifted(self, direction: int) -> Rates:
        """The rates one standard deviation towards a higher (+1) or lower (−1) MRR."""
        return Rates(expansion=max(ZERO, self.expansion + direction * self.expansion_spread),
                     churn=max(ZERO, self.churn - direction * self.churn_spread), months=self.months)


def _mean_and_spread(values: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    if not values:
        return ZERO, ZERO
    mean = sum(values, ZERO) / len(values)
    variance = sum(((v - mean) ** 2 for v in values), ZERO) / len(values)
    return mean, variance.sqrt()


def historical_rates(rows: Iterable[BridgeRow]) -> Rates:
    """The mean and spread of the monthly rates of the bridge rows of one currency (months with an
    opening MRR of 0 have no rate)."""
    expansion, churn = [], []
    for row in rows:
        if row.opening > 0:
            expansion.append(row.expansion / row.opening)
            churn.append((row.contraction + row.churn) / row.opening)
    exp_mean, exp_spread = _mean_and_spread(expansion)
    churn_mean, churn_spread = _mean_and_spread(churn)
    q = _RATE_PLACES
    return Rates(exp_mean.quantize(q, ROUND_HALF_UP), churn_mean.quantize(q, ROUND_HALF_UP),
                 exp_spread.quantize(q, ROUND_HALF_UP), churn_spread.quantize(q, ROUND_HALF_UP), len(expansion))


@dataclass(frozen=True)
class ForecastMonth:
    month: str
    horizon: int  # 1: the month the forecast is made in
    contracted: Decimal
    expected: Decimal
    low: Decimal
    high: Decimal


def _factors(contracted: Sequence[BridgeRow], rates: Rates) -> list[Decimal]:
    out = []
    factor = ONE
    for row in contracted:
        known_churn = known_expansion = ZERO
        if row.opening > 0:
            known_churn = (row.contraction + row.churn) / row.opening
            known_expansion = row.expansion / row.opening
        churn = min(ONE, max(ZERO, rates.churn - known_churn))
        expansion = max(ZERO, rates.expansion - known_expansion)
        factor *= (ONE - churn) * (ONE + expansion)
        out.append(factor)
    return out


def forecast(currency: str, contracted: Sequence[BridgeRow], rates: Rates) -> list[ForecastMonth]:
    """The forecast of one currency from its contracted bridge rows (consecutive future months, in
    order) and the history's rates."""
    expected = _factors(contracted, rates)
    low = _factors(contracted, rates.shifted(-1))
    high = _factors(contracted, rates.shifted(+1))
    return [ForecastMonth(row.period, k, row.closing, round_money(row.closing * e, currency),
                          round_money(row.closing * lo, currency), round_money(row.closing * hi, currency))
            for k, (row, e, lo, hi) in enumerate(zip(contracted, expected, low, high, strict=True), start=1)]


def months_after(month: str, count: int) -> str:
    """The month ``count`` months after ``month`` (negative: before)."""
    year, mon = parse_month(month)
    index = year * 12 + mon - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def horizon_of(made_in: str, month: str) -> int:
    """1 for the month a forecast is made in, 2 for the next…"""
    (y1, m1), (y2, m2) = parse_month(made_in), parse_month(month)
    return (y2 - y1) * 12 + m2 - m1 + 1


def absolute_percentage_error(forecast_value: Decimal, actual: Decimal) -> Decimal | None:
    """|forecast − actual| / actual in percent (unrounded); ``None`` when the actual is 0."""
    if not actual:
        return None
    return abs(forecast_value - actual) * HUNDRED / actual


def mape(errors: Sequence[Decimal]) -> Decimal | None:
    """The mean of percentage errors, 2 decimals half up; ``None`` without any."""
    if not errors:
        return None
    return (sum(errors, ZERO) / len(errors)).quantize(Decimal("0.01"), ROUND_HALF_UP)
