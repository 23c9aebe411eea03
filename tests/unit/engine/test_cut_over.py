"""The cut-over: nothing before the first day billsync bills is ever invoiced, while the
subscription keeps its true start (docs/billing-rules.md §19 Cut-over).

The figures are the worked examples of that section: 12 seats × 25 EUR = 300.00 a month,
anchored on the 15th, cut over on 1 Dec 2026.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import billing_floor, charges_due, usage_windows
from billing_engine.errors import InvalidInputError
from billing_engine.periods import Period
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

CUT_OVER = date(2026, 12, 1)


def price(code, amount=None, model="per_unit", interval="month", charge_type="recurring", **terms):
    product = make_product(f"p-{code.lower()}", code, code.title())
    if amount is not None:
        terms["unit_price"] = amount
    return make_price(f"pr-{code.lower()}", product, currency="EUR", model=model, interval=interval,
                      charge_type=charge_type, **terms)


SEATS = price("SEATS", "25")


def seats(quantity=12):
    return SubscriptionItem("seats", SEATS, D(quantity))


def subscription(items, starts_on, **kw):
    return make_subscription("sub-1", "cust-1", "EUR", starts_on, items, **kw)


def summary(lines):
    return [(line.kind, line.item_id, line.starts_on, line.ends_before, line.amount) for line in lines]


def test_without_a_cut_over_a_deal_from_2022_bills_57_months_at_once():
    """What the cut-over prevents: 15 Mar 2022 – 15 Dec 2026 is 57 monthly periods of 300.00."""
    sub = subscription([seats()], date(2022, 3, 15))
    lines = charges_due(sub, date(2026, 12, 6))
    assert len(lines) == 57
    assert sum(line.amount for line in lines) == D("17100.00")


def test_the_period_that_straddles_the_cut_over_bills_only_its_days_from_it():
    """[15 Nov, 15 Dec) straddles 1 Dec: 14 of its 30 days, 300.00 × 14/30 = 140.00."""
    sub = subscription([seats()], date(2022, 3, 15))
    lines = charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER)
    assert summary(lines) == [("recurring", "seats", CUT_OVER, date(2026, 12, 15), D("140.00"))]
    [line] = lines
    assert (line.period_starts_on, line.period_ends_before) == (date(2026, 11, 15), date(2026, 12, 15))
    assert line.explanation == "Seats 12 × 25 × 14/30 days"
    # The next period is whole, in advance on its first day.
    nxt = charges_due(sub, date(2026, 12, 15), billed=lines, bills_from=CUT_OVER)
    assert summary(nxt) == [("recurring", "seats", date(2026, 12, 15), date(2027, 1, 15), D("300.00"))]
    # The subscription keeps its true start: the cut-over is a billing floor, not a new start.
    assert sub.starts_on == date(2022, 3, 15)


def test_a_yearly_item_straddling_the_cut_over_bills_182_of_365_days():
    """1,200.00 a year from 1 Jun 2025: [1 Jun 2026, 1 Jun 2027) has 182 of 365 days from 1 Dec 2026:
    1,200.00 × 182/365 = 598.36."""
    platform = price("PLATFORM", "1200", model="flat", interval="year")
    sub = subscription([SubscriptionItem("platform", platform)], date(2025, 6, 1))
    lines = charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER)
    assert summary(lines) == [("recurring", "platform", CUT_OVER, date(2027, 6, 1), D("598.36"))]


def test_a_deal_starting_on_or_after_the_cut_over_is_billed_as_usual():
    sub = subscription([seats()], date(2026, 12, 3))
    assert billing_floor(sub, CUT_OVER) is None
    assert summary(charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER)) == [
        ("recurring", "seats", date(2026, 12, 3), date(2027, 1, 3), D("300.00"))]


def test_billed_through_on_the_deal_moves_its_own_floor():
    """Billed_Through__c 31 Dec 2026 → bills_from 1 Jan 2027: the December run bills nothing for
    that deal, the January run its first whole month. The later of the two floors applies."""
    sub = subscription([seats()], date(2024, 1, 1), bills_from=date(2027, 1, 1))
    assert billing_floor(sub, CUT_OVER) == date(2027, 1, 1)
    assert charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER) == []
    assert summary(charges_due(sub, date(2027, 1, 1), bills_from=CUT_OVER)) == [
        ("recurring", "seats", date(2027, 1, 1), date(2027, 2, 1), D("300.00"))]
    # Without a run-level cut-over the deal's own floor still applies.
    assert summary(charges_due(sub, date(2027, 1, 1))) == [
        ("recurring", "seats", date(2027, 1, 1), date(2027, 2, 1), D("300.00"))]


def test_a_change_before_the_cut_over_is_billed_at_its_new_terms_from_the_cut_over():
    """12 → 15 seats on 20 Nov, before the cut-over: one line at 15 seats for 14/30 days = 175.00,
    no proration for days before the cut-over."""
    sub = subscription([seats()], date(2022, 3, 15))
    sub = sub.amend(Amendment("a1", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 11, 20), item_id="seats",
                              quantity=D(15)))
    lines = charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER)
    assert summary(lines) == [("recurring", "seats", CUT_OVER, date(2026, 12, 15), D("175.00"))]
    # A change after the cut-over prorates as usual: 15 → 20 seats on 10 Dec, 5 of 30 days left.
    sub = sub.amend(Amendment("a2", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 12, 10), item_id="seats",
                              quantity=D(20)))
    more = charges_due(sub, date(2026, 12, 10), billed=lines, bills_from=CUT_OVER)
    assert summary(more) == [
        ("proration_credit", "seats", date(2026, 12, 10), date(2026, 12, 15), D("-62.50")),
        ("proration_charge", "seats", date(2026, 12, 10), date(2026, 12, 15), D("83.33")),
    ]


def test_a_one_time_charge_before_the_cut_over_is_not_billed():
    setup = price("SETUP", "500", model="flat", charge_type="one_time")
    sub = subscription([seats(), SubscriptionItem("setup", setup)], date(2026, 11, 15))
    assert [line.kind for line in charges_due(sub, date(2026, 12, 6))] == ["recurring", "one_time"]
    assert summary(charges_due(sub, date(2026, 12, 6), bills_from=CUT_OVER)) == [
        ("recurring", "seats", CUT_OVER, date(2026, 12, 15), D("140.00"))]


def test_usage_is_billed_for_the_window_from_the_cut_over():
    """Usage windows that ended by the cut-over are not billed; the straddling one starts on it."""
    api = price("API", model="per_unit", unit_price="0.1", charge_type="usage")
    sub = subscription([SubscriptionItem("api", api)], date(2026, 9, 15))
    assert usage_windows(sub, date(2026, 12, 15), bills_from=CUT_OVER) == [
        ("api", Period(CUT_OVER, date(2026, 12, 15))), ("api", Period(date(2026, 12, 15), date(2027, 1, 15)))]
    usage = {("api", date(2026, 10, 15)): D(9000), ("api", CUT_OVER): D(1000)}
    lines = charges_due(sub, date(2026, 12, 15), usage=usage, bills_from=CUT_OVER)
    assert summary(lines) == [("usage", "api", CUT_OVER, date(2026, 12, 15), D("100.00"))]


def test_the_minimum_commitment_is_prorated_from_the_cut_over():
    """Minimum 400.00 a month: [15 Nov, 15 Dec) is held to 400.00 × 14/30 = 186.67 from the cut-over;
    140.00 was billed, so the true-up is 46.67."""
    sub = subscription([seats()], date(2022, 3, 15), minimum_amount="400")
    lines = charges_due(sub, date(2026, 12, 15), bills_from=CUT_OVER)
    assert summary(lines) == [
        ("recurring", "seats", CUT_OVER, date(2026, 12, 15), D("140.00")),
        ("minimum_true_up", "_minimum", CUT_OVER, date(2026, 12, 15), D("46.67")),
        ("recurring", "seats", date(2026, 12, 15), date(2027, 1, 15), D("300.00")),
    ]


def test_what_was_billed_before_a_later_cut_over_is_left_as_billed():
    """Moving the cut-over later never reverses what billsync already invoiced."""
    sub = subscription([seats()], date(2026, 9, 15))
    billed = charges_due(sub, date(2026, 11, 15))
    assert len(billed) == 3  # 15 Sep, 15 Oct, 15 Nov
    assert charges_due(sub, date(2026, 12, 6), billed=billed, bills_from=CUT_OVER) == []
    # The straddling period was billed whole before: it stays whole.
    assert summary(charges_due(sub, date(2026, 12, 15), billed=billed, bills_from=CUT_OVER)) == [
        ("recurring", "seats", date(2026, 12, 15), date(2027, 1, 15), D("300.00"))]


def test_a_bad_floor_is_refused():
    with pytest.raises(InvalidInputError, match="bills_from"):
        subscription([seats()], date(2026, 1, 1), bills_from="2026-12-01")
    sub = subscription([seats()], date(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="bills_from"):
        charges_due(sub, date(2026, 12, 6), bills_from="2026-12-01")
