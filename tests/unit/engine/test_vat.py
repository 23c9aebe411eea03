"""VAT per line: each line's category and rate from its product, the customer's country and VAT
number and the seller's country; tax rounded once per VAT group (category, rate)
(docs/billing-rules.md §14 Tax)."""

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.charges import ChargeLine
from billing_engine.errors import InvalidInputError
from billing_engine.invoicing import assemble_invoice, build_credit_note
from billing_engine.tax import LineTax, ProductTax, TaxCategory, TaxGroup, TaxRule, vat_breakdown

PRODUCTS = {
    "LIC": ProductTax(TaxCategory.STANDARD),
    "BOOK": ProductTax(TaxCategory.REDUCED, D("5.5")),
    "CARE": ProductTax(TaxCategory.REDUCED, D("10")),
    "EXPORTED": ProductTax(TaxCategory.ZERO),
    "TRAINING": ProductTax(TaxCategory.EXEMPT, exemption_reason="Exonération de TVA, art. 261-4-4° du CGI"),
    "DONATION": ProductTax(TaxCategory.OUT_OF_SCOPE),
    "SUBCONTRACT": ProductTax(TaxCategory.REVERSE_CHARGE),
}


def rule(country="FR", vat_id=None, **kw) -> TaxRule:
    return TaxRule(customer_country=country, customer_vat_id=vat_id, standard_percent=kw.pop("percent", D(20)),
                   seller_country=kw.pop("seller", "FR"), products=kw.pop("products", PRODUCTS), **kw)


def charge(key: str, code: str, amount: D, *, discount: D = D(0), currency: str = "EUR") -> ChargeLine:
    return ChargeLine(key, "sub-1", key, code, code.title(), "recurring", date(2026, 5, 1), date(2026, 6, 1), D(1),
                      amount + discount, amount, discount, currency, "", code.title())


def test_a_domestic_customer_pays_each_product_at_its_rate():
    r = rule()
    assert r.line_tax("LIC") == LineTax("S", D(20))
    assert r.line_tax("BOOK") == LineTax("S", D("5.5"))
    assert r.line_tax("EXPORTED") == LineTax("Z", D(0))
    assert r.line_tax("TRAINING") == LineTax("E", D(0), "Exonération de TVA, art. 261-4-4° du CGI")
    assert r.line_tax("DONATION") == LineTax("O", D(0), "Not subject to VAT")


def test_a_business_in_another_eu_country_is_reverse_charged():
    r = rule("DE", "DE136695976")
    for code in ("LIC", "BOOK", "EXPORTED"):
        assert r.line_tax(code) == LineTax("AE", D(0), "Reverse charge")
    assert r.line_tax("LIC").reason_code == "VATEX-EU-AE"
    # A consumer there (no VAT number) pays as at home.
    assert rule("DE").line_tax("LIC") == LineTax("S", D(20))


def test_a_customer_outside_the_eu_is_an_export():
    assert rule("US").line_tax("LIC") == LineTax("G", D(0), "Export outside the EU")
    assert rule("CH", "CHE-123.456.788").line_tax("BOOK").reason_code == "VATEX-EU-G"
    # Monaco is in France's VAT area: domestic.
    assert rule("MC").line_tax("LIC") == LineTax("S", D(20))


def test_reverse_charge_products_need_the_buyers_vat_number():
    assert rule(vat_id="FR40303265045").line_tax("SUBCONTRACT") == LineTax("AE", D(0), "Reverse charge")
    with pytest.raises(InvalidInputError, match="customer's VAT number"):
        rule().line_tax("SUBCONTRACT")


def test_a_french_invoice_needs_every_products_category():
    with pytest.raises(InvalidInputError) as err:
        rule().line_tax("UNKNOWN")
    assert str(err.value) == ("product UNKNOWN: has no tax category; a French invoice needs the VAT category of "
                              "every line (Tax_Category__c on the product)")
    # Without a French seller, an uncategorised product is at the customer's rate, as always.
    assert rule(seller=None).line_tax("UNKNOWN") == LineTax("S", D(20))
    assert rule(seller=None, percent=D(0)).line_tax("UNKNOWN") == LineTax("Z", D(0))


