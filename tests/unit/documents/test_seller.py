"""The seller's identity: every setting checked when set, every required one present before a
document is produced, one line per problem."""

from decimal import Decimal

import pytest

from connector.documents.seller import SellerIdentityError, seller_identity
from connector.settings import SettingsError, load_settings

SELLER = {
    "SELLER_NAME": "Billsync Demo SAS", "SELLER_STREET": "10 rue de la Paix", "SELLER_POSTAL_CODE": "75002",
    "SELLER_CITY": "Paris", "SELLER_COUNTRY": "FR", "SELLER_COMPANY_ID": "303 265 045",
    "SELLER_VAT_ID": "FR 40 303 265 045", "SELLER_IBAN": "FR76 3000 6000 0112 3456 7890 189",
    "SELLER_BIC": "AGRIFRPP", "LATE_INTEREST_RATE": "12.15", "SELLER_EARLY_PAYMENT_DISCOUNT": "none",
}


def test_a_complete_identity_is_read_in_its_compact_forms():
    seller = seller_identity(load_settings(SELLER))
    assert (seller.company_id, seller.vat_id, seller.iban, seller.bic) == (
        "303265045", "FR40303265045", "FR7630006000011234567890189", "AGRIFRPP")
    assert seller.recovery_indemnity == Decimal("40")
    assert seller.formatted_iban == "FR76 3000 6000 0112 3456 7890 189"
    assert seller.no_early_payment_discount


def test_each_missing_setting_is_one_line():
    with pytest.raises(SellerIdentityError) as err:
        seller_identity(load_settings({k: v for k, v in SELLER.items()
                                       if k not in ("SELLER_IBAN", "SELLER_VAT_ID")}))
    assert err.value.problems == [
        "SELLER_VAT_ID: not set; invoice documents need the seller's VAT number",
        "SELLER_IBAN: not set; invoice documents need the account customers pay into",
    ]


def test_nothing_set_names_every_required_setting():
    with pytest.raises(SellerIdentityError) as err:
        seller_identity(load_settings({}))
    assert [p.split(":")[0] for p in err.value.problems] == [
        "SELLER_NAME", "SELLER_STREET", "SELLER_POSTAL_CODE", "SELLER_CITY", "SELLER_COUNTRY", "SELLER_COMPANY_ID",
        "SELLER_VAT_ID", "SELLER_IBAN", "SELLER_BIC", "LATE_INTEREST_RATE", "SELLER_EARLY_PAYMENT_DISCOUNT"]


def test_missing_fonts_are_named(tmp_path):
    with pytest.raises(SellerIdentityError) as err:
        seller_identity(load_settings({**SELLER, "DOCUMENT_FONT_DIR": str(tmp_path)}))
    assert err.value.problems == [
        f"DOCUMENT_FONT_DIR: {tmp_path} has no DejaVuSans.ttf, DejaVuSans-Bold.ttf (install the Debian package "
        "fonts-dejavu-core, or point it to a folder holding them)"]


def test_invalid_values_stop_the_process_with_one_line_each(tmp_path):
    not_an_image = tmp_path / "logo.png"
    not_an_image.write_text("hello")
    with pytest.raises(SettingsError) as err:
        load_settings({**SELLER, "SELLER_VAT_ID": "FR40303265046", "SELLER_IBAN": "FR7630006000011234567890188",
                       "SELLER_BIC": "AGRIFRP", "SELLER_COMPANY_ID": "303265046", "SELLER_COUNTRY": "France",
                       "LATE_INTEREST_RATE": "ten", "LATE_PAYMENT_INDEMNITY": "-40",
                       "SELLER_LOGO": str(not_an_image)})
    names = [p.split(":")[0] for p in err.value.problems]
    assert names == ["LATE_INTEREST_RATE", "LATE_PAYMENT_INDEMNITY", "SELLER_COUNTRY", "SELLER_COMPANY_ID",
                     "SELLER_VAT_ID", "SELLER_IBAN", "SELLER_BIC", "SELLER_LOGO"]
    assert "checksum" in err.value.problems[4]


def test_the_vat_number_must_match_the_country_and_the_siren():
    with pytest.raises(SettingsError) as err:
        load_settings({**SELLER, "SELLER_VAT_ID": "DE136695976"})
    assert err.value.problems == ["SELLER_VAT_ID: DE136695976 is not a VAT number of SELLER_COUNTRY FR"]
    with pytest.raises(SettingsError) as err:
        load_settings({**SELLER, "SELLER_COMPANY_ID": "552100554"})
    assert err.value.problems == ["SELLER_VAT_ID: FR40303265045 is not the VAT number of SIREN 552100554"]
