"""MRR, movements and the bridge (docs/billing-rules.md §17 Revenue metrics: MRR and ARR)."""

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.errors import InvalidInputError
from billing_engine.revenue import (
    ItemMrr,
    customer_mrr,
    month_range,
    monthly_amount,
    movements_and_bridge,
    previous_month_end,
    total_mrr,
)


def item(customer, amount, interval="month", currency="USD", n=0):
    return ItemMrr(customer, f"s-{customer}", f"i-{customer}-{n}", currency, monthly_amount(D(amount), interval))


def test_stripe_example_mrr_is_12500():
    # 100 × 100/month + 50 × 600/year = 10,000 + 50 × 50 = 12,500
    items = [item(f"m{i}", 100) for i in range(100)] + [item(f"y{i}", 600, "year") for i in range(50)]
    assert total_mrr(customer_mrr(items)) == {"USD": D("12500.00")}


def test_customer_rounding_then_sum_of_rounded_customers():
    # three 100/year items on one customer: 3 × 8.333… = 25.00
    one = customer_mrr([item("c", 100, "year", n=k) for k in range(3)])
    assert one == {("c", "USD"): D("25.00")}
    # one such item on three customers: 3 × 8.33 = 24.99
    assert total_mrr(customer_mrr([item(c, 100, "year") for c in "abc"])) == {"USD": D("24.99")}


def test_normalisation_per_interval():
    assert monthly_amount(D(300), "quarter") == D(100)
    # 10/week × 52 / 12 = 43.333… → customer 43.33
    assert customer_mrr([item("w", 10, "week")]) == {("w", "USD"): D("43.33")}
    # 10,000 JPY/year → 833.33… → 833 yen
    assert customer_mrr([item("j", 10000, "year", "JPY")]) == {("j", "JPY"): D(833)}
    with pytest.raises(InvalidInputError):
        monthly_amount(D(1), "fortnight")


def test_chartmogul_movements():
    # 4 × Gold yearly at 500 → 2,000/12 = 166.67 new; + 2 × Silver 30 → expansion 60;
    # Silver cancelled → contraction 60; Gold ends → churn 166.67; later back → reactivation.
    gold = [ItemMrr("c", "s1", "gold", "USD", monthly_amount(D(2000), "year"))]
    silver = [ItemMrr("c", "s2", "silver", "USD", D(60))]
    snaps = [("m1", customer_mrr(gold)), ("m2", customer_mrr(gold + silver)), ("m3", customer_mrr(gold)),
             ("m4", {}), ("m5", customer_mrr(silver))]
    moves, rows = movements_and_bridge({}, snaps)
    assert [(m.kind, abs(m.amount)) for m in moves] == [
        ("new", D("166.67")), ("expansion", D("60.00")), ("contraction", D("60.00")),
        ("churn", D("166.67")), ("reactivation", D("60.00"))]
    assert [r.closing for r in rows] == [D("166.67"), D("226.67"), D("166.67"), 0, D("60.00")]
    assert all(r.holds() for r in rows)


def test_seed_bridge_adds_up_to_11250():
    # 10,000 existing + 1,950 new + 300 expansion − 200 contraction − 800 churn = 11,250
    opening = {("a", "EUR"): D(800), ("b", "EUR"): D(1000), ("c", "EUR"): D(8200)}
    closing = {("b", "EUR"): D(800), ("c", "EUR"): D(8500), ("d", "EUR"): D(1950)}
    _, [row] = movements_and_bridge(opening, [("2026-01", closing)])
    assert (row.opening, row.new, row.expansion, row.contraction, row.churn, row.closing) == (
        D(10000), D(1950), D(300), D(200), D(800), D(11250))
    assert row.arr == D(135000)


def test_reactivation_needs_mrr_at_an_earlier_measurement_date():
    # a customer at 0 at opening: new, unless it had MRR before the opening date
    _, [row] = movements_and_bridge({}, [("2026-01", {("a", "EUR"): D(10)})], had_mrr_before={("a", "EUR")})
    assert (row.new, row.reactivation) == (0, D(10))
    _, [row] = movements_and_bridge({}, [("2026-01", {("a", "EUR"): D(10)})])
    assert (row.new, row.reactivation) == (D(10), 0)


def test_a_subscription_inside_one_month_leaves_no_movement_and_currencies_stay_apart():
    opening = {("a", "EUR"): D(10), ("b", "JPY"): D(1000)}
    moves, rows = movements_and_bridge(opening, [("2026-01", opening)])
    assert moves == [] and [(r.currency, r.closing) for r in rows] == [("EUR", D(10)), ("JPY", D(1000))]


def test_month_range():
    assert month_range("2025-11", "2026-02") == [("2025-11", date(2025, 11, 30)), ("2025-12", date(2025, 12, 31)),
                                                 ("2026-01", date(2026, 1, 31)), ("2026-02", date(2026, 2, 28))]
    assert previous_month_end("2026-01") == date(2025, 12, 31)
    with pytest.raises(InvalidInputError):
        month_range("2026-12", "2026-01")


def test_streaming_bridge_matches_the_snapshot_bridge():
    # Same customers through both: one steady (fast path), one moving, one returning after an earlier churn.
    from billing_engine.revenue import bridge_from_series

    labels = ["2026-01", "2026-02", "2026-03"]
    series = [(("steady", "EUR"), False, [D(100)] * 4),
              (("mover", "EUR"), False, [D(0), D("166.67"), D("226.67"), D(0)]),
              (("back", "EUR"), True, [D(0), D(0), D(50), D(50)])]
    opening = {k: v[0] for k, _, v in series}
    snaps = [(label, {k: v[i + 1] for k, _, v in series}) for i, label in enumerate(labels)]
    moves_a, rows_a = movements_and_bridge(opening, snaps, had_mrr_before={("back", "EUR")})
    moves_b, rows_b = bridge_from_series(labels, series)
    assert rows_a == rows_b and sorted(moves_a, key=str) == sorted(moves_b, key=str)
    # Feb: expansion 60.00 (166.67 → 226.67), reactivation 50; Mar: churn 226.67; 100 + 50 = 150 at the close
    assert [(r.expansion, r.reactivation, r.churn, r.closing) for r in rows_b] == [
        (0, 0, 0, D("266.67")), (D("60.00"), D(50), 0, D("376.67")), (0, 0, D("226.67"), D(150))]


def test_an_items_monthly_amount_follows_a_price_whose_amount_changed_under_the_same_id():
    """A PricebookEntry's new list price keeps the price id: MRR must use the new amount, not the one
    measured before in the same process."""
    from billing_engine.catalog import make_price, make_product
    from billing_engine.subscriptions import SubscriptionItem
    from billing_engine.use_cases.revenue import item_monthly_amount

    product = make_product("p-seat", "SEAT", "Seat")
    before = SubscriptionItem("i", make_price("pr-seat", product, currency="EUR", model="per_unit", unit_price="25"),
                              D(12))
    after = SubscriptionItem("i", make_price("pr-seat", product, currency="EUR", model="per_unit", unit_price="30"),
                             D(12))
    assert item_monthly_amount(before, {"i": before}) == D(300)
    assert item_monthly_amount(after, {"i": after}) == D(360)
