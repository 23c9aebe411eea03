"""Dashboard formulas (pure): retention, churn rates, ARPA, a customer's billing status and the
MRR waterfall in the reporting currency. Definitions: docs/reporting.md §1 The figures.

- NRR = (opening + expansion − contraction − churn) / opening: the revenue kept and grown from the
  customers paying at the opening; new and reactivated customers are not in it.
- GRR = (opening − contraction − churn) / opening (never above 100 %).
- logo churn rate = churned customers / customers with MRR > 0 at the opening.
- revenue churn rate = (contraction + churn) / opening = 100 % − GRR.
- ARPA = closing MRR / customers with MRR > 0 at the closing, rounded to the minor unit.
Rates are percentages rounded half up to 2 decimals; ``None`` when the opening is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing_engine.exchange_rates import RateSet, convert_total, convert_unrounded
from billing_engine.money import round_money

ZERO = Decimal(0)
HUNDRED = Decimal(100)
_PERCENT = Decimal("0.01")
#: Billing statuses, as the Account summary's (docs/billing-rules.md §18 The account billing summary).
STATUSES = ("active", "cancelling", "past_due", "cancelled", "none")
#: The parts of the MRR waterfall, in order.
WATERFALL = ("opening", "new", "expansion", "reactivation", "contraction", "churn", "closing")


def percent(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """``numerator / denominator`` in percent, 2 decimals half up; ``None`` when the denominator is 0."""
    if not denominator:
        return None
    return (numerator * HUNDRED / denominator).quantize(_PERCENT, ROUND_HALF_UP)


def net_revenue_retention(opening: Decimal, expansion: Decimal, contraction: Decimal,
                          churn: Decimal) -> Decimal | None:
    return percent(opening + expansion - contraction - churn, opening)


def gross_revenue_retention(opening: Decimal, contraction: Decimal, churn: Decimal) -> Decimal | None:
    return percent(opening - contraction - churn, opening)


def revenue_churn_rate(opening: Decimal, contraction: Decimal, churn: Decimal) -> Decimal | None:
    return percent(contraction + churn, opening)


def logo_churn_rate(churned: int, opening_customers: int) -> Decimal | None:
    return percent(Decimal(churned), Decimal(opening_customers))


def arpa(closing: Decimal, customers: int, currency: str) -> Decimal | None:
    """Average MRR per paying account, rounded once to the currency's minor unit."""
    if not customers:
        return None
    return round_money(closing / customers, currency)


def billing_status(*, subscriptions: int, past_due: bool, running: bool, cancelling: bool) -> str:
    """The Account summary's billing status from a customer's standing: ``none`` without
    subscriptions, then ``past_due``, ``active``, ``cancelling``, else ``cancelled``."""
    if not subscriptions:
        return "none"
    if past_due:
        return "past_due"
    if running:
        return "active"
    if cancelling:
        return "cancelling"
    return "cancelled"


@dataclass(frozen=True)
class Waterfall:
    """One month's MRR bridge in one currency; ``rounding`` is what the separately rounded parts
    miss in the reporting currency (0 per currency): opening + new + expansion + reactivation −
    contraction − churn + rounding = closing."""

    currency: str
    opening: Decimal
    new: Decimal
    expansion: Decimal
    reactivation: Decimal
    contraction: Decimal
    churn: Decimal
    closing: Decimal
    rounding: Decimal

    def holds(self) -> bool:
        return (self.opening + self.new + self.expansion + self.reactivation - self.contraction - self.churn
                + self.rounding) == self.closing


def converted_waterfall(parts: Mapping[str, Mapping[str, Decimal]], reporting: str, rates: RateSet) -> Waterfall:
    """The waterfall of several currencies (``currency → {part: amount}``) in ``reporting``, every
    part at the same month's rates, each part's total converted and rounded once."""
    totals = {name: convert_total({cur: values[name] for cur, values in parts.items()}, reporting, rates)
              for name in WATERFALL}
    rounding = totals["closing"] - (totals["opening"] + totals["new"] + totals["expansion"] + totals["reactivation"]
                                    - totals["contraction"] - totals["churn"])
    return Waterfall(reporting, rounding=rounding, **totals)


def converted_sum(amounts: Mapping[str, Decimal], reporting: str, rates: RateSet) -> Decimal:
    """Unrounded Σ of per-currency amounts in ``reporting`` (for ratios, which round on their own)."""
    return sum((convert_unrounded(value, cur, reporting, rates) for cur, value in amounts.items()), ZERO)
