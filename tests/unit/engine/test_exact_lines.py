"""Every charge line is exact: gross − discount = net, the gross is price × quantity × days
(rounded once), and a credit carries its discount with the credit's sign, so an invoice's
subtotal and discount read right (docs/billing-rules.md §3 Proration, §7 Discounts,
§13 Invoices)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import KINDS, ChargeLine, charges_due
from billing_engine.invoicing import assemble_invoice
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.tax import TaxRate

A = AmendmentAction
CENT = D("0.01")


def price(code, model="flat", charge_type="recurring", interval="month", **terms):
    product = make_product(f"p-{code.lower()}", code, code.title())
    return make_price(f"pr-{code.lower()}", product, currency="EUR", model=model, interval=interval,
                      charge_type=charge_type, **terms)


SEAT = price("SEAT", "per_unit", unit_price="25")
CARE = price("CARE", "percent_of", percent="10", covered_product_codes=["SEAT"])
SETUP = price("SETUP", "flat", charge_type="one_time", interval=None, unit_price="500")
DATA = price("DATA", "allowance", charge_type="usage", unit_price="10", included_units="40",
             overage_unit_price="0.5")


def amend(sub, action, on, **kw):
    return sub.amend(Amendment(sub.next_amendment_id(), 0, action, on, **kw))


def exact(full: D, num: int, den: int) -> D:
    """price × quantity × days, rounded once (half up)."""
    return (full * num / den).quantize(CENT, ROUND_HALF_UP)


def assert_exact(line: ChargeLine) -> None:
    """gross − discount = net, and gross, discount and net share the line's sign."""
    assert line.gross - line.discount == line.amount, line.key
    assert line.gross == line.gross.quantize(CENT) and line.discount == line.discount.quantize(CENT), line.key
    if line.amount < 0:
        assert line.gross < 0 and line.discount <= 0, (line.key, line.gross, line.discount)
    else:
        assert line.gross >= 0 and line.discount >= 0, (line.key, line.gross, line.discount)
    assert abs(line.discount) <= abs(line.gross), line.key


def test_a_prorated_credit_with_a_line_discount_carries_its_gross_and_gives_its_discount_back():
    """12 seats × 25 EUR, 10 % discount, [Jan 1, Feb 1) 2026 billed; 20 seats from Jan 15 (17/31 days left)
    with a 10 % care item on the seats. The credit is gross 12 × 25 × 17/31 = −164.52, discount −16.46,
    net −148.06; the charge 20 × 25 × 17/31 = 274.19, discount 27.42, net 246.77; care 10 % of 98.71 =
    9.87. The invoice: subtotal 119.54, discount 10.96, net 108.58 (not 152.46 / 43.88)."""
    sub = make_subscription("sub-1", "cust-1", "EUR", date(2026, 1, 1),
                            [SubscriptionItem("seats", SEAT, D(12), discount_percent=D(10)),
                             SubscriptionItem("care", CARE, D(1))])
    january = charges_due(sub, date(2026, 1, 1))
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 1, 15), item_id="seats", quantity=D(20))
    credit, charge, care = charges_due(sub, date(2026, 1, 15), billed=january)

    assert (credit.kind, credit.gross, credit.discount, credit.amount) == \
        ("proration_credit", D("-164.52"), D("-16.46"), D("-148.06"))
    assert credit.gross == -exact(D(12 * 25), 17, 31)
    assert credit.explanation == "Unused time 17/31 days: Seat 12 × 25 − 10 % discount (Jan 15 – Feb 1 2026)"
    assert (charge.kind, charge.gross, charge.discount, charge.amount) == \
        ("proration_charge", D("274.19"), D("27.42"), D("246.77"))
    assert (care.gross, care.discount, care.amount) == (D("9.87"), D(0), D("9.87"))

    invoice = assemble_invoice([credit, charge, care], currency="EUR", tax_rate=TaxRate(D(0)))
    t = invoice.totals
    assert (t.subtotal, t.discount, t.net, t.total) == (D("119.54"), D("10.96"), D("108.58"), D("108.58"))
    assert [(ln.gross, ln.line_discount, ln.net) for ln in invoice.lines] == [
        (D("-164.52"), D("-16.46"), D("-148.06")), (D("274.19"), D("27.42"), D("246.77")),
        (D("9.87"), D(0), D("9.87"))]


