"""The anomaly guard's checks (billing_engine.anomalies; docs/intelligence.md, The anomaly guard):
each fires on the error it is for, and stays quiet on the legitimate invoice that looks alike."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_engine.anomalies import (
    GuardRules,
    InvoiceFacts,
    LineFacts,
    TermsChange,
    robust_z,
    score_invoice,
)
from billing_engine.errors import InvalidInputError
from billing_engine.periods import add_months

D = Decimal
START = date(2025, 1, 1)
NOW = date(2026, 2, 1)  # the 14th month: 13 months of history before it


def month(i: int) -> date:
    return add_months(START, i)


def seats(i: int, quantity: str = "10", price: str = "35.00", discount_percent: str = "0", tax: str = "20",
          sub: str = "S1", code: str = "PRO") -> LineFacts:
    gross = D(quantity) * D(price)
    return LineFacts(code, "Pro seats", "recurring", sub, month(i), month(i + 1), D(quantity), D(price), gross,
                     (gross * D(discount_percent) / 100).quantize(D("0.01")), D(tax))


def usage(i: int, quantity: str, tax: str = "20") -> LineFacts:
    q = D(quantity)
    return LineFacts("API", "API calls", "usage", "S1", month(i - 1), month(i), q, D("0.001"), q * D("0.001"),
                     D(0), D(tax))


def invoice(i: int, *lines: LineFacts, currency: str = "EUR") -> InvoiceFacts:
    return InvoiceFacts(month(i), currency, sum((ln.gross - ln.discount for ln in lines), D(0)), tuple(lines))


def history(lines_of, months: range = range(0, 13), currency: str = "EUR") -> list[InvoiceFacts]:
    return [invoice(i, *lines_of(i), currency=currency) for i in months]


#: Usage of a customer whose calls wander by about ±20 % a month.
NOISY = ["1000", "1180", "870", "1050", "1210", "940", "1100", "820", "990", "1150", "1060", "900", "1020"]


def kinds(findings) -> list[str]:
    return sorted({f.kind for f in findings})


def test_an_ordinary_month_has_no_finding():
    past = history(lambda i: [seats(i), usage(i, NOISY[i])])
    assert score_invoice(invoice(13, seats(13), usage(13, "1080")), past) == []


def test_a_customer_without_history_is_not_judged():
    assert score_invoice(invoice(13, seats(13, "500"), currency="USD"), []) == []


# ---------------------------------------------------------------- currency


def test_a_currency_the_customer_never_had_is_reported():
    [finding] = score_invoice(invoice(13, seats(13), currency="USD"), history(lambda i: [seats(i)]))
    assert finding.kind == "currency"
    assert "billed in USD" in finding.reason and "were in EUR" in finding.reason


def test_a_second_currency_the_customer_already_pays_in_is_not_reported():
    past = history(lambda i: [seats(i)]) + history(lambda i: [seats(i, sub="S2")], currency="USD")
    assert score_invoice(invoice(13, seats(13, sub="S2"), currency="USD"), past) == []


# ---------------------------------------------------------------- tax rate


def test_a_product_taxed_at_another_rate_than_last_time_is_reported():
    [finding] = score_invoice(invoice(13, seats(13, tax="2")), history(lambda i: [seats(i)]))
    assert finding.kind == "tax_rate"
    assert finding.reason == ("Pro seats taxed at 2 %; the customer's previous invoice with it (2026-01-01) had 20 %")
    assert finding.score == D("18.00")


def test_a_new_product_at_its_own_rate_is_not_a_tax_change():
    new = seats(13, quantity="1", price="20.00", tax="5.5")._replace(product_code="BOOKS", product_name="E-books")
    assert score_invoice(invoice(13, seats(13), new), history(lambda i: [seats(i)])) == []


# ---------------------------------------------------------------- duplicate


def test_the_same_charge_twice_on_an_invoice_is_reported():
    found = score_invoice(invoice(13, seats(13), seats(13, sub="S9")), history(lambda i: [seats(i)]))
    assert "duplicate" in kinds(found)
    [dup] = [f for f in found if f.kind == "duplicate"]
    assert "charged 2 times (on this invoice)" in dup.reason


def test_a_period_already_billed_on_a_previous_invoice_is_reported():
    again = seats(12)._replace(subscription_id="S9")  # the period of last month, billed again
    found = score_invoice(invoice(13, seats(13), again), history(lambda i: [seats(i)]))
    assert any(f.kind == "duplicate" and "already on a previous invoice" in f.reason for f in found)


def test_two_identical_subscriptions_the_customer_always_had_are_not_a_duplicate():
    past = history(lambda i: [seats(i), seats(i, sub="S2")])
    assert score_invoice(invoice(13, seats(13), seats(13, sub="S2")), past) == []


# ---------------------------------------------------------------- back-billing


def test_a_period_a_year_back_is_reported():
    old = seats(1)
    found = score_invoice(invoice(13, seats(13), old), history(lambda i: [seats(i, "7")]))
    [back] = [f for f in found if f.kind == "back_billed"]
    assert "2025-02-01 to 2025-03-01, 365 days before the bill date" in back.reason
    assert back.score == D("3.97")  # 365 days over the 92 allowed


def test_usage_billed_in_arrears_is_not_back_billing():
    past = history(lambda i: [seats(i), usage(i, NOISY[i])])
    assert score_invoice(invoice(13, seats(13), usage(13, "1000")), past) == []


def test_a_customer_billed_quarterly_in_arrears_has_more_room():
    def quarter(i: int) -> LineFacts:
        ln = usage(i, "1000")
        return ln._replace(starts_on=add_months(month(i), -3))

    past = history(lambda i: [quarter(i)])
    assert score_invoice(invoice(13, quarter(13)), past) == []
    assert kinds(score_invoice(invoice(13, quarter(13)._replace(starts_on=month(4))), past)) == ["back_billed"]


# ---------------------------------------------------------------- quantity


def test_ten_times_the_seats_with_no_amendment_is_reported():
    found = score_invoice(invoice(13, seats(13, "100")), history(lambda i: [seats(i)]))
    assert kinds(found) == ["quantity", "total"]
    [q] = [f for f in found if f.kind == "quantity"]
    assert "Pro seats quantity 100 where the customer's 13 invoices had a median of 10 (10 times the median" in q.reason
    assert "no amendment or renewal changed it" in q.reason


def test_an_upgrade_recorded_by_an_amendment_is_not_reported():
    upgrade = TermsChange("S1", date(2026, 1, 15), "change_quantity", "amendment A-1 (change quantity)",
                          frozenset({"PRO"}))
    assert score_invoice(invoice(13, seats(13, "60")), history(lambda i: [seats(i)]), [upgrade]) == []


def test_a_quantity_far_from_the_one_the_amendment_set_is_reported():
    upgrade = TermsChange("S1", date(2026, 1, 15), "change_quantity", "amendment A-1 (change quantity)",
                          frozenset({"PRO"}), D(60))
    assert score_invoice(invoice(13, seats(13, "60")), history(lambda i: [seats(i)]), [upgrade]) == []
    [finding] = score_invoice(invoice(13, seats(13, "600")), history(lambda i: [seats(i)]), [upgrade])
    assert finding.kind == "quantity"
    assert finding.reason == ("Pro seats quantity 600 where amendment A-1 (change quantity) on 2026-01-15 set 60 "
                              "(10 times that)")


def test_after_an_upgrade_the_new_quantity_is_the_baseline():
    upgrade = TermsChange("S1", month(11), "change_quantity", "amendment A-1 (change quantity)", frozenset({"PRO"}))
    past = history(lambda i: [seats(i, "60" if i >= 11 else "10")])
    assert score_invoice(invoice(13, seats(13, "60")), past, [upgrade]) == []
    found = score_invoice(invoice(13, seats(13, "600")), past, [upgrade])
    assert "quantity" in kinds(found)
    assert any("since amendment A-1 (change quantity) on 2025-12-01" in f.reason for f in found)


def test_a_renewal_does_not_explain_a_new_quantity():
    renewal = TermsChange("S1", month(13), "renew", "the renewal of 2026-02-01")
    assert "quantity" in kinds(score_invoice(invoice(13, seats(13, "100")), history(lambda i: [seats(i)]),
                                             [renewal]))


def test_a_small_change_in_seats_is_not_far():
    assert score_invoice(invoice(13, seats(13, "11")), history(lambda i: [seats(i)])) == []


# ---------------------------------------------------------------- usage


def test_usage_ten_times_the_pattern_is_reported():
    found = score_invoice(invoice(13, usage(13, "10500")), history(lambda i: [usage(i, NOISY[i])]))
    assert "usage" in kinds(found)
    [u] = [f for f in found if f.kind == "usage"]
    assert "no such peak in the same month last year" in u.reason


def test_a_seasonal_peak_seen_the_same_month_last_year_is_not_reported():
    peaks = list(NOISY)
    peaks[1] = "3900"  # February a year ago (the usage of January, billed on 1 February)
    past = history(lambda i: [usage(i, peaks[i])])
    assert score_invoice(invoice(13, usage(13, "4200")), past) == []


def test_usage_far_below_the_pattern_is_not_a_usage_anomaly():
    found = score_invoice(invoice(13, seats(13), usage(13, "50")), history(lambda i: [seats(i), usage(i, NOISY[i])]))
    assert found == []


def test_usage_needs_some_history_first():
    rules = GuardRules(min_history=3)
    past = history(lambda i: [usage(i, NOISY[i])], months=range(11, 13))
    assert score_invoice(invoice(13, usage(13, "10500")), past, rules=rules) == []


# ---------------------------------------------------------------- total


def test_a_total_far_above_the_pattern_is_reported():
    one_off = LineFacts("SETUP", "Setup", "one_time", "S1", month(13), month(14), D(1), D("2000"), D("2000"), D(0),
                        D(20))
    found = score_invoice(invoice(13, seats(13), one_off), history(lambda i: [seats(i)]))
    assert kinds(found) == ["total"]
    assert "net total 2350 EUR" in found[0].reason


def test_a_one_time_fee_added_by_an_amendment_is_not_reported():
    one_off = LineFacts("SETUP", "Setup", "one_time", "S1", month(13), month(14), D(1), D("2000"), D("2000"), D(0),
                        D(20))
    added = TermsChange("S1", date(2026, 1, 20), "add_item", "amendment A-2 (add item)", frozenset({"SETUP"}))
    assert score_invoice(invoice(13, seats(13), one_off), history(lambda i: [seats(i)]), [added]) == []


# ---------------------------------------------------------------- price


def test_a_dropped_discount_is_reported():
    found = score_invoice(invoice(13, seats(13)), history(lambda i: [seats(i, discount_percent="15")]))
    assert kinds(found) == ["price"]
    assert found[0].reason == (
        "Pro seats charged 35 per unit (35, no discount); the customer's invoice of 2026-01-01 charged 29.75 "
        "(35 less 15 %), 17.65 % more with no recorded change behind it: a discount no longer applied?")


def test_a_renewal_uplift_recorded_on_the_subscription_is_not_reported():
    renewal = TermsChange("S1", month(13), "renew", "the renewal of 2026-02-01")
    past = history(lambda i: [seats(i, discount_percent="15")])
    assert score_invoice(invoice(13, seats(13, price="37.10", discount_percent="15")), past, [renewal]) == []


def test_a_renewal_does_not_explain_a_discount_that_went_away():
    renewal = TermsChange("S1", month(13), "renew", "the renewal of 2026-02-01")
    past = history(lambda i: [seats(i, discount_percent="15")])
    assert kinds(score_invoice(invoice(13, seats(13, price="37.10")), past, [renewal])) == ["price"]


def test_a_price_raised_with_no_renewal_or_new_price_is_reported():
    found = score_invoice(invoice(13, seats(13, price="37.10")), history(lambda i: [seats(i)]))
    assert kinds(found) == ["price"] and "a price raised without a new price or a renewal" in found[0].reason


def test_a_price_below_what_the_customer_paid_is_reported():
    found = score_invoice(invoice(13, seats(13, price="3.50")), history(lambda i: [seats(i)]))
    assert "price" in kinds(found)
    assert any("90 % less" in f.reason and "a price below the contract" in f.reason for f in found)


def test_a_price_change_recorded_by_an_amendment_is_not_reported():
    change = TermsChange("S1", date(2026, 1, 10), "change_price", "amendment A-3 (change price)", frozenset({"PRO"}))
    assert score_invoice(invoice(13, seats(13, price="30.00")), history(lambda i: [seats(i)]), [change]) == []


def test_rounding_within_the_tolerance_is_not_a_price_change():
    assert score_invoice(invoice(13, seats(13, price="35.20")), history(lambda i: [seats(i)])) == []


# ---------------------------------------------------------------- statistics and rules


def test_robust_z_uses_the_floor_when_the_history_never_moves():
    rules = GuardRules()
    constant = [D(10)] * 12
    assert robust_z(D(20), constant, rules) == pytest.approx(D("4.5"))  # twice the median: just at the threshold
    assert robust_z(D(10), constant, rules) == 0


def test_robust_z_widens_with_a_noisy_history():
    rules = GuardRules()
    noisy = [D(x) for x in NOISY]
    assert abs(robust_z(D(2500), noisy, rules)) < robust_z(D(2500), [D(1000)] * 13, rules)


def test_history_older_than_the_window_is_ignored():
    rules = GuardRules(history_months=3)
    past = history(lambda i: [seats(i)], months=range(0, 9))  # the last is 5 months before
    assert score_invoice(invoice(13, seats(13), currency="USD"), past, rules=rules) == []


@pytest.mark.parametrize("field,value", [("z_threshold", D(0)), ("min_factor", D(1)), ("min_history", 0),
                                         ("history_months", 0), ("backbill_days", 0),
                                         ("price_tolerance_percent", D(-1))])
def test_rules_refuse_meaningless_thresholds(field, value):
    with pytest.raises(InvalidInputError, match=field):
        GuardRules(**{field: value})


# ---------------------------------------------------------------- the changes a subscription records


def test_a_subscription_tells_its_amendments_with_their_products_and_its_renewals():
    from billing_engine.catalog import make_price, make_product
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
    from billing_engine.use_cases.anomalies import subscription_changes

    seats = make_price("pr-seats", make_product("p-seats", "PRO", "Pro seats"), currency="EUR", model="per_unit",
                       unit_price="35")
    setup = make_price("pr-setup", make_product("p-setup", "SETUP", "Setup"), currency="EUR", model="flat",
                       unit_price="500", charge_type="one_time")
    sub = make_subscription("S1", "C1", "EUR", date(2025, 1, 1), [SubscriptionItem("seats", seats, quantity=D(10))],
                            renewal_uplift_percent=5)
    sub = sub.amend(Amendment("A-1", 1, AmendmentAction.CHANGE_QUANTITY, date(2025, 6, 1), item_id="seats",
                              quantity=D(20)))
    sub = sub.amend(Amendment("A-2", 2, AmendmentAction.ADD_ITEM, date(2025, 7, 1),
                              item=SubscriptionItem("setup", setup)))
    sub = sub.amend(Amendment("A-3", 3, AmendmentAction.CANCEL, date(2026, 6, 1)))

    changes = subscription_changes(sub, date(2026, 2, 1))

    assert [(c.effective_on, c.action, c.product_codes) for c in changes] == [
        (date(2025, 6, 1), "change_quantity", frozenset({"PRO"})),
        (date(2025, 7, 1), "add_item", frozenset({"SETUP"})),
        (date(2026, 1, 1), "renew", frozenset()),
    ]
    assert changes[0].description == "amendment A-1 (change quantity)"
    assert changes[2].description == "the renewal of 2026-01-01"
