"""Year-long amendment scenarios, billed every day with a fixed clock and checked run by run:
monthly and annual subscriptions, anchors on the 1st and the 31st, a leap year.

Each scenario records amendments on the day they are entered (possibly dated in the past) and runs
``charges_due`` every day with what was billed before, as a bill run would. Only runs that produce
lines are listed; amounts follow docs/billing-rules.md §3 Proration (days used / days in the full period,
rounded half up per line)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

A = AmendmentAction
SEATS = make_price("pr-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="per_unit",
                   unit_price="20")
SUPPORT = make_price("pr-support", make_product("p-support", "SUPPORT", "Support"), currency="EUR", model="flat",
                     unit_price="50")
SEAT100 = make_price("pr-seat100", make_product("p-seat100", "SEAT", "Seat"), currency="EUR", model="per_unit",
                     unit_price="100")
YEARLY = make_price("pr-year", make_product("p-year", "PLATFORM", "Platform"), currency="EUR", model="per_unit",
                    unit_price="1200", interval="year")


def run(subscription, recorded: dict[date, list[Amendment]], first: date, last: date):
    """Bill every day from ``first`` to ``last``; amendments are recorded on their key date."""
    billed, runs = [], {}
    day = first
    while day <= last:
        for amendment in recorded.get(day, []):
            subscription = subscription.amend(amendment)
        lines = charges_due(subscription, day, billed=billed)
        if lines:
            runs[day] = [(line.kind, line.item_id, line.starts_on, line.amount) for line in lines]
            billed += lines
        day += timedelta(days=1)
    return runs, billed


def monthly(day_of_month, months, year, **per_item):
    return {date(year + (m - 1) // 12, (m - 1) % 12 + 1, day_of_month): [("recurring", item, None, amount)
                                                                          for item, amount in per_item.items()]
            for m in months}


def test_monthly_anchor_1st_in_a_leap_year_with_an_upgrade_and_a_past_dated_add_on():
    """Leap year 2028 (Feb has 29 days), anchor the 1st, 10 seats × 20. Feb 15: 15 seats → credit
    200 × 15/29 = 103.45, charge 300 × 15/29 = 155.17. Entered Apr 10, dated Mar 20: support 50/month →
    50 × 12/31 = 19.35 plus April's 50 on the next run. Cancelled Jul 1 at the end of the term (Jan 1 2029)."""
    sub = make_subscription("sub-m1", "c", "EUR", date(2028, 1, 1), [SubscriptionItem("seats", SEATS, D(10))],
                            term_months=12)
    recorded = {
        date(2028, 2, 15): [Amendment("up", 0, A.CHANGE_QUANTITY, date(2028, 2, 15), item_id="seats", quantity=D(15))],
        date(2028, 4, 10): [Amendment("support", 0, A.ADD_ITEM, date(2028, 3, 20),
                                      item=SubscriptionItem("support", SUPPORT))],
        date(2028, 7, 1): [Amendment("cancel", 0, A.CANCEL, date(2028, 7, 1))],
    }
    runs, billed = run(sub, recorded, date(2028, 1, 1), date(2029, 3, 1))
    expected = {
        date(2028, 1, 1): [("recurring", "seats", date(2028, 1, 1), D("200.00"))],
        date(2028, 2, 1): [("recurring", "seats", date(2028, 2, 1), D("200.00"))],
        date(2028, 2, 15): [("proration_credit", "seats", date(2028, 2, 15), D("-103.45")),
                            ("proration_charge", "seats", date(2028, 2, 15), D("155.17"))],
        date(2028, 3, 1): [("recurring", "seats", date(2028, 3, 1), D("300.00"))],
        date(2028, 4, 1): [("recurring", "seats", date(2028, 4, 1), D("300.00"))],
        date(2028, 4, 10): [("proration_charge", "support", date(2028, 3, 20), D("19.35")),
                            ("recurring", "support", date(2028, 4, 1), D("50.00"))],
    }
    for month in range(5, 13):
        day = date(2028, month, 1)
        expected[day] = [("recurring", "seats", day, D("300.00")), ("recurring", "support", day, D("50.00"))]
    assert runs == expected
    assert sum(line.amount for line in billed) == D("400.00") + D("51.72") + D("300.00") * 10 + \
        D("19.35") + D("50.00") * 9
    support = next(line for line in billed if line.item_id == "support")
    assert support.description == "Remaining time 12/31 days"


