"""Tax per rate on the invoice (docs/billing-rules.md §14 Tax)."""

from decimal import Decimal as D

import pytest

from billing_engine.errors import InvalidInputError
from billing_engine.tax import TaxGroup, TaxRate, credit_note_tax, tax_breakdown


def test_tax_is_rounded_once_per_rate_not_per_line():
    # 3 × 10.04 at 20 %: per rate 30.12 × 0.20 = 6.024 → 6.02 (EN 16931 breakdown);
    # per line 2.008 → 2.01, × 3 = 6.03. The default is per rate.
    lines = [(D("10.04"), D(20))] * 3
    assert tax_breakdown(lines, "EUR") == (TaxGroup(D(20), D("30.12"), D("6.02")),)
    assert tax_breakdown(lines, "EUR", per_line=True)[0].tax == D("6.03")


def test_each_rate_has_its_own_group():
    # 100 at 20 % → 20.00; 50 at 5.5 % → 2.75; groups in ascending rate.
    groups = tax_breakdown([(D("100.00"), D(20)), (D("50.00"), D("5.5")), (D("0.00"), D(20))], "EUR")
    assert groups == (TaxGroup(D("5.5"), D("50.00"), D("2.75")), TaxGroup(D(20), D("100.00"), D("20.00")))


def test_jpy_tax_rounds_half_up_to_whole_yen():
    # 1,234 × 10 % = 123.4 → 123; 1,235 × 10 % = 123.5 → 124 (half up, not half even).
    assert tax_breakdown([(D(1234), D(10))], "JPY")[0].tax == D(123)
    assert tax_breakdown([(D(1235), D(10))], "JPY")[0].tax == D(124)


def test_negative_nets_give_negative_tax():
    # a credit line of −20.00 at 20 % → −4.00 (−4.00 exactly, not −4.01)
    assert tax_breakdown([(D("-20.00"), D(20))], "EUR")[0].tax == D("-4.00")


def test_exempt_rate_needs_a_reason_and_is_zero():
    rate = TaxRate.exempt("Reverse charge (Art. 196 VAT Directive)")
    assert rate.percent == 0 and "Reverse charge" in rate.reason
    with pytest.raises(InvalidInputError, match="why"):
        TaxRate.exempt("")
    with pytest.raises(InvalidInputError, match="tax_rate"):
        TaxRate(D(120))
    with pytest.raises(InvalidInputError, match="float"):
        TaxRate(0.2)


def test_credit_note_tax_is_on_the_rounded_credited_amount():
    # credited 0.045 → rounded 0.05; tax 10 % of 0.05 = 0.005 → 0.01.
    # (On the unrounded 0.045 it would be 0.0045 → 0.00.)
    assert credit_note_tax(D("0.045"), D(10), "EUR") == (D("0.05"), D("0.01"))
