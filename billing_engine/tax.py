"""Tax on invoices and credit notes (pure; standard library only).

Rules (docs/billing-rules.md §14 Tax):
- prices exclude tax; tax is computed **per rate on the invoice**: sum the net
  amounts of the lines at each rate, multiply, round once, half up (EN 16931
  VAT breakdown). Per-line rounding is a setting (``per_line=True``);
- a reverse-charge or exempt customer is taxed at 0 % and the invoice says why;
- a credit note recomputes tax on the *rounded* credited amount.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money, to_decimal

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class TaxRate:
    """A tax rate in percent (``Decimal("20")`` is 20 %), with the reason for a 0 % rate."""

    percent: Decimal
    reason: str = ""

    def __post_init__(self) -> None:
        percent = to_decimal(self.percent, "tax_rate")
        if percent < 0 or percent > HUNDRED:
            raise InvalidInputError("tax_rate", f"{percent} % is outside 0-100 %")
        object.__setattr__(self, "percent", percent)

    @classmethod
    def exempt(cls, reason: str) -> TaxRate:
        """0 % with the mention the invoice must carry, e.g. 'Reverse charge (Art. 196 VAT Directive)'."""
        if not reason:
            raise InvalidInputError("tax_reason", "an exempt or reverse-charge rate must say why")
        return cls(Decimal(0), reason)


@dataclass(frozen=True, slots=True)
class TaxGroup:
    """One row of the VAT breakdown: the lines at one rate."""

    percent: Decimal
    net: Decimal
    tax: Decimal


def tax_for(net: Decimal, percent: Decimal, currency: str) -> Decimal:
    """Tax on one net amount, rounded once to the currency, half up."""
    return round_money(net * percent / HUNDRED, currency)


def tax_breakdown(
    lines: Iterable[tuple[Decimal, Decimal]], currency: str, *, per_line: bool = False
) -> tuple[TaxGroup, ...]:
    """VAT breakdown of ``(net amount, rate percent)`` pairs, one group per rate, ascending rate.

    Per rate: ``tax = round(Σ net × rate)`` (default), or ``Σ round(net × rate)``
    when ``per_line`` is set. Nets must already be rounded to the currency.
    """
    nets: dict[Decimal, Decimal] = {}
    taxes: dict[Decimal, Decimal] = {}
    for net, percent in lines:
        key = percent.normalize()
        nets[key] = nets.get(key, Decimal(0)) + net
        if per_line:
            taxes[key] = taxes.get(key, Decimal(0)) + tax_for(net, percent, currency)
    groups = []
    for key in sorted(nets):
        tax = taxes[key] if per_line else tax_for(nets[key], key, currency)
        groups.append(TaxGroup(percent=key, net=nets[key], tax=tax))
    return tuple(groups)


def credit_note_tax(credited: Decimal, percent: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """``(rounded credited net, tax on it)``: the credited amount is rounded first, then taxed."""
    net = round_money(credited, currency)
    return net, tax_for(net, percent, currency)