def test_every_line_kind_is_exact_and_signed():
    """One history that draws every line kind, each item discounted 10 %: a prorated first period,
    a one-time fee, a percent_of item, usage in arrears, a minimum true-up, a quantity change
    (credit and charge), late usage, and an immediate cancellation after billing (corrections)."""
    sub = make_subscription("sub-1", "cust-1", "EUR", date(2026, 1, 10),
                            [SubscriptionItem("seats", SEAT, D(12), discount_percent=D(10)),
                             SubscriptionItem("care", CARE, D(1), discount_percent=D(10)),
                             SubscriptionItem("setup", SETUP, D(1), discount_percent=D(10)),
                             SubscriptionItem("data", DATA, D(1), discount_percent=D(10))],
                            billing_anchor_day=1, minimum_amount="1000")
    billed: list[ChargeLine] = []
    runs: list[list[ChargeLine]] = []

    def bill(through, usage=None):
        lines = charges_due(sub, through, billed=billed, usage=usage)
        billed.extend(lines)
        runs.append(lines)
        return lines

    first = bill(date(2026, 1, 10))  # stub [Jan 10, Feb 1): 22/31 days
    seats = next(ln for ln in first if ln.item_id == "seats")
    assert (seats.gross, seats.discount, seats.amount) == (exact(D(300), 22, 31), D("21.29"), D("191.61"))
    setup = next(ln for ln in first if ln.kind == "one_time")
    assert (setup.gross, setup.discount, setup.amount) == (D("500.00"), D("50.00"), D("450.00"))

    bill(date(2026, 2, 1), usage={("data", date(2026, 1, 10)): D(55)})  # Jan usage, true-up, Feb
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 2, 15), item_id="seats", quantity=D(8))
    changes = bill(date(2026, 2, 15))
    credit = next(ln for ln in changes if ln.kind == "proration_credit" and ln.item_id == "seats")
    assert (credit.gross, credit.discount, credit.amount) == (exact(D(-300), 14, 28), D("-15.00"), D("-135.00"))
    care_credit = next(ln for ln in changes if ln.item_id == "care")
    assert (care_credit.gross, care_credit.discount, care_credit.amount) == (D("-4.50"), D("-0.45"), D("-4.05"))

    late = bill(date(2026, 3, 1), usage={("data", date(2026, 1, 10)): D(75), ("data", date(2026, 2, 1)): D(0)})
    [late_usage] = [ln for ln in late if "#late-" in ln.key]
    # 75 GB cost 10 + 35 × 0.5 = 27.50, 55 GB were billed at 17.50: +10.00 gross, 1.00 discount, 9.00 net
    assert (late_usage.gross, late_usage.discount, late_usage.amount) == (D("10.00"), D("1.00"), D("9.00"))

    sub = amend(sub, A.CANCEL, date(2026, 3, 11), immediate=True)  # March billed; 21/31 days unused
    cancelled = bill(date(2026, 3, 11), usage={("data", date(2026, 3, 1)): D(0)})
    correction = next(ln for ln in cancelled if ln.item_id == "seats")
    # billed 8 × 25 = 200 (20.00 discount, 180.00 net), now 10/31 days: 64.52 (6.46, 58.06)
    assert (correction.kind, correction.gross, correction.discount, correction.amount) == \
        ("proration_credit", D("-135.48"), D("-13.54"), D("-121.94"))
    assert correction.description == "Unused time 21/31 days"

    kinds = {line.kind for line in billed}
    assert kinds == set(KINDS), set(KINDS) - kinds
    for line in billed:
        assert_exact(line)

    for run in runs:  # each bill run's invoice adds up its lines' gross and discounts
        invoice = assemble_invoice(run, currency="EUR", tax_rate=TaxRate(D(20)))
        t = invoice.totals
        assert t.subtotal == sum((ln.gross for ln in invoice.lines), D(0))
        assert t.discount == sum((ln.line_discount for ln in invoice.lines), D(0))
        assert all(ln.gross - ln.line_discount == ln.net for ln in invoice.lines)
        assert t.net - (invoice.credit_note.net if invoice.credit_note else 0) == sum((ln.amount for ln in run), D(0))
