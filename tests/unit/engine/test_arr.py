"""ARR is the yearly amount: a customer's unrounded MRR × 12, rounded once, never a rounded MRR
× 12 (docs/billing-rules.md §17 Revenue metrics: MRR and ARR)."""

from datetime import date
from decimal import Decimal as D

from billing_engine.catalog import make_price, make_product
from billing_engine.revenue import (
    ItemMrr,
    annual_amount,
    bridge_from_series,
    customer_arr,
    customer_mrr,
    monthly_amount,
    movements_and_bridge,
)
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.revenue import (
    SubscriptionMrrSource,
    mrr_and_arr_snapshots,
    mrr_bridge,
    subscription_mrr_versions,
)

PLATFORM = make_price("pr-platform", make_product("p-platform", "PLATFORM", "Platform"), currency="EUR",
                      model="flat", interval="year", unit_price="29000")
CONTRACT = make_subscription("sub-1", "cus-1", "EUR", date(2026, 1, 1), [SubscriptionItem("platform", PLATFORM)])


def item(customer, amount, interval="year", currency="EUR", n=0):
    return ItemMrr(customer, f"s-{customer}", f"i-{customer}-{n}", currency, monthly_amount(D(amount), interval))


def test_a_29000_yearly_contract_has_arr_29000_and_mrr_2416_67():
    items = [item("c", 29000)]
    assert customer_mrr(items) == {("c", "EUR"): D("2416.67")}
    assert customer_arr(items) == {("c", "EUR"): D("29000.00")}  # not 2,416.67 × 12 = 29,000.04
    assert annual_amount(monthly_amount(D(29000), "year"), "EUR") == D("29000.00")


def test_arr_is_rounded_once_per_customer_from_its_items():
    # three 100/year items: 300.00 a year (MRR 25.00); 10/week: 520.00 a year (MRR 43.33 × 12 = 519.96)
    assert customer_arr([item("c", 100, n=k) for k in range(3)]) == {("c", "EUR"): D("300.00")}
    assert customer_arr([item("w", 10, "week")]) == {("w", "EUR"): D("520.00")}
    # 10,000 JPY a year: MRR 833 yen, ARR 10,000 yen (not 9,996)
    assert customer_arr([item("j", 10000, currency="JPY")]) == {("j", "JPY"): D(10000)}


def test_the_account_snapshot_gives_arr_from_the_yearly_amount():
    [(mrr, arr)] = mrr_and_arr_snapshots(subscription_mrr_versions(CONTRACT, date(2026, 6, 30)), [date(2026, 6, 30)])
    assert (mrr, arr) == ({("cus-1", "EUR"): D("2416.67")}, {("cus-1", "EUR"): D("29000.00")})


def test_the_bridge_arr_column_is_the_sum_of_customer_arr():
    source = SubscriptionMrrSource(lambda session: [CONTRACT])
    for collect_movements in (True, False):
        rows, _ = mrr_bridge(None, "2026-01", "2026-02", source=source,  # type: ignore[arg-type]
                             collect_movements=collect_movements)
        assert [(r.period, r.closing, r.arr) for r in rows] == [("2026-01", D("2416.67"), D("29000.00")),
                                                                ("2026-02", D("2416.67"), D("29000.00"))]
        assert rows[0].as_row()["arr"] == "29000.00"


def test_the_streaming_and_snapshot_bridges_agree_on_arr():
    labels = ["2026-01", "2026-02"]
    series = [(("y", "EUR"), False, [D(0), D("2416.67"), D("2416.67")], 1,
               [D(0), D("29000.00"), D("29000.00")]),
              (("m", "EUR"), False, [D(100)] * 3)]  # without ARR values: MRR × 12
    _, streamed = bridge_from_series(labels, series)
    opening = {("y", "EUR"): D(0), ("m", "EUR"): D(100)}
    snaps = [(label, {("y", "EUR"): D("2416.67"), ("m", "EUR"): D(100)}) for label in labels]
    annual = [{("y", "EUR"): D("29000.00"), ("m", "EUR"): D(1200)}] * 2
    _, snapshot = movements_and_bridge(opening, snaps, closing_arr=annual)
    assert streamed == snapshot
    assert [r.arr for r in streamed] == [D("30200.00"), D("30200.00")]
