"""The seller's identity on invoice documents, from the ``SELLER_*`` settings.

Each setting is checked when it is read (``connector.settings``: VAT number and SIREN/SIRET with
python-stdnum, IBAN and BIC with schwifty); here ``seller_identity`` also requires every one a
document needs and refuses with one line per missing setting, so no document is produced
without them. The late-payment rate and the recovery indemnity printed are the ones late charges
use (``LATE_INTEREST_RATE``, ``LATE_PAYMENT_INDEMNITY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from connector.settings import Settings

#: The settings a document cannot do without, and what each one is for.
REQUIRED = (
    ("SELLER_NAME", "the seller's legal name"),
    ("SELLER_STREET", "the seller's street address"),
    ("SELLER_POSTAL_CODE", "the seller's postal code"),
    ("SELLER_CITY", "the seller's city"),
    ("SELLER_COUNTRY", "the seller's country"),
    ("SELLER_COMPANY_ID", "the seller's SIREN/SIRET or registration number"),
    ("SELLER_VAT_ID", "the seller's VAT number"),
    ("SELLER_IBAN", "the account customers pay into"),
    ("SELLER_BIC", "the bank of that account"),
    ("LATE_INTEREST_RATE", "the late-payment penalty rate printed on it"),
    ("SELLER_EARLY_PAYMENT_DISCOUNT", "the early-payment discount terms (or none)"),
)
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


class SellerIdentityError(Exception):
    """Invoice documents cannot be produced: ``problems`` has one line per missing setting."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Seller:
    name: str
    street: str
    postal_code: str
    city: str
    country: str
    company_id: str  # SIREN/SIRET in France
    vat_id: str
    iban: str
    bic: str
    late_payment_rate: Decimal  # percent a year
    recovery_indemnity: Decimal  # euros
    early_payment_discount: str  # "none" or the terms
    legal_form: str = ""
    contact: str = ""
    logo: Path | None = None
    font_dir: Path = Path("/usr/share/fonts/truetype/dejavu")

    @property
    def no_early_payment_discount(self) -> bool:
        return self.early_payment_discount.strip().lower() in ("none", "no", "néant", "aucun", "0")

    @property
    def formatted_iban(self) -> str:
        return " ".join(self.iban[i:i + 4] for i in range(0, len(self.iban), 4))


def documents_wanted(settings: Settings) -> bool:
    """Whether this installation issues documents: once any of its required ``SELLER_*`` settings is set
    (the worker then generates them, or says what is still missing)."""
    return any(getattr(settings, name.lower()) not in (None, "") for name, _ in REQUIRED if name.startswith("SELLER_"))


def seller_identity(settings: Settings) -> Seller:
    """The seller from the settings, or ``SellerIdentityError`` naming each missing setting."""
    problems = [f"{name}: not set; invoice documents need {what}" for name, what in REQUIRED
                if getattr(settings, name.lower()) in (None, "")]
    missing_fonts = [f for f in FONTS if not (settings.document_font_dir / f).is_file()]
    if missing_fonts:
        problems.append(f"DOCUMENT_FONT_DIR: {settings.document_font_dir} has no {', '.join(missing_fonts)} "
                        "(install the Debian package fonts-dejavu-core, or point it to a folder holding them)")
    if problems:
        raise SellerIdentityError(problems)
    return Seller(
        name=settings.seller_name.strip(), street=settings.seller_street.strip(),
        postal_code=settings.seller_postal_code.strip(), city=settings.seller_city.strip(),
        country=settings.seller_country, company_id=settings.seller_company_id, vat_id=settings.seller_vat_id,
        iban=settings.seller_iban, bic=settings.seller_bic, late_payment_rate=settings.late_interest_rate,
        recovery_indemnity=settings.late_payment_indemnity,
        early_payment_discount=settings.seller_early_payment_discount.strip(),
        legal_form=(settings.seller_legal_form or "").strip(), contact=(settings.seller_contact or "").strip(),
        logo=settings.seller_logo, font_dir=settings.document_font_dir,
    )
