"""Late usage (docs/billing-rules.md §12 Usage and late usage): usage that arrives after its period was
billed is billed on the next invoice as its own ``usage`` line, dated to its period, for the re-rated total
minus what was billed."""

from datetime import date
from decimal import Decimal as D

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due, usage_windows
from billing_engine.periods import Period
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

DATA = make_price("pr-data", make_product("p-data", "DATA", "Data plan"), currency="EUR", model="allowance",
                  charge_type="usage", unit_price="10", included_units="40", overage_unit_price="0.50")
API = make_price("pr-api", make_product("p-api", "API", "API calls"), currency="JPY", model="graduated",
                 charge_type="usage", tiers=[{"up_to": 1000, "unit_price": 10}, {"up_to": None, "unit_price": 5}])
CALLS = make_price("pr-calls", make_product("p-calls", "CALLS", "Calls"), currency="EUR", model="per_unit",
                   charge_type="usage", unit_price="0.5")
BASE = make_price("pr-base", make_product("p-base", "BASE", "Base"), currency="EUR", model="flat", unit_price="10")
OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)


def test_late_usage_is_one_usage_line_for_what_it_adds_dated_to_its_period():
    # Seed example: 10 €/month including 40 GB, 0.50 €/GB over. October billed at 40 GB (10.00);
    # 15 GB more arrive after: 55 GB → 17.50, so December's invoice carries +7.50 for October.
    sub = make_subscription("s", "c", "EUR", OCT, [SubscriptionItem("data", DATA)])
    billed = charges_due(sub, NOV, usage={("data", OCT): D(40)})
    assert [(ln.key, ln.amount) for ln in billed] == [("s:data:2026-10-01:usage", D("10.00"))]
    lines = charges_due(sub, DEC, billed, usage={("data", OCT): D(55), ("data", NOV): D(0)})
    late = [ln for ln in lines if ln.starts_on == OCT]
    assert [(ln.kind, ln.amount, ln.quantity, ln.unit_price, ln.starts_on, ln.ends_before) for ln in late] == [
        ("usage", D("7.50"), D(15), D("0.5"), OCT, NOV)]
    assert late[0].key.startswith("s:data:2026-10-01:usage#late-") and late[0].key != billed[0].key
    assert late[0].explanation.startswith("Late usage for Oct 1 – Nov 1 2026: 55 total, 40 billed before: +15 × 0.5")
    # November's own usage line is separate; nothing is credited or re-charged "as billed"
    assert sorted(ln.kind for ln in lines) == ["usage", "usage"] and sum(ln.amount for ln in lines) == D("17.50")
    # billed once: the same figure again adds nothing; more late usage adds its own line
    assert [ln for ln in charges_due(sub, DEC, billed + lines, usage={("data", OCT): D(55), ("data", NOV): D(0)})
            if ln.starts_on == OCT] == []
    more = charges_due(sub, DEC, billed + lines, usage={("data", OCT): D(60), ("data", NOV): D(0)})
    assert [(ln.kind, ln.amount, ln.quantity) for ln in more] == [("usage", D("2.50"), D(5))]
    assert more[0].key not in {ln.key for ln in billed + lines}


def test_late_usage_is_rated_on_the_whole_period_for_tiered_prices():
    # 900 calls billed (9,000); 300 late: 1,200 → 1,000 × 10 + 200 × 5 = 11,000, so +2,000 (not 300 × 10)
    sub = make_subscription("s", "c", "JPY", date(2026, 1, 1), [SubscriptionItem("api", API)])
    billed = charges_due(sub, date(2026, 2, 1), usage={("api", date(2026, 1, 1)): D(900)})
    assert [ln.amount for ln in billed] == [D(9000)]
    [late] = charges_due(sub, date(2026, 2, 1), billed, usage={("api", date(2026, 1, 1)): D(1200)})
    assert (late.kind, late.amount, late.quantity, late.starts_on) == ("usage", D(2000), D(300), date(2026, 1, 1))
    assert "1200 total, 900 billed before: +300" in late.explanation


def test_usage_windows_include_zero_windows_and_start_when_an_item_is_added_mid_period():
    sub = make_subscription("s", "c", "EUR", date(2026, 1, 1), [SubscriptionItem("base", BASE)])
    sub = sub.amend(Amendment("a1", 0, AmendmentAction.ADD_ITEM, date(2026, 3, 15),
                              item=SubscriptionItem("calls", CALLS)))
    assert usage_windows(sub, date(2026, 4, 30)) == [
        ("calls", Period(date(2026, 3, 15), date(2026, 4, 1))), ("calls", Period(date(2026, 4, 1), date(2026, 5, 1)))]
    # usage keyed by its window start bills in arrears with the period's key
    lines = charges_due(sub, date(2026, 4, 1), usage={("calls", date(2026, 3, 15)): D(10)})
    assert [(ln.key, ln.amount, ln.starts_on) for ln in lines if ln.kind == "usage"] == [
        ("s:calls:2026-03-01:usage", D("5.00"), date(2026, 3, 15))]
