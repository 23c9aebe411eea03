"""Invoice assembly, discounts, credit notes, numbering and states (docs/billing-rules.md §13 Invoices,
§7 Discounts, §15 Credit notes and customer credit)."""

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.charges import ChargeLine
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.invoicing import (
    assemble_invoice,
    build_credit_note,
    check_transition,
    due_on,
    format_number,
    spread_discount,
    take_remaining_tax,
)
from billing_engine.tax import TaxGroup, TaxRate


def Charge(key: str, amount: D, kind: str = "recurring", *, discount: D = D(0),
           currency: str = "EUR", starts_on: date = date(2026, 5, 1),
           ends_before: date = date(2026, 6, 1)) -> ChargeLine:
    """A charge line as ``billing_engine.charges.charges_due`` makes them."""
    return ChargeLine(key, "sub-1", "item-1", "P", "Product", kind, starts_on, ends_before, D(1), D(0), amount,
                      discount, currency, "", "")


NO_TAX = TaxRate(D(0))
VAT20 = TaxRate(D(20))


def test_chargebee_downgrade_credit_reduces_the_next_invoice_from_30_to_20():
    # docs/billing-rules.md §3 Proration: credit −20 (60 × 10/30), charge +10 (30 × 10/30), May recurring 30.
    # 30 − 20 + 10 = 20; the two proration lines stay visible.
    draft = assemble_invoice([Charge("may", D(30)), Charge("cr", D(-20), "proration_credit"),
                              Charge("ch", D(10), "proration_charge")], currency="EUR",
                             tax_rate=NO_TAX)
    assert [ln.net for ln in draft.lines] == [D(30), D(-20), D(10)]
    assert draft.totals.total == D(20) and draft.credit_note is None and draft.amount_due == D(20)


def test_minimum_commitment_true_up_line_brings_the_subtotal_to_the_minimum():
    # Lago: usage 800, minimum 1,000 → true-up 200; subtotal 1,000; 20 % tax 200 → total 1,200.
    draft = assemble_invoice([Charge("u", D("800.00"), "usage"), Charge("m", D("200.00"), "minimum_true_up")],
                             currency="EUR", tax_rate=VAT20)
    assert (draft.totals.subtotal, draft.totals.tax, draft.totals.total) == (D("1000.00"), D("200.00"),
                                                                             D("1200.00"))


def test_totals_show_line_discounts_and_tax_on_the_net():
    # gross 120 with 20 discount (net 100) + 50 → subtotal 170, discount 20, net 150, 20 % tax 30, total 180
    draft = assemble_invoice([Charge("a", D("100.00"), discount=D("20.00")), Charge("b", D("50.00"))],
                             currency="EUR", tax_rate=VAT20)
    t = draft.totals
    assert (t.subtotal, t.discount, t.net, t.tax, t.total) == (D("170.00"), D("20.00"), D("150.00"),
                                                               D("30.00"), D("180.00"))


def test_invoice_discount_is_spread_in_proportion_and_taxed_after():
    # 15.00 over 100 / 50 → 10.00 / 5.00; nets 90 / 45 = 135; tax 20 % = 27.00; total 162.00
    draft = assemble_invoice([Charge("a", D("100.00")), Charge("b", D("50.00"))], currency="EUR",
                             tax_rate=VAT20, invoice_discount=D("15.00"))
    assert [ln.invoice_discount for ln in draft.lines] == [D("10.00"), D("5.00")]
    assert (draft.totals.discount, draft.totals.tax, draft.totals.total) == (D("15.00"), D("27.00"), D("162.00"))


def test_discount_rounding_remainder_goes_to_the_largest_line():
    # 10.00 over 30 / 30 / 40 → 3.00 / 3.00 / 4.00 exactly
    assert spread_discount([D(30), D(30), D(40)], D("10.00"), "EUR") == (D("3.00"), D("3.00"), D("4.00"))
    # 10.00 over 10 / 10 / 10 → 3.33 each = 9.99; the cent goes to the (first) largest line
    assert spread_discount([D(10), D(10), D(10)], D("10.00"), "EUR") == (D("3.34"), D("3.33"), D("3.33"))
    # 1.00 over 1 / 2 / 97: 0.01 / 0.02 / 0.97 — sums to 1.00
    shares = spread_discount([D(1), D(2), D(97)], D("1.00"), "EUR")
    assert shares == (D("0.01"), D("0.02"), D("0.97")) and sum(shares) == D("1.00")


