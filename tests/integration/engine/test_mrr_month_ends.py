"""The MRR kept at month ends (``mrr_month_ends``) against the computation from the subscriptions:
for seeded random histories written through the subscription use cases (starts, amendments,
cancellations, renewals, uplifts, currencies, back-dated changes), the bridge, its movements and
the dashboard read from the kept rows equal the from-scratch computation month by month; the
check finds a tampered row; a database upgraded with subscriptions computes from scratch until
rebuilt."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import update
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.errors import BillingError
from billing_engine.storage import revenue as revenue_store
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases import dashboard
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.revenue import (
    check_mrr_month_ends,
    database_mrr_source,
    kept_mrr_bridge,
    mrr_bridge,
    mrr_bridge_months,
    mrr_movements,
    rebuild_mrr_month_ends,
)
from billing_engine.use_cases.subscriptions import (
    amend_subscription,
    cancel_subscription,
    get_subscription,
    renew_subscription,
    start_subscription,
)
from connector.database import transaction

P = {
    "EUR": [make_price("pr-e-seat", make_product("p-e-seat", "SEAT", "Seats"), currency="EUR", model="per_unit",
                       unit_price="33.33"),
            make_price("pr-e-year", make_product("p-e-year", "YEAR", "Annual"), currency="EUR", model="flat",
                       interval="year", unit_price="1000"),
            make_price("pr-e-sup", make_product("p-e-sup", "SUP", "Support"), currency="EUR", model="percent_of",
                       percent="15", covered_product_codes=["SEAT"])],
    "USD": [make_price("pr-u-pro", make_product("p-u-pro", "PRO", "Pro"), currency="USD", model="flat",
                       unit_price="299"),
            make_price("pr-u-seat", make_product("p-u-seat", "USEAT", "Seats"), currency="USD",
                       model="graduated", tiers=[{"up_to": 5, "unit_price": 20}, {"up_to": None, "unit_price": 15}])],
    "JPY": [make_price("pr-j-base", make_product("p-j-base", "BASE", "Base"), currency="JPY", model="flat",
                       unit_price="4999")],
}


TODAY = date(2026, 12, 6)


def _day(rng: random.Random, first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + rng.randrange(months)
    return date(index // 12, index % 12 + 1, rng.randint(1, 28))


def seed_histories(engine, seed: int, customers: int = 30) -> None:
    """Random customers and subscription histories, written the way the product writes them."""
    rng = random.Random(seed)
    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)  # an empty database: kept through 2031-12
        for prices in P.values():
            for price in prices:
                upsert_product(s, price.product)
                upsert_price(s, price)
    for n in range(customers):
        currency = rng.choice(["EUR", "EUR", "USD", "JPY"])
        cid = f"cus-{n:03d}"
        with transaction(engine) as s:
            upsert_customer(s, Customer(cid, f"Customer {n}", currency))
        subs = []
        for k in range(rng.choice([1, 1, 1, 2, 3])):
            prices = P[currency]
            chosen = rng.sample(prices, rng.randint(1, len(prices)))
            if all(p.terms.model == "percent_of" for p in chosen):
                chosen.insert(0, prices[0])
            items = [SubscriptionItem(f"i{j}", p, quantity=D(rng.randint(1, 12))) for j, p in enumerate(chosen)]
            term = rng.choice([None, 1, 12, 12, 24])
            sub = make_subscription(
                f"sub-{n:03d}-{k}", cid, currency, _day(rng, date(2024, 1, 1), 40), items,
                term_months=term, auto_renew=term is None or rng.random() < 0.7,
                renewal_uplift_percent=rng.choice([0, 0, 5]) if term else 0)
            with transaction(engine) as s:
                start_subscription(s, sub, now=datetime(2024, 1, 1, tzinfo=UTC))
            subs.append(sub)
        for _ in range(rng.randint(0, 5)):
            sub = rng.choice(subs)
            _random_change(engine, rng, sub.subscription_id)


def _random_change(engine, rng: random.Random, subscription_id: str) -> None:
    with Session(engine) as s:
        current = get_subscription(s, subscription_id)
    on = _day(rng, current.starts_on, 30)  # may be before earlier changes: back-dated
    items = list(current.versions(on)[-1].items.values()) if current.versions(on) else []
    action = rng.choice(["quantity", "quantity", "add", "remove", "price", "cancel", "cancel_now", "renew"])
    try:
        with transaction(engine) as s:
            if action == "cancel":
                cancel_subscription(s, subscription_id, on)
            elif action == "cancel_now":
                cancel_subscription(s, subscription_id, on, immediate=True)
            elif action == "renew":
                renew_subscription(s, subscription_id)
            elif action == "add":
                price = rng.choice(P[current.currency])
                amend_subscription(s, subscription_id, Amendment(
                    "", 0, AmendmentAction.ADD_ITEM, on,
                    item=SubscriptionItem(f"x{rng.randint(0, 10**6)}", price, quantity=D(rng.randint(1, 4)))))
            elif items and action == "remove":
                amend_subscription(s, subscription_id, Amendment(
                    "", 0, AmendmentAction.REMOVE_ITEM, on, item_id=rng.choice(items).item_id))
            elif items and action == "price":
                amend_subscription(s, subscription_id, Amendment(
                    "", 0, AmendmentAction.CHANGE_PRICE, on, item_id=rng.choice(items).item_id,
                    unit_price=D(rng.randint(1, 500)) + D("0.005") * rng.randint(0, 3)))
            elif items:
                amend_subscription(s, subscription_id, Amendment(
                    "", 0, AmendmentAction.CHANGE_QUANTITY, on, item_id=rng.choice(items).item_id,
                    quantity=D(rng.randint(0, 20))))
    except BillingError:
        pass  # a change the subscription refuses (after its end, before a later change, ...) writes nothing


def reference_bridge(session, from_month: str, to_month: str):
    rows, _ = mrr_bridge(session, from_month, to_month, source=database_mrr_source(), collect_movements=False)
    return rows


def as_rows(rows):
    return [(r.as_row(), r.movers) for r in rows]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kept_bridge_equals_the_computation_from_the_subscriptions_month_by_month(engine, seed):
    seed_histories(engine, seed)
    with Session(engine) as s:
        assert check_mrr_month_ends(s) == []
        for first, last in [("2023-06", "2027-12"), ("2025-03", "2025-03"), ("2026-01", "2026-12"),
                            ("2029-01", "2029-06")]:
            kept = kept_mrr_bridge(s, first, last)
            assert as_rows(kept) == as_rows(reference_bridge(s, first, last)), (first, last)
        assert any(r.new or r.churn for r in kept_mrr_bridge(s, "2024-01", "2027-06"))
        for month in ("2024-06", "2025-01", "2025-09", "2026-04"):
            _, reference = mrr_bridge(s, month, month, source=database_mrr_source())
            expected = sorted(reference, key=lambda m: (m.customer_id, m.currency))
            assert mrr_movements(s, month, limit=10_000) == expected


def test_the_dashboard_is_the_same_from_the_kept_rows_and_from_the_subscriptions(engine):
    seed_histories(engine, 7)
    with Session(engine) as s:
        kept = dashboard.dashboard(s, "2025-11", as_of=date(2025, 11, 30), reporting_currency="EUR")
    with transaction(engine) as s:
        revenue_store.set_month_ends_state(s, "2031-12", stale=True)
    with Session(engine) as s:
        computed = dashboard.dashboard(s, "2025-11", as_of=date(2025, 11, 30), reporting_currency="EUR")
    assert kept == computed
    assert any(f.waterfall.closing for f in kept.currencies)


def test_a_rebuild_writes_the_rows_the_changes_kept(engine):
    seed_histories(engine, 11, customers=15)
    with Session(engine) as s:
        incremental = revenue_store.month_ends_of(s)
    with transaction(engine) as s:
        assert rebuild_mrr_month_ends(s, today=TODAY, batch_size=4) == len(incremental)
    with Session(engine) as s:
        assert revenue_store.month_ends_of(s) == incremental
        assert incremental


def test_the_check_names_a_row_that_differs_and_a_rebuild_repairs_it(engine):
    seed_histories(engine, 5, customers=5)
    t = revenue_store.MrrMonthEnd.__table__
    with Session(engine) as s:
        cid, currency, month = revenue_store.month_ends_of(s)[0][:3]
    with transaction(engine) as s:
        s.execute(update(t).where(t.c.customer_id == cid, t.c.month == month).values(mrr=D("123456.78")))
    with Session(engine) as s:
        problems = check_mrr_month_ends(s)
    assert len(problems) == 1 and problems[0].startswith(f"{cid} {currency} {month}: kept MRR")
    assert "123456.78" in problems[0]
    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)
    with Session(engine) as s:
        assert check_mrr_month_ends(s) == []


def test_until_rebuilt_a_marked_table_is_not_read(engine):
    seed_histories(engine, 9, customers=8)
    with transaction(engine) as s:
        revenue_store.clear_month_ends(s)
        revenue_store.set_month_ends_state(s, "2031-12", stale=True, reason="upgraded")
    with Session(engine) as s:
        assert check_mrr_month_ends(s)[0].startswith("mrr_month_ends awaits a rebuild")
        from_scratch = mrr_bridge_months(s, "2024-01", "2026-12")
        assert as_rows(from_scratch) == as_rows(reference_bridge(s, "2024-01", "2026-12"))
        assert any(r.closing for r in from_scratch)
    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)
    with Session(engine) as s:
        assert revenue_store.month_ends_state(s) == ("2031-12", False)
        assert as_rows(mrr_bridge_months(s, "2024-01", "2026-12")) == as_rows(from_scratch)


def test_a_bridge_past_the_kept_months_is_computed_from_the_subscriptions(engine):
    seed_histories(engine, 4, customers=4)
    with Session(engine) as s:
        rows = mrr_bridge_months(s, "2031-10", "2032-03")
        assert as_rows(rows) == as_rows(reference_bridge(s, "2031-10", "2032-03"))
        assert as_rows(rows[:9]) == as_rows(kept_mrr_bridge(s, "2031-10", "2031-12"))


@pytest.mark.postgres_only
def test_two_changes_to_one_customer_at_once_leave_its_rows_true(engine):
    """The second transaction waits for the first's lock on the customer, then recomputes from what
    the first committed: neither change is lost from the kept rows."""
    import threading
    import time

    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)
        for price in P["EUR"]:
            upsert_product(s, price.product)
            upsert_price(s, price)
        upsert_customer(s, Customer("cus-x", "Twice", "EUR"))
        for n in (1, 2):
            start_subscription(s, make_subscription(f"sub-x{n}", "cus-x", "EUR", date(2026, 1, 1),
                                                    [SubscriptionItem("seat", P["EUR"][0], quantity=D(2))]))
    first_wrote = threading.Event()
    errors: list[BaseException] = []

    def change(subscription_id: str, quantity: int, hold: float) -> None:
        try:
            with transaction(engine) as s:
                amend_subscription(s, subscription_id, Amendment(
                    "", 0, AmendmentAction.CHANGE_QUANTITY, date(2026, 3, 10), item_id="seat", quantity=D(quantity)))
                first_wrote.set()
                time.sleep(hold)  # the other change runs meanwhile
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    one = threading.Thread(target=change, args=("sub-x1", 5, 0.5))
    one.start()
    first_wrote.wait(10)
    two = threading.Thread(target=change, args=("sub-x2", 7, 0))
    two.start()
    one.join(20)
    two.join(20)
    assert errors == []
    with Session(engine) as s:
        assert check_mrr_month_ends(s) == []
        [march] = [r for r in kept_mrr_bridge(s, "2026-03", "2026-03") if r.currency == "EUR"]
    assert march.closing == D("399.96")  # (5 + 7) × 33.33


@pytest.mark.postgres_only
def test_the_customers_of_a_status_in_pages_are_the_ones_their_standings_give(engine):
    from billing_engine.reporting import STATUSES, billing_status
    from billing_engine.storage import reporting as reporting_store

    seed_histories(engine, 13, customers=25)
    on = date(2026, 3, 31)
    with Session(engine) as s:
        expected = {status: [] for status in STATUSES}
        for st in reporting_store.customer_standings(s, on):
            expected[billing_status(subscriptions=st.subscriptions, past_due=st.past_due, running=st.running,
                                    cancelling=st.cancelling)].append((st.customer_id, st.currency))
        for status in STATUSES:
            pages, after = [], None
            while True:
                page = dashboard.figure_customers(s, "2026-03", f"status:{status}", as_of=on, limit=3, after=after)
                pages += [(c.customer_id, c.currency) for c in page]
                if len(page) < 3:
                    break
                after = pages[-1]
            assert pages == expected[status], status
        assert sum(map(len, expected.values())) == 25 and len([k for k, v in expected.items() if v]) >= 2


def test_an_upgrade_of_a_database_with_subscriptions_computes_from_them_until_rebuilt(engine):
    from alembic import command

    from connector.database import alembic_config, upgrade

    seed_histories(engine, 21, customers=6)
    with Session(engine) as s:
        kept = as_rows(mrr_bridge_months(s, "2024-01", "2026-12"))
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0022_exchange_rates")
    upgrade(engine)
    with Session(engine) as s:
        state = revenue_store.month_ends_state(s)
        assert state is not None and state[1]  # awaits a rebuild
        assert revenue_store.month_ends_of(s) == []
        assert as_rows(mrr_bridge_months(s, "2024-01", "2026-12")) == kept  # from the subscriptions
    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)
    with Session(engine) as s:
        assert check_mrr_month_ends(s) == []
        assert as_rows(kept_mrr_bridge(s, "2024-01", "2026-12")) == kept


def _kept_status(standing, on: date) -> str:
    if standing is None:
        return "none"
    _, running_until, cancelling_until = standing
    if on < running_until:
        return "active"
    return "cancelling" if cancelling_until is not None and on < cancelling_until else "cancelled"


def test_the_kept_standings_give_every_customer_s_status_on_any_date(engine):
    from collections import Counter

    from billing_engine.reporting import billing_status
    from billing_engine.storage import reporting as reporting_store
    from connector.database import is_postgresql

    seed_histories(engine, 13, customers=40)
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-idle", "Idle", "EUR"))  # no subscription: none
    with Session(engine) as s:
        kept = revenue_store.standings_of(s)
        assert kept == revenue_store.standings_from_subscriptions(s)
        days = [date(2023, 1, 1).fromordinal(date(2023, 1, 1).toordinal() + n) for n in range(0, 3400, 23)]
        seen = set()
        for on in days:
            computed = {st.customer_id: billing_status(subscriptions=st.subscriptions, past_due=st.past_due,
                                                       running=st.running, cancelling=st.cancelling)
                        for st in reporting_store.customer_standings(s, on)}
            assert {cid: _kept_status(kept.get(cid), on) for cid in computed} == computed, on
            seen |= set(computed.values())
            if is_postgresql(s.get_bind()):
                assert reporting_store.status_counts(s, on) == Counter(computed.values()), on
    assert seen == {"active", "cancelling", "cancelled", "none"}


def test_the_check_names_a_standing_that_differs_and_a_rebuild_repairs_it(engine):
    seed_histories(engine, 17, customers=4)
    t = revenue_store.SubscriptionStanding.__table__
    with Session(engine) as s:
        cid = sorted(revenue_store.standings_of(s))[0]
    with transaction(engine) as s:
        s.execute(update(t).where(t.c.customer_id == cid).values(running_until=date(2000, 1, 1)))
    with Session(engine) as s:
        problems = check_mrr_month_ends(s)
    assert len(problems) == 1 and problems[0].startswith(f"{cid} standing: kept ")
    assert "running until 2000-01-01" in problems[0]
    with transaction(engine) as s:
        rebuild_mrr_month_ends(s, today=TODAY)
    with Session(engine) as s:
        assert check_mrr_month_ends(s) == []
