"""charges_due against the worked examples of docs/billing-rules.md (§2 Periods, anchors and dates,
§3 Proration, §4 Charge types and when a line is due, §5 Pricing models, §6 Contract prices,
§7 Discounts, §8 Minimum commitments, §10 Cancellations, §11 Terms and renewals)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import BilledCharge, charges_due, usage_windows
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

A = AmendmentAction


def price(code, amount=None, model="flat", interval="month", charge_type="recurring", currency="EUR", **terms):
    product = make_product(f"p-{code.lower()}", code, code.title())
    if amount is not None:
        terms["unit_price"] = amount
    return make_price(f"pr-{code.lower()}", product, currency=currency, model=model, interval=interval,
                      charge_type=charge_type, **terms)


def item(item_id, the_price, quantity=1, **kw):
    return SubscriptionItem(item_id, the_price, D(quantity), **kw)


def subscription(items, starts_on, **kw):
    return make_subscription("sub-1", "cust-1", items[0].price.currency, starts_on, items, **kw)


def amend(sub, action, on, **kw):
    return sub.amend(Amendment(sub.next_amendment_id(), 0, action, on, **kw))


def summary(lines):
    return [(line.kind, line.item_id, line.starts_on, line.amount) for line in lines]


SEED_TIERS = [{"up_to": "5", "unit_price": "200"}, {"up_to": "10", "unit_price": "150"},
              {"up_to": None, "unit_price": "100"}]


def test_chargebee_downgrade_makes_the_may_invoice_20():
    """docs/billing-rules.md §3 Proration (Chargebee): 60/month Apr 1–May 1 2012, downgrade to 30 on Apr 21:
    credit 60 × 10/30 = 20, charge 30 × 10/30 = 10, net −10; the May 1 invoice is 30 − 10 = 20."""
    sub = subscription([item("plan", price("GOLD", "60"))], date(2012, 4, 1))
    april = charges_due(sub, date(2012, 4, 1))
    assert summary(april) == [("recurring", "plan", date(2012, 4, 1), D("60.00"))]
    sub = amend(sub, A.REMOVE_ITEM, date(2012, 4, 21), item_id="plan")
    sub = amend(sub, A.ADD_ITEM, date(2012, 4, 21), item=item("plan-b", price("SILVER", "30")))
    may = charges_due(sub, date(2012, 5, 1), billed=april)
    assert summary(may) == [
        ("proration_credit", "plan", date(2012, 4, 21), D("-20.00")),
        ("proration_charge", "plan-b", date(2012, 4, 21), D("10.00")),
        ("recurring", "plan-b", date(2012, 5, 1), D("30.00")),
    ]
    assert sum(line.amount for line in may) == D("20.00")
    assert may[0].description == "Unused time 10/30 days"
    assert may[0].explanation == "Unused time 10/30 days: Gold flat 60 (Apr 21 – May 1 2012)"
    assert may[1].description == "Remaining time 10/30 days"


def test_chargebee_upgrade_credits_15_and_charges_50():
    """docs/billing-rules.md §3 Proration (Chargebee): plan A 30/month from Nov 1, upgrade to B 100/month
    on Nov 16 (15 of 30 days left): credit 15, charge 50, net 35."""
    sub = subscription([item("a", price("PLAN_A", "30"))], date(2026, 11, 1))
    billed = charges_due(sub, date(2026, 11, 1))
    sub = amend(sub, A.REMOVE_ITEM, date(2026, 11, 16), item_id="a")
    sub = amend(sub, A.ADD_ITEM, date(2026, 11, 16), item=item("b", price("PLAN_B", "100")))
    lines = charges_due(sub, date(2026, 11, 16), billed=billed)
    assert summary(lines) == [("proration_credit", "a", date(2026, 11, 16), D("-15.00")),
                              ("proration_charge", "b", date(2026, 11, 16), D("50.00"))]
    assert sum(line.amount for line in lines) == D("35.00")


def test_stripe_price_change_at_half_period_credits_5_and_charges_10():
    """docs/billing-rules.md §3 Proration (Stripe): 10 → 20 per month at exactly half the period: −5, +10,
    net +5. The price change is explicit (docs/billing-rules.md §6 Contract prices: amendments never
    reprice on their own)."""
    sub = subscription([item("seat", price("SEAT", "10", model="per_unit"))], date(2026, 11, 1))
    billed = charges_due(sub, date(2026, 11, 1))
    sub = amend(sub, A.CHANGE_PRICE, date(2026, 11, 16), item_id="seat", unit_price=D("20"))
    lines = charges_due(sub, date(2026, 11, 30), billed=billed)
    assert [line.amount for line in lines] == [D("-5.00"), D("10.00")]
    assert lines[1].unit_price == D("20") and "(contract price)" in lines[1].explanation


def test_a_two_day_stub_of_a_31_day_period_is_065_and_percent_of_follows_it():
    """docs/billing-rules.md §1 Money and rounding: 10.00/month for a 2-day stub of a 31-day period → 0.65;
    docs/billing-rules.md §5 Pricing models, percent_of: 10 % of that prorated 0.65 line → 0.07."""
    sub = subscription([item("base", price("BASE", "10.00")),
                        item("care", price("CARE", model="percent_of", percent="10", covered_product_codes=["BASE"]))],
                       date(2026, 1, 30), billing_anchor_day=1)
    lines = charges_due(sub, date(2026, 1, 30))
    assert summary(lines) == [("recurring", "base", date(2026, 1, 30), D("0.65")),
                              ("recurring", "care", date(2026, 1, 30), D("0.07"))]
    assert lines[0].explanation == "Base flat 10 × 2/31 days"
    assert lines[0].description == "Base (Jan 30 – Feb 1 2026)"
    assert lines[1].quantity == D("0.65") and lines[1].explanation == "Care 10 % of 0.65 (Base)"


def test_kill_bill_stub_feb_14_to_mar_1_divides_by_28():
    """docs/billing-rules.md §3 Proration: a stub from Feb 14 to Mar 1 anchored on the 1st divides by 28
    (15/28)."""
    sub = subscription([item("x", price("X", "28"))], date(2026, 2, 14), billing_anchor_day=1)
    lines = charges_due(sub, date(2026, 3, 1))
    assert summary(lines) == [("recurring", "x", date(2026, 2, 14), D("15.00")),
                              ("recurring", "x", date(2026, 3, 1), D("28.00"))]
    assert lines[0].description == "X (Feb 14 – Mar 1 2026)" and lines[0].explanation.endswith("× 15/28 days")


def test_anchor_31_stub_feb_14_to_feb_28_divides_by_28_not_31():
    """docs/billing-rules.md §2 Periods, anchors and dates, §3 Proration: with anchor 31 a stub
    Feb 14–Feb 28 lies in [Jan 31, Feb 28) and divides by 28; then Feb 28 and Mar 31 start full periods
    (February billed in full)."""
    sub = subscription([item("x", price("X", "28"))], date(2026, 2, 14), billing_anchor_day=31)
    lines = charges_due(sub, date(2026, 3, 31))
    assert [(line.starts_on, line.ends_before, line.amount) for line in lines] == [
        (date(2026, 2, 14), date(2026, 2, 28), D("14.00")),
        (date(2026, 2, 28), date(2026, 3, 31), D("28.00")),
        (date(2026, 3, 31), date(2026, 4, 30), D("28.00")),
    ]


def test_seed_licences_explained_line():
    """docs/billing-rules.md §5 Pricing models, seed example: 12 licences graduated → 1,950 € with its
    explanation."""
    sub = subscription([item("lic", price("LIC", model="graduated", tiers=SEED_TIERS), 12)], date(2026, 11, 1))
    [line] = charges_due(sub, date(2026, 11, 1))
    assert line.amount == D("1950.00") and line.currency == "EUR"
    assert line.explanation == "Lic 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100"
    assert line.description == "Lic (Nov 1 – Dec 1 2026)"
    assert line.key == "sub-1:lic:2026-11-01:recurring"


def test_contract_price_overrides_the_catalog_through_amendments_and_renewal_with_uplift():
    """docs/billing-rules.md §6 Contract prices, §11 Terms and renewals: the quote-line price holds for the
    term, amendments keep it, renewals keep it and apply the uplift % (180 → 189 with 5 %)."""
    catalog = price("SEAT", "200", model="per_unit")
    sub = subscription([item("seat", catalog, 10, contract_unit_price=D("180"))], date(2026, 1, 1),
                       term_months=12, renewal_uplift_percent="5")
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 6, 1), item_id="seat", quantity=D(12))
    lines = charges_due(sub, date(2027, 1, 1))
    by_start = {line.starts_on: line for line in lines if line.kind == "recurring"}
    assert by_start[date(2026, 1, 1)].amount == D("1800.00")
    assert by_start[date(2026, 6, 1)].amount == D("2160.00")
    assert by_start[date(2027, 1, 1)].amount == D("2268.00")  # 12 × 189
    assert by_start[date(2027, 1, 1)].version_id == "renewal-1"


def test_renewal_without_contract_price_uplifts_the_catalog_unit_price():
    """docs/billing-rules.md §11 Terms and renewals: renewals apply the uplift % (here to the catalog
    price, 100 → 103)."""
    sub = subscription([item("seat", price("SEAT", "100", model="per_unit"), 2)], date(2026, 1, 1),
                       renewal_uplift_percent="3")
    lines = charges_due(sub, date(2027, 1, 1))
    assert [line.amount for line in lines][-2:] == [D("200.00"), D("206.00")]


@pytest.mark.parametrize(("discount", "expected_amount", "expected_discount"), [
    ({"discount_percent": D("10")}, D("1755.00"), D("195.00")),
    ({"discount_amount": D("50")}, D("1900.00"), D("50.00")),
    ({"discount_amount": D("5000")}, D("0.00"), D("1950.00")),
])
def test_line_discounts_apply_before_tax_and_never_below_zero(discount, expected_amount, expected_discount):
    """docs/billing-rules.md §7 Discounts: a line discount in % or a fixed amount; never below zero."""
    sub = subscription([item("lic", price("LIC", model="graduated", tiers=SEED_TIERS), 12, **discount)],
                       date(2026, 11, 1), minimum_amount=None)
    lines = charges_due(sub, date(2026, 11, 1))
    if expected_amount == 0:
        assert lines == []  # nothing to bill
        return
    [line] = lines
    assert (line.amount, line.discount) == (expected_amount, expected_discount)
    assert "discount" in line.explanation


def test_a_fixed_discount_is_prorated_with_its_line():
    """docs/billing-rules.md §7 Discounts with §3 Proration: 100 − 30 fixed for a 15/30 stub
    → 50 − 15 = 35."""
    sub = subscription([item("x", price("X", "100"), discount_amount=D("30"))], date(2026, 11, 16),
                       billing_anchor_day=1)
    [line] = charges_due(sub, date(2026, 11, 16))
    assert (line.amount, line.discount) == (D("35.00"), D("15.00"))


def test_minimum_commitment_true_up_lago_800_to_1000():
    """docs/billing-rules.md §8 Minimum commitments (Lago): usage 800, minimum 1,000 → true-up 200, once
    the period has ended."""
    api = price("API", model="per_unit", unit_price="0.1", charge_type="usage")
    sub = subscription([item("api", api)], date(2026, 11, 1), minimum_amount="1000")
    usage = {("api", date(2026, 11, 1)): D(8000)}
    assert charges_due(sub, date(2026, 11, 30), usage=usage) == []  # usage is in arrears
    lines = charges_due(sub, date(2026, 12, 1), usage=usage)
    assert summary(lines) == [("usage", "api", date(2026, 11, 1), D("800.00")),
                              ("minimum_true_up", "_minimum", date(2026, 11, 1), D("200.00"))]
    assert charges_due(sub, date(2026, 12, 1), billed=lines, usage=usage) == []


def test_usage_is_billed_in_arrears_with_the_allowance_model():
    """docs/billing-rules.md §4 Charge types and when a line is due, §12 Usage and late usage: usage in
    arrears; seed example data plan 10 € incl. 40 GB + 0.50 €/GB, 55 GB → 17.50."""
    data = price("DATA", model="allowance", unit_price="10", included_units="40", overage_unit_price="0.50",
                 charge_type="usage")
    sub = subscription([item("data", data)], date(2026, 11, 1))
    assert usage_windows(sub, date(2026, 12, 1))[0][1].starts_on == date(2026, 11, 1)
    [line] = charges_due(sub, date(2026, 12, 1), usage={("data", date(2026, 11, 1)): D(55)})
    assert (line.kind, line.amount, line.ends_before) == ("usage", D("17.50"), date(2026, 12, 1))
    assert line.explanation == "Data 55 with 40 included: 10 + 15 × 0.5"


def test_usage_windows_follow_the_anchor_and_the_items_days_even_when_nothing_is_billed():
    """docs/billing-rules.md §4 Charge types and when a line is due, §12 Usage and late usage: usage in
    arrears per anchored period; an item removed mid-period has a shorter window."""
    api = price("API", model="per_unit", unit_price="0.0004", charge_type="usage")
    sub = subscription([item("api", api)], date(2026, 1, 20), billing_anchor_day=1)
    sub = amend(sub, A.REMOVE_ITEM, date(2026, 3, 10), item_id="api")
    windows = [(i, w.starts_on, w.ends_before) for i, w in usage_windows(sub, date(2026, 3, 31))]
    assert windows == [("api", date(2026, 1, 20), date(2026, 2, 1)), ("api", date(2026, 2, 1), date(2026, 3, 1)),
                       ("api", date(2026, 3, 1), date(2026, 3, 10))]
    assert charges_due(sub, date(2026, 3, 31)) == []  # no usage, nothing to bill
    [line] = charges_due(sub, date(2026, 3, 31), usage={("api", date(2026, 3, 1)): D(123457)})
    assert (line.amount, line.ends_before) == (D("49.38"), date(2026, 3, 10))


def test_one_time_charges_are_billed_once_on_the_first_invoice():
    """docs/billing-rules.md §4 Charge types and when a line is due: one-time charges are billed on the
    first invoice."""
    setup = price("SETUP", "500", charge_type="one_time", interval=None)
    sub = subscription([item("setup", setup), item("x", price("X", "10"))], date(2026, 11, 1))
    first = charges_due(sub, date(2026, 11, 1))
    assert summary(first) == [("recurring", "x", date(2026, 11, 1), D("10.00")),
                              ("one_time", "setup", date(2026, 11, 1), D("500.00"))]
    assert summary(charges_due(sub, date(2026, 12, 1), billed=first)) == [
        ("recurring", "x", date(2026, 12, 1), D("10.00"))]


def test_same_day_changes_bill_only_the_last_state_and_create_cancel_bills_nothing():
    """docs/billing-rules.md §3 Proration: changes on the same day bill only the day's last state (Kill Bill);
    a subscription created and cancelled on the same day bills nothing."""
    sub = subscription([item("seat", price("SEAT", "10", model="per_unit"), 10)], date(2026, 11, 1))
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 11, 1), item_id="seat", quantity=D(15))
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 11, 1), item_id="seat", quantity=D(12))
    assert summary(charges_due(sub, date(2026, 11, 1))) == [("recurring", "seat", date(2026, 11, 1), D("120.00"))]
    cancelled = amend(sub, A.CANCEL, date(2026, 11, 1), immediate=True)
    assert charges_due(cancelled, date(2027, 1, 1)) == []


def test_immediate_cancellation_credits_the_unused_days():
    """docs/billing-rules.md §10 Cancellations: an immediate cancellation credits the unused days of the
    current period."""
    sub = subscription([item("x", price("X", "60"))], date(2026, 11, 1))
    billed = charges_due(sub, date(2026, 11, 1))
    sub = amend(sub, A.CANCEL, date(2026, 11, 21), immediate=True)
    lines = charges_due(sub, date(2026, 12, 31), billed=billed)
    assert summary(lines) == [("proration_credit", "x", date(2026, 11, 21), D("-20.00"))]
    assert lines[0].description == "Unused time 10/30 days"
    assert charges_due(sub, date(2026, 12, 31), billed=billed + lines) == []


def test_cancellation_defaults_to_the_end_of_the_term():
    """docs/billing-rules.md §10 Cancellations: cancellation is at the end of the term by default; nothing
    is billed after it."""
    sub = subscription([item("x", price("X", "60"))], date(2026, 1, 1), term_months=12)
    sub = amend(sub, A.CANCEL, date(2026, 3, 10))
    assert sub.ends_before == date(2027, 1, 1)
    lines = charges_due(sub, date(2027, 3, 1))
    assert len(lines) == 12 and lines[-1].starts_on == date(2026, 12, 1)


def test_a_past_dated_amendment_is_credited_and_charged_on_the_next_billing():
    """docs/billing-rules.md §3 Proration, §9 Amendments: an amendment dated in the past appears in the
    next billing; the credit is for what was actually billed, the charge at the new terms."""
    sub = subscription([item("seat", price("SEAT", "10", model="per_unit"), 10)], date(2026, 11, 1))
    billed = charges_due(sub, date(2026, 12, 1))  # Nov and Dec billed at 10 seats
    sub = amend(sub, A.CHANGE_QUANTITY, date(2026, 11, 16), item_id="seat", quantity=D(13))
    lines = charges_due(sub, date(2026, 12, 10), billed=billed)
    assert summary(lines) == [
        ("proration_credit", "seat", date(2026, 11, 16), D("-50.00")),
        ("proration_charge", "seat", date(2026, 11, 16), D("65.00")),
        ("proration_credit", "seat", date(2026, 12, 1), D("-100.00")),
        ("proration_charge", "seat", date(2026, 12, 1), D("130.00")),
    ]
    assert lines[2].quantity == D(10) and lines[3].quantity == D(13)
    assert charges_due(sub, date(2026, 12, 10), billed=billed + lines) == []


def test_charges_due_is_idempotent_given_what_was_billed():
    """Design: a repeated bill run with the lines already billed returns nothing new; keys are stable."""
    sub = subscription([item("lic", price("LIC", model="volume", tiers=SEED_TIERS), 12)], date(2026, 1, 31),
                       billing_anchor_day=31)
    first = charges_due(sub, date(2026, 6, 30))
    assert charges_due(sub, date(2026, 6, 30), billed=first) == []
    as_records = {line.key: BilledCharge(line.key, line.amount, line.quantity, line.unit_price, line.starts_on,
                                         line.ends_before) for line in first}
    assert charges_due(sub, date(2026, 6, 30), billed=as_records) == []
    assert [line.key for line in charges_due(sub, date(2026, 6, 30))] == [line.key for line in first]
    assert len({line.key for line in first}) == len(first) == 6


def test_the_fast_line_constructor_matches_the_dataclass_field_for_field():
    """ChargeLine contract: lines built on the hot path equal ones built by the dataclass constructor."""
    from dataclasses import fields

    from billing_engine.charges import _FIELDS, ChargeLine

    assert _FIELDS == tuple(f.name for f in fields(ChargeLine))
    sub = subscription([item("x", price("X", "10"))], date(2026, 11, 1))
    [line] = charges_due(sub, date(2026, 11, 1))
    assert line == ChargeLine(**{name: getattr(line, name) for name in _FIELDS})
