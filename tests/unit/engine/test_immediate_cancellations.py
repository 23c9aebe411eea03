"""An immediate cancellation credits every billed day from its effective date, however early it
is dated: on the subscription's first day, or on or before the start of periods already billed
(docs/billing-rules.md §10 Cancellations, §3 Proration)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

A = AmendmentAction
NOV = date(2026, 11, 1)


def price(code, model="flat", charge_type="recurring", interval="month", **terms):
    product = make_product(f"p-{code.lower()}", code, code.title())
    return make_price(f"pr-{code.lower()}", product, currency="EUR", model=model, interval=interval,
                      charge_type=charge_type, **terms)


GOLD = price("GOLD", unit_price="60")
SEAT = price("SEAT", "per_unit", unit_price="25")
CARE = price("CARE", "percent_of", percent="10", covered_product_codes=["SEAT"])
SETUP = price("SETUP", charge_type="one_time", interval=None, unit_price="500")


def cancel(sub, on):
    return sub.amend(Amendment("cancel", 0, A.CANCEL, on, immediate=True))


def summary(lines):
    return [(line.kind, line.item_id, line.starts_on, line.gross, line.discount, line.amount) for line in lines]


def test_a_cancellation_on_the_first_day_after_billing_credits_the_whole_billed_period():
    """60/month billed for [Nov 1, Dec 1); cancelled immediately on Nov 1: −60.00, like a subscription
    started and cancelled the same day before any billing (it bills nothing)."""
    sub = make_subscription("sub-1", "cust-1", "EUR", NOV, [SubscriptionItem("plan", GOLD)])
    billed = charges_due(sub, NOV)
    lines = charges_due(cancel(sub, NOV), NOV, billed=billed)
    assert summary(lines) == [("proration_credit", "plan", NOV, D("-60.00"), D(0), D("-60.00"))]
    assert lines[0].description == "Reversal (Nov 1 – Dec 1 2026)"
    assert sum(line.amount for line in billed + lines) == 0
    assert charges_due(cancel(sub, NOV), date(2027, 3, 1), billed=billed + lines) == []


def test_a_cancellation_a_day_later_credits_the_unused_days():
    """The same subscription cancelled on Nov 2: 29 of 30 days unused, −58.00."""
    sub = make_subscription("sub-1", "cust-1", "EUR", NOV, [SubscriptionItem("plan", GOLD)])
    billed = charges_due(sub, NOV)
    [line] = charges_due(cancel(sub, date(2026, 11, 2)), date(2026, 11, 2), billed=billed)
    assert (line.kind, line.amount, line.description) == ("proration_credit", D("-58.00"), "Unused time 29/30 days")


def test_a_cancellation_dated_before_several_billed_periods_credits_all_of_them():
    """12 seats × 25 at 10 % off, a 10 % care item and a 500 setup fee, billed for November, December
    and January (270.00 + 27.00 a month, setup 500.00). Cancelled immediately on Nov 1, recorded in
    January: every billed line is credited with its gross and discount, 1,391.00 in all."""
    sub = make_subscription("sub-1", "cust-1", "EUR", NOV,
                            [SubscriptionItem("seats", SEAT, D(12), discount_percent=D(10)),
                             SubscriptionItem("care", CARE), SubscriptionItem("setup", SETUP)])
    billed = charges_due(sub, date(2027, 1, 1))
    assert sum(line.amount for line in billed) == D("1391.00")
    lines = charges_due(cancel(sub, NOV), date(2027, 1, 10), billed=billed)
    assert summary(lines) == [
        ("proration_credit", "care", NOV, D("-27.00"), D(0), D("-27.00")),
        ("proration_credit", "seats", NOV, D("-300.00"), D("-30.00"), D("-270.00")),
        ("proration_credit", "setup", NOV, D("-500.00"), D(0), D("-500.00")),
        ("proration_credit", "care", date(2026, 12, 1), D("-27.00"), D(0), D("-27.00")),
        ("proration_credit", "seats", date(2026, 12, 1), D("-300.00"), D("-30.00"), D("-270.00")),
        ("proration_credit", "care", date(2027, 1, 1), D("-27.00"), D(0), D("-27.00")),
        ("proration_credit", "seats", date(2027, 1, 1), D("-300.00"), D("-30.00"), D("-270.00")),
    ]
    assert lines[1].explanation == "Reversal of 270 billed for Nov 1 – Dec 1 2026, no longer due after amendment cancel"
    assert charges_due(cancel(sub, NOV), date(2027, 3, 1), billed=billed + lines) == []
    assert sum(line.amount for line in lines) == D("-1391.00")


def test_a_cancellation_on_the_start_of_a_billed_period_credits_it_and_the_later_ones():
    """60/month billed through January; cancelled immediately on Dec 1: November stays billed,
    December and January are credited (−60.00 each)."""
    sub = make_subscription("sub-1", "cust-1", "EUR", NOV, [SubscriptionItem("plan", GOLD)])
    billed = charges_due(sub, date(2027, 1, 1))
    lines = charges_due(cancel(sub, date(2026, 12, 1)), date(2027, 1, 10), billed=billed)
    assert [(line.starts_on, line.amount) for line in lines] == [(date(2026, 12, 1), D("-60.00")),
                                                                  (date(2027, 1, 1), D("-60.00"))]