def test_discount_never_takes_a_line_below_zero_and_skips_credits():
    # 50.00 on lines 30 + 10 is capped at 40.00: shares 30 / 10, nets 0 / 0
    assert spread_discount([D(30), D(10)], D("50.00"), "EUR") == (D("30.00"), D("10.00"))
    # a credit line takes no share: 10.00 on 100 / −20 → 10.00 / 0
    assert spread_discount([D(100), D(-20)], D("10.00"), "EUR") == (D("10.00"), D(0))


def test_credits_exceeding_charges_become_a_credit_note_and_the_total_is_never_negative():
    # charge 30.00, proration credit −60.00, 20 % VAT.
    # invoice: 30.00 + 6.00 tax = 36.00; credit note: 60.00 + 12.00 = 72.00;
    # 36.00 of it settles the invoice, 36.00 becomes customer credit, nothing due.
    draft = assemble_invoice([Charge("c", D("30.00")), Charge("cr", D("-60.00"), "proration_credit")],
                             currency="EUR", tax_rate=VAT20)
    assert draft.totals.total == D("36.00")
    assert [ln.charge_key for ln in draft.lines] == ["c"]
    cn = draft.credit_note
    assert (cn.net, cn.tax, cn.total) == (D("60.00"), D("12.00"), D("72.00"))
    assert [ln.charge_key for ln in cn.lines] == ["cr"]
    assert (draft.settled_by_credit_note, draft.credit_created, draft.amount_due) == (D("36.00"), D("36.00"), 0)


def test_the_credit_that_completes_a_rate_takes_the_tax_left_there():
    # Three lines of 10.02 at 20 %: the invoice's tax is 30.06 × 20 % = 6.012 → 6.01; a credit note
    # per line is 10.02 + 2.00 (2.004). After two, 4.00 is credited: the third takes 2.01.
    draft = assemble_invoice([Charge(f"c{n}", D("10.02")) for n in range(3)], currency="EUR", tax_rate=VAT20)
    assert (draft.totals.net, draft.totals.tax) == (D("30.06"), D("6.01"))
    [first, second, third] = [build_credit_note("not delivered", "EUR", [(ln, ln.net)]) for ln in draft.lines]
    assert [n.tax for n in (first, second, third)] == [D("2.00")] * 3
    assert take_remaining_tax(first, draft.tax_groups, []) == first
    assert take_remaining_tax(second, draft.tax_groups, first.tax_groups) == second
    last = take_remaining_tax(third, draft.tax_groups, first.tax_groups + second.tax_groups)
    assert (last.net, last.tax, last.total) == (D("10.02"), D("2.01"), D("12.03"))
    assert last.tax_groups == (TaxGroup(D(20), D("10.02"), D("2.01"), "S"),) and last.lines == third.lines
    assert first.total + second.total + last.total == draft.totals.total == D("36.07")


def test_only_the_rates_a_credit_completes_take_their_remaining_tax():
    # 20 %: 10.04 + 10.04 (tax 4.016 → 4.02); 5.5 %: 9.99 (0.54945 → 0.55). Line 1 was credited alone
    # (10.04 + 2.01). Crediting line 2 and 5.00 of line 3 completes 20 % (4.02 − 2.01 left: 2.01) and
    # leaves 5.5 % open: its tax is the credit's own, 5.00 × 5.5 % = 0.275 → 0.28.
    lines = [*assemble_invoice([Charge("a", D("10.04")), Charge("b", D("10.04"))], currency="EUR",
                               tax_rate=VAT20).lines,
             *assemble_invoice([Charge("c", D("9.99"))], currency="EUR", tax_rate=TaxRate(D("5.5"))).lines]
    invoiced = (TaxGroup(D("5.5"), D("9.99"), D("0.55")), TaxGroup(D(20), D("20.08"), D("4.02")))
    earlier = build_credit_note("x", "EUR", [(lines[0], lines[0].net)])
    note = take_remaining_tax(build_credit_note("y", "EUR", [(lines[1], lines[1].net), (lines[2], D("5.00"))]),
                              invoiced, earlier.tax_groups)
    assert [(g.percent, g.net, g.tax) for g in note.tax_groups] == [(D("5.5"), D("5.00"), D("0.28")),
                                                                     (D(20), D("10.04"), D("2.01"))]
    # Had line 1 been credited with a cent less tax, the credit completing 20 % takes that cent; the
    # one completing 5.5 % takes what is left there (0.55, the same as its own 9.99 × 5.5 %).
    cheaper = TaxGroup(D(20), D("10.04"), D("2.00"))
    note = take_remaining_tax(build_credit_note("y", "EUR", [(lines[1], lines[1].net), (lines[2], D("9.99"))]),
                              invoiced, (cheaper,))
    assert [(g.percent, g.tax) for g in note.tax_groups] == [(D("5.5"), D("0.55")), (D(20), D("2.02"))]
    assert (note.net, note.tax, note.total) == (D("20.03"), D("2.57"), D("22.60"))


