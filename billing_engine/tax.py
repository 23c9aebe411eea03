"""Tax on invoices and credit notes (pure; standard library only).

Rules (docs/billing-rules.md §14 Tax):
- prices exclude tax; tax is computed **per VAT group on the invoice**, a group being the pair
  (VAT category, rate): sum the net amounts of the group's lines, multiply, round once, half up
  (EN 16931 VAT breakdown, BR-CO-17). Per-line rounding is a setting (``per_line=True``);
- each line's category and rate come from its product's tax category, the customer's country
  and VAT number and the seller's country (``TaxRule``): domestic sales at the product's rate,
  intra-EU business sales reverse-charged, sales outside the EU exported;
- a reverse-charge or exempt line is taxed at 0 % and the invoice says why;
- a credit note recomputes tax on the *rounded* credited amount, per group of the lines it credits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money, to_decimal

HUNDRED = Decimal(100)
ZERO = Decimal(0)

#: The EU member states (ISO 3166 codes) for VAT: a business customer in another one is reverse-charged.
EU_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"})
#: Territories inside another state's VAT area: Monaco is in France's.
VAT_AREA = {"MC": "FR"}


class TaxCategory(StrEnum):
    """A product's tax category, as the catalog (``Product2.Tax_Category__c``) gives it."""

    STANDARD = "standard"  # the standard rate of the seller's country (or the customer's own rate)
    REDUCED = "reduced"  # the product's own rate (5.5 %, 10 % in France)
    ZERO = "zero"  # zero-rated
    EXEMPT = "exempt"  # exempt, with the legal reason printed on the invoice
    REVERSE_CHARGE = "reverse_charge"  # the buyer accounts for the VAT, whatever the countries
    OUT_OF_SCOPE = "out_of_scope"  # not subject to VAT

    @classmethod
    def parse(cls, value: object, field_name: str = "tax_category") -> TaxCategory:
        try:
            return cls(str(value))
        except ValueError:
            raise InvalidInputError(field_name, f"unknown tax category {value!r}; use one of "
                                                f"{', '.join(c.value for c in cls)}") from None


#: Lines the engine makes without a product: a minimum commitment's true-up is the service it
#: completes, at the standard rate (docs/billing-rules.md §8 Minimum commitments, §14 Tax).
ENGINE_LINES: dict[str, ProductTax] = {}

#: EN 16931 VAT category codes (UNTDID 5305, BT-118/BT-151) and their exemption reason codes (VATEX, BT-121).
STANDARD_RATED, ZERO_RATED, EXEMPT, REVERSE_CHARGE, EXPORT, OUT_OF_SCOPE = "S", "Z", "E", "AE", "G", "O"
REASON_CODES = {REVERSE_CHARGE: "VATEX-EU-AE", EXPORT: "VATEX-EU-G", OUT_OF_SCOPE: "VATEX-EU-O"}
#: The reason printed when the category itself is the reason (the document translates it).
DEFAULT_REASONS = {REVERSE_CHARGE: "Reverse charge", EXPORT: "Export outside the EU",
                   OUT_OF_SCOPE: "Not subject to VAT"}
_CODE_ORDER = {STANDARD_RATED: 0, ZERO_RATED: 1, EXEMPT: 2, REVERSE_CHARGE: 3, EXPORT: 4, OUT_OF_SCOPE: 5}


@dataclass(frozen=True, slots=True)
class ProductTax:
    """What the catalog says about a product's VAT: its category, its own rate (a reduced rate) and,
    for an exempt product, the legal reason."""

    category: TaxCategory | None = None  # None: the product has none (refused on a French invoice)
    percent: Decimal | None = None
    exemption_reason: str = ""


ENGINE_LINES["minimum_commitment"] = ProductTax(TaxCategory.STANDARD)


@dataclass(frozen=True, slots=True)
class LineTax:
    """The VAT of one invoice line: EN 16931 category code, rate in percent and, for a line taxed at
    0 % by law, the reason (BT-120) and its code (BT-121)."""

    code: str
    percent: Decimal
    reason: str = ""

    @property
    def reason_code(self) -> str:
        return REASON_CODES.get(self.code, "")

    @classmethod
    def of(cls, percent: Decimal, reason: str = "", code: str = "") -> LineTax:
        """A line's tax from a stored rate (and category when known): a positive rate is standard
        rated, 0 % with a reason exempt, 0 % without one zero rated."""
        if code:
            return cls(code, percent, reason)
        if percent > 0:
            return cls(STANDARD_RATED, percent)
        return cls(EXEMPT, percent, reason) if reason else cls(ZERO_RATED, percent)

    @property
    def key(self) -> tuple[str, Decimal]:
        return self.code, self.percent.normalize()


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
    """One row of the VAT breakdown: the lines of one VAT category at one rate (``category`` is the
    EN 16931 code, '' from ``tax_breakdown``, which groups by rate alone)."""

    percent: Decimal
    net: Decimal
    tax: Decimal
    category: str = ""
    reason: str = ""

    @property
    def reason_code(self) -> str:
        return REASON_CODES.get(self.category, "")