def test_monthly_anchor_31_with_an_upgrade_in_march_and_an_immediate_cancellation_in_june():
    """2027, anchor the 31st: periods Jan 31, Feb 28 (full), Mar 31, Apr 30, May 31. Mar 15 upgrade 1 → 2
    seats at 100 in [Feb 28, Mar 31) (31 days, 16 left): −51.61 / +103.23. Immediate cancellation Jun 10
    in [May 31, Jun 30): 20 of 30 days unused on 2 seats → −133.33, and nothing after."""
    sub = make_subscription("sub-m31", "c", "EUR", date(2027, 1, 31), [SubscriptionItem("seat", SEAT100, D(1))],
                            billing_anchor_day=31)
    recorded = {
        date(2027, 3, 15): [Amendment("up", 0, A.CHANGE_QUANTITY, date(2027, 3, 15), item_id="seat", quantity=D(2))],
        date(2027, 6, 10): [Amendment("stop", 0, A.CANCEL, date(2027, 6, 10), immediate=True)],
    }
    runs, billed = run(sub, recorded, date(2027, 1, 1), date(2027, 12, 31))
    assert runs == {
        date(2027, 1, 31): [("recurring", "seat", date(2027, 1, 31), D("100.00"))],
        date(2027, 2, 28): [("recurring", "seat", date(2027, 2, 28), D("100.00"))],
        date(2027, 3, 15): [("proration_credit", "seat", date(2027, 3, 15), D("-51.61")),
                            ("proration_charge", "seat", date(2027, 3, 15), D("103.23"))],
        date(2027, 3, 31): [("recurring", "seat", date(2027, 3, 31), D("200.00"))],
        date(2027, 4, 30): [("recurring", "seat", date(2027, 4, 30), D("200.00"))],
        date(2027, 5, 31): [("recurring", "seat", date(2027, 5, 31), D("200.00"))],
        date(2027, 6, 10): [("proration_credit", "seat", date(2027, 6, 10), D("-133.33"))],
    }
    assert billed[-1].description == "Unused time 20/30 days"
    assert (billed[1].starts_on, billed[1].ends_before) == (date(2027, 2, 28), date(2027, 3, 31))


def test_annual_from_feb_29_with_a_mid_year_change_and_a_renewal_uplift():
    """Yearly anchor Feb 29 2028 → next period Feb 28 2029 (365 days). Aug 31 2028: 1 → 3 seats at 1,200,
    181 of 365 days left: −595.07 / +1,785.21. Renewal on Feb 28 2029 keeps the price and adds the 10 %
    uplift: 3 × 1,320 = 3,960."""
    sub = make_subscription("sub-y", "c", "EUR", date(2028, 2, 29), [SubscriptionItem("platform", YEARLY, D(1))],
                            term_months=12, renewal_uplift_percent="10")
    recorded = {date(2028, 8, 31): [Amendment("grow", 0, A.CHANGE_QUANTITY, date(2028, 8, 31),
                                              item_id="platform", quantity=D(3))]}
    runs, billed = run(sub, recorded, date(2028, 2, 1), date(2029, 12, 31))
    assert runs == {
        date(2028, 2, 29): [("recurring", "platform", date(2028, 2, 29), D("1200.00"))],
        date(2028, 8, 31): [("proration_credit", "platform", date(2028, 8, 31), D("-595.07")),
                            ("proration_charge", "platform", date(2028, 8, 31), D("1785.21"))],
        date(2029, 2, 28): [("recurring", "platform", date(2029, 2, 28), D("3960.00"))],
    }
    assert billed[1].description == "Unused time 181/365 days"
    assert billed[-1].explanation == "Platform 3 × 1320 (contract price)"
    assert billed[-1].ends_before == date(2030, 2, 28)


def test_monthly_scenario_billed_once_a_month_matches_daily_billing():
    """Same leap-year scenario billed only on the 1st: the same total, with the Feb upgrade's lines on
    Mar 1 and the past-dated add-on on May 1 (its charges "appear in the next billing")."""
    sub = make_subscription("sub-m1", "c", "EUR", date(2028, 1, 1), [SubscriptionItem("seats", SEATS, D(10))])
    sub = sub.amend(Amendment("up", 0, A.CHANGE_QUANTITY, date(2028, 2, 15), item_id="seats", quantity=D(15)))
    march = charges_due(sub, date(2028, 3, 1), billed=charges_due(sub, date(2028, 2, 1)))
    assert [(line.kind, line.amount) for line in march] == [
        ("proration_credit", D("-103.45")), ("proration_charge", D("155.17")), ("recurring", D("300.00"))]
