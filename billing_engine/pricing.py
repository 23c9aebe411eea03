"""Pricing models: what a quantity costs for one full period, and why.

One small class per model behind a registry (docs/billing-rules.md §5 Pricing models):
flat, per_unit, graduated, volume, package, allowance, percent_of. Each class
validates its terms (naming the field or tier and the problem) and rates a
quantity into an unrounded amount plus a human-readable detail such as
``12 × graduated: 5 × 200 + 5 × 150 + 2 × 100``. Rounding to the currency
happens once, on the charge line (billing_engine.charges).

Pure functions of plain values: stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.money import check_unit_price, round_unit_price, to_decimal

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


def fmt(value: Decimal) -> str:
    """A decimal as people write it: 200, 6.5, 0.0004 (no exponent, no trailing zeros)."""
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True, slots=True)
class Tier:
    """Units ``(previous tier's up_to, up_to]`` at ``unit_price``, plus ``flat_fee`` when reached.

    ``up_to`` is the last unit the tier includes (Stripe); ``None`` on the final tier only.
    ``starts_at`` is optional and only used to detect gaps and overlaps in input such
    as "1–5, 6–10, 11+".
    """

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO
    starts_at: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PriceTerms:
    """Everything a pricing model needs. Which fields matter depends on ``model``."""

    model: str
    unit_price: Decimal | None = None  # flat: the amount; per_unit: per unit; package: per package; allowance: the fee
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    included_units: Decimal | None = None
    overage_unit_price: Decimal | None = None
    percent: Decimal | None = None
    covered_product_codes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Rating:
    """A full-period, unrounded amount and how it was reached."""

    amount: Decimal
    detail: str
    unit_price: Decimal  # the representative unit price shown on the line (6 decimals)


class PricingModel:
    name: str = ""

    def validate(self, terms: PriceTerms) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:  # pragma: no cover - interface
        raise NotImplementedError


def _require_price(value: Decimal | None, field_name: str, model: str) -> Decimal:
    if value is None:
        raise InvalidInputError(field_name, f"is required for the {model} model")
    price = check_unit_price(value, field_name)
    if price < 0:
        raise InvalidInputError(field_name, f"must not be negative, got {fmt(price)}")
    return price


def _require_positive(value: Decimal | None, field_name: str, model: str) -> Decimal:
    if value is None:
        raise InvalidInputError(field_name, f"is required for the {model} model")
    number = to_decimal(value, field_name)
    if number <= 0:
        raise InvalidInputError(field_name, f"must be greater than 0, got {fmt(number)}")
    return number


class Flat(PricingModel):
    name = "flat"

    def validate(self, terms: PriceTerms) -> None:
        _require_price(terms.unit_price, "unit_price", self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        amount = terms.unit_price
        return Rating(amount, f"flat {fmt(amount)}", amount)


class PerUnit(PricingModel):
    name = "per_unit"

    def validate(self, terms: PriceTerms) -> None:
        _require_price(terms.unit_price, "unit_price", self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        price = terms.unit_price
        return Rating(quantity * price, f"{fmt(quantity)} × {fmt(price)}", price)


def validate_tiers(tiers: Sequence[Tier], model: str) -> None:
    """Tiers are contiguous, increasing, open-ended at the end, with prices ≥ 0."""
    if not tiers:
        raise InvalidInputError("tiers", f"the {model} model needs at least one tier")
    previous_up_to = ZERO
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        name = f"tiers[{index}]"
        if not isinstance(tier, Tier):
            raise InvalidInputError(name, f"{tier!r} is not a Tier")
        price = check_unit_price(tier.unit_price, f"{name}.unit_price")
        if price < 0:
            raise InvalidInputError(f"{name}.unit_price", f"must not be negative, got {fmt(price)}")
        fee = check_unit_price(tier.flat_fee, f"{name}.flat_fee")
        if fee < 0:
            raise InvalidInputError(f"{name}.flat_fee", f"must not be negative, got {fmt(fee)}")
        if tier.starts_at is not None:
            starts_at = to_decimal(tier.starts_at, f"{name}.starts_at")
            expected = previous_up_to + 1 if index else None
            if index == 0:
                if starts_at not in (ZERO, ONE):
                    raise InvalidInputError(f"{name}.starts_at",
                                            f"the first tier must start at 0 or 1, not {fmt(starts_at)}")
            elif starts_at > expected:
                raise InvalidInputError(
                    f"{name}.starts_at",
                    f"gap: tier {index} ends at {fmt(previous_up_to)} but tier {index + 1} starts at "
                    f"{fmt(starts_at)}, so units above {fmt(previous_up_to)} and below {fmt(starts_at)} have no price",
                )
            elif starts_at < expected:
                raise InvalidInputError(
                    f"{name}.starts_at",
                    f"overlap: tier {index + 1} starts at {fmt(starts_at)} but tier {index} already "
                    f"includes units up to {fmt(previous_up_to)}",
                )
        if tier.up_to is None:
            if index != last:
                raise InvalidInputError(f"{name}.up_to",
                                        f"only the last tier may be open-ended; tier {index + 1} needs up_to")
            continue
        up_to = to_decimal(tier.up_to, f"{name}.up_to")
        if up_to <= previous_up_to:
            raise InvalidInputError(
                f"{name}.up_to",
                f"overlap: tier {index + 1} ends at {fmt(up_to)}, not above the previous tier's {fmt(previous_up_to)}",
            )
        if tier.starts_at is not None and up_to < to_decimal(tier.starts_at, f"{name}.starts_at"):
            raise InvalidInputError(f"{name}.up_to", f"{fmt(up_to)} is below the tier's start")
        if index == last:
            raise InvalidInputError(
                f"{name}.up_to",
                f"the last tier must be open-ended (no up_to); quantities above {fmt(up_to)} would have no price",
            )
        previous_up_to = up_to


class Graduated(PricingModel):
    """Each unit priced in the tier it falls in, plus each reached tier's flat fee (Stripe, Lago)."""

    name = "graduated"

    def validate(self, terms: PriceTerms) -> None:
        validate_tiers(terms.tiers, self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        total = ZERO
        parts = []
        lower = ZERO
        for index, tier in enumerate(terms.tiers):
            if index and quantity <= lower:
                break
            upper = tier.up_to
            units = quantity - lower if upper is None or quantity < upper else upper - lower
            if units > 0:
                total += units * tier.unit_price
                parts.append(f"{fmt(units)} × {fmt(tier.unit_price)}")
            if tier.flat_fee:
                total += tier.flat_fee
                parts.append(f"flat {fmt(tier.flat_fee)}")
            if upper is None:
                break
            lower = upper
        detail = f"{fmt(quantity)} × graduated: " + (" + ".join(parts) if parts else "0")
        unit = round_unit_price(total / quantity) if quantity else total
        return Rating(total, detail, unit)


class Volume(PricingModel):
    """All units at the price of the tier the quantity falls in, plus that tier's flat fee (Stripe)."""

    name = "volume"

    def validate(self, terms: PriceTerms) -> None:
        validate_tiers(terms.tiers, self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        tiers = terms.tiers
        chosen = tiers[-1]
        number = len(tiers)
        for index, tier in enumerate(tiers):
            if tier.up_to is None or quantity <= tier.up_to:
                chosen, number = tier, index + 1
                break
        total = quantity * chosen.unit_price + chosen.flat_fee
        detail = f"{fmt(quantity)} × volume: {fmt(quantity)} × {fmt(chosen.unit_price)} (tier {number})"
        if chosen.flat_fee:
            detail += f" + flat {fmt(chosen.flat_fee)}"
        return Rating(total, detail, chosen.unit_price)


class Package(PricingModel):
    """ceil(q / package_size) × package price; q = 0 costs nothing (Lago)."""

    name = "package"

    def validate(self, terms: PriceTerms) -> None:
        _require_price(terms.unit_price, "unit_price", self.name)
        _require_positive(terms.package_size, "package_size", self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        packages = (quantity / terms.package_size).to_integral_value(rounding=ROUND_CEILING) if quantity > 0 else ZERO
        total = packages * terms.unit_price
        detail = (f"{fmt(quantity)} in packages of {fmt(terms.package_size)}: "
                  f"{fmt(packages)} × {fmt(terms.unit_price)}")
        return Rating(total, detail, terms.unit_price)


class Allowance(PricingModel):
    """A fee including N units, plus (q − N) × overage price above them (Zuora, Stripe)."""

    name = "allowance"

    def validate(self, terms: PriceTerms) -> None:
        _require_price(terms.unit_price, "unit_price", self.name)
        if terms.included_units is None:
            raise InvalidInputError("included_units", "is required for the allowance model")
        if to_decimal(terms.included_units, "included_units") < 0:
            raise InvalidInputError("included_units", f"must not be negative, got {fmt(terms.included_units)}")
        _require_price(terms.overage_unit_price, "overage_unit_price", self.name)

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        over = quantity - terms.included_units
        total = terms.unit_price
        detail = f"{fmt(quantity)} with {fmt(terms.included_units)} included: {fmt(terms.unit_price)}"
        if over > 0:
            total += over * terms.overage_unit_price
            detail += f" + {fmt(over)} × {fmt(terms.overage_unit_price)}"
        return Rating(total, detail, terms.unit_price)


class PercentOf(PricingModel):
    """p % of the covered lines' rounded net amounts (Salesforce CPQ "Percent of Total").

    The quantity passed to ``rate`` is that base amount.
    """

    name = "percent_of"

    def validate(self, terms: PriceTerms) -> None:
        if terms.percent is None:
            raise InvalidInputError("percent", "is required for the percent_of model")
        percent = to_decimal(terms.percent, "percent")
        if percent < 0:
            raise InvalidInputError("percent", f"must not be negative, got {fmt(percent)}")
        if not terms.covered_product_codes:
            raise InvalidInputError("covered_product_codes", "name at least one product code for percent_of")

    def rate(self, terms: PriceTerms, quantity: Decimal) -> Rating:
        amount = quantity * terms.percent / HUNDRED
        return Rating(amount, f"{fmt(terms.percent)} % of {fmt(quantity)}", terms.percent / HUNDRED)


PRICING_MODELS: Mapping[str, PricingModel] = {
    model.name: model for model in (Flat(), PerUnit(), Graduated(), Volume(), Package(), Allowance(), PercentOf())
}


def get_model(name: str, field_name: str = "model") -> PricingModel:
    try:
        return PRICING_MODELS[name]
    except (KeyError, TypeError):
        raise InvalidInputError(
            field_name, f"unknown pricing model {name!r}; use one of {', '.join(sorted(PRICING_MODELS))}"
        ) from None


def rate(terms: PriceTerms, quantity: Decimal) -> Rating:
    """The full-period amount for ``quantity`` (unrounded) and its explanation."""
    if quantity < 0:
        raise InvalidInputError("quantity", f"must not be negative, got {fmt(quantity)}")
    return PRICING_MODELS[terms.model].rate(terms, quantity)


def compound_percent(percents: Sequence[Decimal]) -> Decimal:
    """Discounts applied one after another: 10 % then 10 % is 19 %, not 20 %."""
    remaining = ONE
    for percent in percents:
        remaining *= ONE - percent / HUNDRED
    return (ONE - remaining) * HUNDRED


def make_tiers(rows: Sequence[Mapping[str, object]], field_name: str = "tiers") -> tuple[Tier, ...]:
    """Tiers from plain rows (``{"up_to": "5", "unit_price": "200", "flat_fee": "0", "starts_at": "1"}``)."""
    tiers = []
    for index, row in enumerate(rows):
        name = f"{field_name}[{index}]"
        if not isinstance(row, Mapping):
            raise InvalidInputError(name, f"{row!r} is not a tier")
        unknown = set(row) - {"up_to", "unit_price", "flat_fee", "starts_at"}
        if unknown:
            raise InvalidInputError(name, f"unknown keys {sorted(unknown)}")
        if row.get("unit_price") is None:
            raise InvalidInputError(f"{name}.unit_price", "is required")
        up_to = row.get("up_to")
        starts_at = row.get("starts_at")
        tiers.append(Tier(
            up_to=None if up_to is None else to_decimal(up_to, f"{name}.up_to"),
            unit_price=check_unit_price(row["unit_price"], f"{name}.unit_price"),
            flat_fee=check_unit_price(row.get("flat_fee", 0), f"{name}.flat_fee"),
            starts_at=None if starts_at is None else to_decimal(starts_at, f"{name}.starts_at"),
        ))
    return tuple(tiers)


def tiers_to_rows(tiers: Sequence[Tier]) -> list[dict[str, str | None]]:
    """Tiers as plain rows of decimal strings (never floats), for JSON storage."""
    rows = []
    for tier in tiers:
        row: dict[str, str | None] = {
            "up_to": None if tier.up_to is None else str(tier.up_to),
            "unit_price": str(tier.unit_price),
            "flat_fee": str(tier.flat_fee),
        }
        if tier.starts_at is not None:
            row["starts_at"] = str(tier.starts_at)
        rows.append(row)
    return rows