def test_customer_credit_is_applied_before_finalization():
    # total 120.00, credit 50.00 → due 70.00; credit 500.00 → applies 120.00, due 0
    lines = [Charge("a", D("100.00"))]
    assert assemble_invoice(lines, currency="EUR", tax_rate=VAT20, available_credit=D("50.00")).amount_due == D(
        "70.00")
    big = assemble_invoice(lines, currency="EUR", tax_rate=VAT20, available_credit=D("500.00"))
    assert (big.credit_applied, big.amount_due) == (D("120.00"), D("0.00"))


def test_jpy_invoice_has_whole_yen_tax():
    # 1,000 + 333 = 1,333 × 10 % = 133.3 → 133; total 1,466
    draft = assemble_invoice([Charge("a", D(1000), currency="JPY"), Charge("b", D(333), currency="JPY")],
                             currency="JPY", tax_rate=TaxRate(D(10)))
    assert (draft.totals.tax, draft.totals.total) == (D(133), D(1466))


def test_bad_charges_are_refused():
    with pytest.raises(CurrencyMismatchError):
        assemble_invoice([Charge("a", D(1), currency="USD")], currency="EUR", tax_rate=NO_TAX)
    with pytest.raises(InvalidInputError, match="twice"):
        assemble_invoice([Charge("a", D(1)), Charge("a", D(2))], currency="EUR", tax_rate=NO_TAX)
    with pytest.raises(InvalidInputError, match="not rounded"):
        assemble_invoice([Charge("a", D("1.005"))], currency="EUR", tax_rate=NO_TAX)


def test_numbers_and_due_dates():
    assert format_number("INV-{year}-{seq:06d}", 2026, 1) == "INV-2026-000001"
    assert format_number("CN-{year}-{seq:06d}", 2026, 12) == "CN-2026-000012"
    # net 30: Jan 31 + 30 days = Mar 2 (2026 is not a leap year)
    assert due_on(date(2026, 1, 31)) == date(2026, 3, 2)
    assert due_on(date(2026, 1, 31), 0) == date(2026, 1, 31)


def test_state_machine():
    assert check_transition("draft", "open") == "open"
    assert check_transition("open", "void") == "void"
    for current, new in [("draft", "paid"), ("void", "open"), ("open", "draft"), ("paid", "void")]:
        with pytest.raises(ConflictError):
            check_transition(current, new)


def test_recurring_periods_counts_one_subscriptions_periods_not_its_lines():
    from billing_engine.invoicing import recurring_periods

    def line(sub, item, month, kind="recurring"):
        start = date(2026, month, 1)
        return ChargeLine(f"{sub}:{item}:{start}:{kind}", sub, item, "P", "P", kind, start,
                          date(2026, month + 1, 1), D(1), D(10), D(10), D(0), "EUR", "", "P")

    assert recurring_periods([]) == 0
    # Three items in the same month are one period; usage and prorations are not recurring periods.
    assert recurring_periods([line("s1", i, 1) for i in "abc"] + [line("s1", "u", 2, "usage")]) == 1
    # Per subscription: two subscriptions of 2 and 4 months make 4, not 6.
    lines = [line("s1", "a", m) for m in (1, 2)] + [line("s2", "a", m) for m in (1, 2, 3, 4)]
    assert recurring_periods(lines) == 4
