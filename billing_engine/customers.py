"""Customers: who is billed, in which currency and timezone, on what terms and tax."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing_engine.catalog import check_id
from billing_engine.errors import InvalidInputError
from billing_engine.money import check_currency, to_decimal
from billing_engine.periods import check_timezone

DEFAULT_PAYMENT_TERMS_DAYS = 30
LANGUAGES = ("en", "fr")


@dataclass(frozen=True, slots=True)
class Address:
    line1: str = ""
    line2: str = ""
    city: str = ""
    postal_code: str = ""
    region: str = ""
    country: str = ""  # ISO 3166-1 alpha-2

    def __post_init__(self) -> None:
        if self.country and (len(self.country) != 2 or not self.country.isalpha() or not self.country.isupper()):
            raise InvalidInputError("billing_address.country", f"{self.country!r} is not an ISO 3166 alpha-2 code")


@dataclass(frozen=True, slots=True)
class Customer:
    """A billed account. ``tax_rate_percent`` is None when the seller's default applies.

    A tax-exempt or reverse-charge customer has ``tax_exempt_reason`` and is taxed at 0 %.
    """

    customer_id: str
    name: str
    currency: str
    timezone: str = "UTC"
    billing_address: Address = Address()
    payment_terms_days: int = DEFAULT_PAYMENT_TERMS_DAYS
    tax_rate_percent: Decimal | None = None
    tax_exempt_reason: str | None = None
    vat_id: str | None = None
    salesforce_account_id: str | None = None
    language: str | None = None  # of its documents: "en" or "fr"; None: French in France, else English

    def __post_init__(self) -> None:
        check_id(self.customer_id, "customer_id")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("name", "a customer needs a name")
        check_currency(self.currency)
        check_timezone(self.timezone)
        if isinstance(self.payment_terms_days, bool) or not isinstance(self.payment_terms_days, int) \
                or not 0 <= self.payment_terms_days <= 365:
            raise InvalidInputError("payment_terms_days", f"must be a whole number of days 0–365, got {self.payment_terms_days!r}")
        if self.tax_rate_percent is not None:
            rate = to_decimal(self.tax_rate_percent, "tax_rate_percent")
            if not 0 <= rate <= 100:
                raise InvalidInputError("tax_rate_percent", f"must be between 0 and 100, got {rate}")
            object.__setattr__(self, "tax_rate_percent", rate)
        if self.language is not None and self.language not in LANGUAGES:
            raise InvalidInputError("language", f"{self.language!r} is not a document language "
                                                f"({', '.join(LANGUAGES)})")
        if self.tax_exempt_reason is not None:
            if not self.tax_exempt_reason.strip():
                raise InvalidInputError("tax_exempt_reason", "say why the customer is exempt (e.g. reverse charge)")
            if self.tax_rate_percent not in (None, Decimal(0)):
                raise InvalidInputError("tax_rate_percent",
                                        f"an exempt customer is taxed at 0 %, not {self.tax_rate_percent}")

    @property
    def is_tax_exempt(self) -> bool:
        return self.tax_exempt_reason is not None

    @property
    def document_language(self) -> str:
        """The language of its invoices: its own, else French for a French address, else English."""
        if self.language:
            return self.language
        return "fr" if self.billing_address.country in ("FR", "MC") else "en"

    def tax_rate(self, default_percent: Decimal) -> Decimal:
        """The rate in percent this customer is taxed at, given the seller's default."""
        if self.is_tax_exempt:
            return Decimal(0)
        return self.tax_rate_percent if self.tax_rate_percent is not None else default_percent
