"""Property tests (hypothesis) of docs/billing-rules.md §3 Proration, §5 Pricing models: proration splits,
same-day round trips, volume vs graduated in the first tier, and no negative amounts."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.money import minor_units, round_money
from billing_engine.periods import Interval, period_containing
from billing_engine.pricing import PRICING_MODELS, Tier, rate
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription

PRODUCT = make_product("p-x", "X", "X")
prices = st.decimals(min_value=D(0), max_value=D(100000), places=6)
quantities = st.decimals(min_value=D(0), max_value=D(100000), places=3)
currencies = st.sampled_from(["EUR", "JPY", "KWD"])
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31))
intervals = st.sampled_from(list(Interval))


@st.composite
def tier_lists(draw):
    count = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(1, 10000), min_size=count - 1, max_size=count - 1)))
    tiers = []
    for index in range(count):
        tiers.append(Tier(up_to=D(bounds[index]) if index < count - 1 else None, unit_price=draw(prices),
                          flat_fee=draw(st.sampled_from([D(0), draw(prices)]))))
    return tuple(tiers)


@settings(max_examples=150, deadline=None)
@given(price=prices, quantity=st.integers(0, 500), currency=currencies, anchor=days, interval=intervals,
       offset=st.integers(1, 400))
def test_splitting_a_period_costs_the_full_price_within_one_minor_unit_per_piece(
        price, quantity, currency, anchor, interval, offset):
    """docs/billing-rules.md §3 Proration: [start, D) + [D, end) billed as two prorated pieces ≈ the full
    period, within one minor unit per piece (each piece is rounded half up on its own)."""
    full = period_containing(anchor, interval, anchor)
    split = full.starts_on + timedelta(days=1 + offset % (full.days - 1))
    the_price = make_price("pr-x", PRODUCT, currency=currency, model="per_unit", unit_price=price,
                           interval=interval.value)
    items = [SubscriptionItem("x", the_price, D(quantity))]
    whole = make_subscription("s-whole", "c", currency, full.starts_on, items, term_months=None)
    first = whole.amend(Amendment("cut", 0, AmendmentAction.CANCEL, split, immediate=True))
    second = make_subscription("s-rest", "c", currency, split, items, billing_anchor_on=anchor, term_months=None)
    whole_amount = sum(line.amount for line in charges_due(whole, full.starts_on))
    pieces = [line.amount for sub in (first, second) for line in charges_due(sub, split)
              if line.starts_on < full.ends_before]
    assert len(pieces) <= 2  # lines that round to zero are not billed
    assert abs(sum(pieces) - whole_amount) <= 2 * D(1).scaleb(-minor_units(currency))


@settings(max_examples=100, deadline=None)
@given(quantity=st.integers(0, 50), bigger=st.integers(1, 50), price=prices, offset=st.integers(1, 27),
       bill_in_between=st.booleans())
def test_an_upgrade_and_a_downgrade_back_on_the_same_day_net_to_zero(quantity, bigger, price, offset,
                                                                     bill_in_between):
    """docs/billing-rules.md §3 Proration: same-day changes bill only the day's last state, so up-then-back
    nets to zero, whether or not a bill run happened between the two changes."""
    the_price = make_price("pr-x", PRODUCT, currency="EUR", model="per_unit", unit_price=price)
    sub = make_subscription("s", "c", "EUR", date(2026, 2, 1), [SubscriptionItem("x", the_price, D(quantity))])
    billed = charges_due(sub, date(2026, 2, 1))
    day = date(2026, 2, 1) + timedelta(days=offset)
    sub = sub.amend(Amendment("up", 0, AmendmentAction.CHANGE_QUANTITY, day, item_id="x",
                              quantity=D(quantity + bigger)))
    if bill_in_between:
        billed = billed + charges_due(sub, day, billed=billed)
    sub = sub.amend(Amendment("down", 0, AmendmentAction.CHANGE_QUANTITY, day, item_id="x", quantity=D(quantity)))
    after = charges_due(sub, date(2026, 2, 28), billed=billed)
    changes = [line for line in billed + after if line.kind != "recurring"]
    assert sum(line.amount for line in changes) == 0


@settings(max_examples=200, deadline=None)
@given(tiers=tier_lists(), fraction=st.fractions(min_value=0, max_value=1))
def test_volume_and_graduated_agree_in_the_first_tier(tiers, fraction):
    """docs/billing-rules.md §5 Pricing models: in the first tier, each unit is priced the same way under
    both models."""
    first = tiers[0].up_to if tiers[0].up_to is not None else D(100000)
    quantity = (first * D(fraction.numerator) / D(fraction.denominator)).quantize(D("0.001"))
    quantity = min(quantity, first)
    graduated = PRICING_MODELS["graduated"].rate(_terms("graduated", tiers), quantity).amount
    volume = PRICING_MODELS["volume"].rate(_terms("volume", tiers), quantity).amount
    assert graduated == volume


def _terms(model, tiers):
    return make_price("pr-t", PRODUCT, currency="EUR", model=model, tiers=tiers).terms


@st.composite
def any_price(draw):
    model = draw(st.sampled_from(sorted(PRICING_MODELS)))
    kwargs = {}
    if model in ("flat", "per_unit", "package", "allowance"):
        kwargs["unit_price"] = draw(prices)
    if model in ("graduated", "volume"):
        kwargs["tiers"] = draw(tier_lists())
    if model == "package":
        kwargs["package_size"] = draw(st.decimals(min_value=D("0.5"), max_value=D(5000), places=1))
    if model == "allowance":
        kwargs["included_units"] = draw(quantities)
        kwargs["overage_unit_price"] = draw(prices)
    if model == "percent_of":
        kwargs["percent"] = draw(st.decimals(min_value=D(0), max_value=D(100), places=2))
        kwargs["covered_product_codes"] = ["X"]
    return make_price("pr-any", PRODUCT, currency="EUR", model=model, **kwargs)


@settings(max_examples=300, deadline=None)
@given(price=any_price(), quantity=quantities)
def test_no_pricing_model_returns_a_negative_amount(price, quantity):
    """docs/billing-rules.md §5 Pricing models: for q ≥ 0 every model's amount is ≥ 0 (percent_of: of a
    base ≥ 0)."""
    assert round_money(rate(price.terms, quantity).amount, "EUR") >= 0


@settings(max_examples=60, deadline=None)
@given(changes=st.lists(st.tuples(st.integers(0, 364), st.integers(0, 40)), max_size=5),
       run_every=st.sampled_from([1, 7, 30, 365]), anchor_day=st.sampled_from([1, 15, 29, 31]))
def test_billing_often_or_once_bills_the_same_total(changes, run_every, anchor_day):
    """Design: lines are a function of history, so billing daily, weekly or once a year sums the same,
    even when amendments are recorded after the bill runs they affect."""
    the_price = make_price("pr-x", PRODUCT, currency="EUR", model="per_unit", unit_price="9.99")
    start = date(2028, 1, 10)
    base = make_subscription("s", "c", "EUR", start, [SubscriptionItem("x", the_price, D(3))],
                             billing_anchor_day=anchor_day)
    final = base
    for index, (offset, qty) in enumerate(changes):
        final = final.amend(Amendment(f"a{index}", 0, AmendmentAction.CHANGE_QUANTITY, start + timedelta(offset),
                                      item_id="x", quantity=D(qty)))
    end = start + timedelta(days=370)
    once = sum(line.amount for line in charges_due(final, end))
    billed = []
    day = start
    while day <= end:
        known = base  # amendments are recorded late: 20 days after they take effect
        for amendment in final.amendments:
            if amendment.effective_on + timedelta(days=20) <= day:
                known = known.amend(amendment)
        billed += charges_due(known, day, billed=billed)
        day += timedelta(days=run_every)
    billed += charges_due(final, end, billed=billed)
    assert sum(line.amount for line in billed) == once
    assert len({line.key for line in billed}) == len(billed)