def test_exempt_products_need_a_reason_and_reduced_ones_a_rate():
    with pytest.raises(InvalidInputError, match="no exemption reason"):
        rule(products={"X": ProductTax(TaxCategory.EXEMPT)}).line_tax("X")
    with pytest.raises(InvalidInputError, match="no rate"):
        rule(products={"X": ProductTax(TaxCategory.REDUCED)}).line_tax("X")


def test_a_customer_exempt_by_its_own_reason_is_exempt_at_home():
    r = rule(customer_exempt_reason="TVA non applicable, art. 293 B du CGI")
    assert r.line_tax("LIC") == LineTax("E", D(0), "TVA non applicable, art. 293 B du CGI")


def test_french_invoice_with_20_and_5_5_and_a_discount_rounds_once_per_group():
    # LIC 3 × 10.04 (one line each) at 20 %: 30.12 → 6.024 → 6.02; BOOK 100.00 − 10.00 discount at 5.5 %:
    # 90.00 → 4.95. Total 120.12 + 10.97 = 131.09.
    charges = [charge("a", "LIC", D("10.04")), charge("b", "LIC", D("10.04")), charge("c", "LIC", D("10.04")),
               charge("d", "BOOK", D("90.00"), discount=D("10.00"))]
    draft = assemble_invoice(charges, currency="EUR", line_tax=lambda c: rule().line_tax(c.product_code))
    assert draft.tax_groups == (TaxGroup(D("5.5"), D("90.00"), D("4.95"), "S"),
                                TaxGroup(D(20), D("30.12"), D("6.02"), "S"))
    t = draft.totals
    assert (t.subtotal, t.discount, t.net, t.tax, t.total) == (D("130.12"), D("10.00"), D("120.12"), D("10.97"),
                                                               D("131.09"))
    assert [ln.tax_percent for ln in draft.lines] == [D(20), D(20), D(20), D("5.5")]


def test_zero_rated_and_exempt_lines_are_two_groups():
    groups = vat_breakdown([(D("10.00"), LineTax("Z", D(0))), (D("5.00"), LineTax("E", D(0), "art. 261")),
                            (D("1.00"), LineTax("Z", D(0)))], "EUR")
    assert groups == (TaxGroup(D(0), D("11.00"), D("0.00"), "Z"), TaxGroup(D(0), D("5.00"), D("0.00"), "E",
                                                                              "art. 261"))


def test_out_of_scope_lines_are_never_mixed_with_others():
    with pytest.raises(InvalidInputError, match="BR-O-11"):
        assemble_invoice([charge("a", "LIC", D(10)), charge("b", "DONATION", D(5))], currency="EUR",
                         line_tax=lambda c: rule().line_tax(c.product_code))


def test_a_credit_note_keeps_each_credited_lines_category_and_reason():
    draft = assemble_invoice([charge("a", "LIC", D("100.00")), charge("b", "TRAINING", D("50.00"))],
                             currency="EUR", line_tax=lambda c: rule().line_tax(c.product_code))
    lic, training = draft.lines
    note = build_credit_note("refund", "EUR", [(lic, D("33.333")), (training, D("50.00"))])
    assert [(ln.net, ln.tax_category, ln.tax_reason) for ln in note.lines] == [
        (D("33.33"), "S", ""), (D("50.00"), "E", "Exonération de TVA, art. 261-4-4° du CGI")]
    assert note.tax_groups == (TaxGroup(D(0), D("50.00"), D("0.00"), "E", "Exonération de TVA, art. 261-4-4° du CGI"),
                               TaxGroup(D(20), D("33.33"), D("6.67"), "S"))
    assert note.total == D("90.00")


def test_one_rate_for_the_customer_bills_as_before():
    from billing_engine.tax import TaxRate

    draft = assemble_invoice([charge("a", "X", D("100.00")), charge("b", "Y", D("49.99"))], currency="EUR",
                             tax_rate=TaxRate(D(20)))
    assert (draft.totals.tax, draft.totals.total, draft.tax_percent) == (D("30.00"), D("179.99"), D(20))
    assert [(g.category, g.percent, g.net) for g in draft.tax_groups] == [("S", D(20), D("149.99"))]
    exempt = assemble_invoice([charge("a", "X", D("100.00"))], currency="EUR",
                              tax_rate=TaxRate.exempt("Reverse charge (Art. 196 VAT Directive)"))
    assert exempt.tax_reason == "Reverse charge (Art. 196 VAT Directive)"
    assert exempt.tax_groups[0].category == "E"
