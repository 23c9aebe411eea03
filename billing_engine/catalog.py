"""The catalog: products and their prices.

A product has a stable ``code`` (what mappings and percent_of refer to) and an
optional Salesforce Product2 id. A price belongs to one product, one currency and
one interval, has a charge type (recurring in advance, usage in arrears, one-time)
and an explicit pricing model (there is no default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from billing_engine.errors import InvalidInputError
from billing_engine.money import check_currency, check_unit_price, to_decimal
from billing_engine.periods import Interval
from billing_engine.pricing import PriceTerms, Tier, get_model, make_tiers
from billing_engine.tax import ProductTax

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_id(value: object, field: str) -> str:
    """Engine identifiers travel to Salesforce and into charge keys: letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInputError(field, f"{value!r} is not a valid id (1–64 letters, digits, '_', '.', '-')")
    return value


class ChargeType(StrEnum):
    RECURRING = "recurring"  # billed in advance, at the start of each period
    USAGE = "usage"  # billed in arrears, at the end of each period
    ONE_TIME = "one_time"  # billed on the first invoice

    @classmethod
    def parse(cls, value: Any, field: str = "charge_type") -> ChargeType:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(
                field, f"unknown charge type {value!r}; use one of {', '.join(c.value for c in cls)}"
            ) from None


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    code: str
    name: str
    salesforce_product_id: str | None = None
    active: bool = True
    tax: ProductTax = ProductTax()  # its VAT category (docs/billing-rules.md §14 Tax)
    self_service: bool = False  # offered on the self-service pages (docs/self-service.md)

    def __post_init__(self) -> None:
        check_id(self.product_id, "product_id")
        if not isinstance(self.code, str) or not _CODE.match(self.code):
            raise InvalidInputError("code", f"{self.code!r} is not a valid product code (letters, digits, '_', '.', '-')")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("name", "a product needs a name")


@dataclass(frozen=True, slots=True)
class Price:
    """One way to sell a product: currency, interval, charge type and pricing terms."""

    price_id: str
    product: Product
    currency: str
    interval: Interval | None  # None only for one-time prices
    charge_type: ChargeType
    terms: PriceTerms

    def __post_init__(self) -> None:
        check_id(self.price_id, "price_id")
        check_currency(self.currency)
        if self.charge_type is ChargeType.ONE_TIME:
            if self.interval is not None:
                raise InvalidInputError("interval", "a one-time price has no interval")
        elif self.interval is None:
            raise InvalidInputError("interval", f"a {self.charge_type.value} price needs an interval")
        get_model(self.terms.model).validate(self.terms)
        if self.terms.model == "percent_of" and self.charge_type is not ChargeType.RECURRING:
            raise InvalidInputError("charge_type", "a percent_of price must be recurring")

    @property
    def model(self) -> str:
        return self.terms.model


def make_product(product_id: str, code: str, name: str, salesforce_product_id: str | None = None,
                 active: bool = True) -> Product:
    return Product(product_id, code, name, salesforce_product_id, active)


def make_price(
    price_id: str,
    product: Product,
    *,
    currency: str,
    model: str,
    charge_type: str = "recurring",
    interval: str | None = "month",
    unit_price: object = None,
    tiers: Sequence[Mapping[str, object]] | Sequence[Tier] = (),
    package_size: object = None,
    included_units: object = None,
    overage_unit_price: object = None,
    percent: object = None,
    covered_product_codes: Sequence[str] = (),
) -> Price:
    """A validated price from plain input (decimal strings, ints or Decimals; never floats)."""
    kind = ChargeType.parse(charge_type)
    parsed_tiers: tuple[Tier, ...] = (tuple(tiers) if all(isinstance(t, Tier) for t in tiers)  # type: ignore[arg-type]
                                      else make_tiers(tiers))  # type: ignore[arg-type]
    terms = PriceTerms(
        model=get_model(model).name,
        unit_price=None if unit_price is None else check_unit_price(unit_price, "unit_price"),
        tiers=parsed_tiers,
        package_size=None if package_size is None else to_decimal(package_size, "package_size"),
        included_units=None if included_units is None else to_decimal(included_units, "included_units"),
        overage_unit_price=None if overage_unit_price is None else check_unit_price(overage_unit_price,
                                                                                     "overage_unit_price"),
        percent=None if percent is None else to_decimal(percent, "percent"),
        covered_product_codes=tuple(covered_product_codes),
    )
    return Price(
        price_id=price_id,
        product=product,
        currency=currency,
        interval=None if interval is None or kind is ChargeType.ONE_TIME else Interval.parse(interval),
        charge_type=kind,
        terms=terms,
    )