@dataclass(frozen=True)
class TaxRule:
    """How one customer's lines are taxed (docs/billing-rules.md §14 Tax), in this order:

    1. an out-of-scope product: category O; an exempt product: E with the product's reason;
    2. the seller and the customer in different countries: outside the EU, an export (G);
       inside it, to a business with a VAT number, reverse charge (AE); to a consumer, as at home;
    3. a customer exempt by its own reason: E with that reason;
    4. a reverse-charge product: AE (the customer's VAT number is required);
    5. a zero-rated product: Z; a reduced one: S at its own rate; a standard one (or, outside
       France, one without a category): S at the customer's rate, else the seller's default
       (0 % is zero rated).

    ``seller_country`` None keeps the single-rate behaviour (no location rule, no category required).
    ``products``: each product code's ``ProductTax`` (the bill run fills it as it reads the catalog).
    """

    customer_country: str = ""
    customer_vat_id: str | None = None
    standard_percent: Decimal = ZERO
    customer_exempt_reason: str | None = None
    seller_country: str | None = None
    products: Mapping[str, ProductTax] = field(default_factory=dict)

    def _location(self) -> str:
        seller = VAT_AREA.get(self.seller_country or "", self.seller_country or "")
        customer = VAT_AREA.get(self.customer_country, self.customer_country)
        if not seller or not customer or seller == customer:
            return "domestic"
        if customer not in EU_COUNTRIES:
            return "export"
        return "intra_eu_business" if self.customer_vat_id else "domestic"

    def line_tax(self, product_code: str) -> LineTax:
        product = self.products.get(product_code) or ENGINE_LINES.get(product_code) or ProductTax()
        category = product.category
        if category is TaxCategory.OUT_OF_SCOPE:
            return LineTax(OUT_OF_SCOPE, ZERO, product.exemption_reason or DEFAULT_REASONS[OUT_OF_SCOPE])
        if category is TaxCategory.EXEMPT:
            if not product.exemption_reason:
                raise InvalidInputError(f"product {product_code}",
                                        "is exempt from VAT but has no exemption reason to print on the invoice")
            return LineTax(EXEMPT, ZERO, product.exemption_reason)
        if category is None and self.seller_country == "FR":
            raise InvalidInputError(f"product {product_code}",
                                    "has no tax category; a French invoice needs the VAT category of every "
                                    "line (Tax_Category__c on the product)")
        location = self._location()
        if location == "export":
            return LineTax(EXPORT, ZERO, DEFAULT_REASONS[EXPORT])
        if location == "intra_eu_business":
            return LineTax(REVERSE_CHARGE, ZERO, DEFAULT_REASONS[REVERSE_CHARGE])
        if self.customer_exempt_reason:
            return LineTax(EXEMPT, ZERO, self.customer_exempt_reason)
        if category is TaxCategory.REVERSE_CHARGE:
            if not self.customer_vat_id:
                raise InvalidInputError(f"product {product_code}",
                                        "is reverse-charged, which needs the customer's VAT number")
            return LineTax(REVERSE_CHARGE, ZERO, DEFAULT_REASONS[REVERSE_CHARGE])
        if category is TaxCategory.ZERO:
            return LineTax(ZERO_RATED, ZERO)
        if category is TaxCategory.REDUCED:
            if product.percent is None or product.percent <= 0:
                raise InvalidInputError(f"product {product_code}", "has a reduced tax category but no rate")
            return LineTax(STANDARD_RATED, product.percent)
        return LineTax.of(self.standard_percent)


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


def vat_breakdown(lines: Iterable[tuple[Decimal, LineTax]], currency: str, *,
                  per_line: bool = False) -> tuple[TaxGroup, ...]:
    """VAT breakdown of ``(net amount, line tax)`` pairs: one group per (category, rate), by ascending
    rate then category. Per group ``tax = round(Σ net × rate)`` (``Σ round(net × rate)`` with
    ``per_line``); a group's reason is its lines' reasons, each once. Nets must be rounded."""
    nets: dict[tuple[str, Decimal], Decimal] = {}
    taxes: dict[tuple[str, Decimal], Decimal] = {}
    reasons: dict[tuple[str, Decimal], list[str]] = {}
    for net, line in lines:
        key = line.key
        nets[key] = nets.get(key, ZERO) + net
        if line.reason and line.reason not in reasons.setdefault(key, []):
            reasons[key].append(line.reason)
        if per_line:
            taxes[key] = taxes.get(key, ZERO) + tax_for(net, line.percent, currency)
    groups = []
    for key in sorted(nets, key=lambda k: (k[1], _CODE_ORDER.get(k[0], 9), k[0])):
        code, percent = key
        tax = taxes[key] if per_line else tax_for(nets[key], percent, currency)
        groups.append(TaxGroup(percent=percent, net=nets[key], tax=tax, category=code,
                               reason="; ".join(reasons.get(key, ()))))
    return tuple(groups)


def credit_note_tax(credited: Decimal, percent: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """``(rounded credited net, tax on it)``: the credited amount is rounded first, then taxed."""
    net = round_money(credited, currency)
    return net, tax_for(net, percent, currency)
