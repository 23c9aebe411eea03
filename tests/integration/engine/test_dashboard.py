"""The dashboard's figures and exchange rates against a real database: the MRR figures equal the
MRR bridge's, conversion uses the month's rates, and missing rates are reported.

Rules: docs/reporting.md §1 The figures and §2 Exchange rates and conversion.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlmodel import Session

from billing_engine.errors import InvalidInputError
from billing_engine.use_cases import dashboard as dash
from billing_engine.use_cases import exchange_rates as rates
from billing_engine.use_cases.revenue import mrr_bridge_months
from connector.database import transaction
from tests.support.api import seed_subscriptions

NOW = datetime(2026, 7, 1, 9, tzinfo=UTC)


@pytest.fixture
def seeded(engine):
    seed_subscriptions(engine)
    return engine


def _set(engine, on, currency, rate):
    with transaction(engine) as session:
        rates.set_rate(session, on, currency, rate, entered_by="test", now=NOW)


def test_the_dashboard_s_mrr_figures_are_the_bridge_s(seeded):
    with Session(seeded) as session:
        board = dash.dashboard(session, "2026-04", as_of=date(2026, 4, 30), reporting_currency="EUR")
        bridge = {(r.period, r.currency): r for r in mrr_bridge_months(session, "2025-05", "2026-04")}
    figures = {f.currency: f for f in board.currencies}
    assert set(figures) == {"EUR", "USD"}
    for currency, fig in figures.items():
        assert [p.month for p in fig.series] == [f"{y}-{m:02d}" for y, m in
                                                 [(2025, m) for m in range(5, 13)] + [(2026, m) for m in range(1, 5)]]
        for point in fig.series:
            row = bridge.get((point.month, currency))
            assert point.mrr == (row.closing if row else D("0.00")) and point.arr == (row.arr if row else D("0.00"))
        row = bridge[("2026-04", currency)]
        water = fig.waterfall
        assert (water.opening, water.new, water.expansion, water.reactivation, water.contraction, water.churn,
                water.closing) == (row.opening, row.new, row.expansion, row.reactivation, row.contraction,
                                   row.churn, row.closing)
    usd = figures["USD"]
    assert usd.waterfall.churn == D("300.00") and usd.movers["churn"] == 1 and usd.opening_customers == 1
    assert usd.logo_churn_rate == D("100.00") and usd.gross_revenue_retention == D("0.00")
    assert usd.net_revenue_retention == D("0.00") and usd.revenue_churn_rate == D("100.00")
    eur = figures["EUR"]
    assert eur.net_revenue_retention == D("100.00") and eur.arpa == D("2475.00")


def test_march_expansion_gives_a_net_retention_above_100(seeded):
    with Session(seeded) as session:
        board = dash.dashboard(session, "2026-03", as_of=date(2026, 3, 31), reporting_currency="EUR")
    eur = {f.currency: f for f in board.currencies}["EUR"]
    # opening 2,145.00, expansion 330.00: (2145 + 330) / 2145 = 115.38 %
    assert eur.net_revenue_retention == D("115.38") and eur.gross_revenue_retention == D("100.00")
    assert eur.movers["expansion"] == 1 and eur.logo_churn_rate == D("0.00")


def test_figures_in_the_reporting_currency_use_the_month_s_latest_rate(seeded):
    _set(seeded, date(2026, 3, 2), "USD", "1.2000")
    _set(seeded, date(2026, 3, 31), "USD", "1.0800")  # the month's last business day: this one
    _set(seeded, date(2026, 4, 1), "USD", "2")  # April's: not March's
    with Session(seeded) as session:
        board = dash.dashboard(session, "2026-03", as_of=date(2026, 3, 31), reporting_currency="EUR")
    report = board.reporting
    march = [p for p in report.series if p.month == "2026-03"][0]
    # 2,475.00 EUR + 300.00 USD / 1.08 = 2,475.00 + 277.777… = 2,752.78
    assert march.mrr == D("2752.78")
    assert report.waterfall.closing == D("2752.78") and report.waterfall.holds()
    assert [(r.month, r.currency, r.rate, r.rate_on) for r in board.rates if r.month == "2026-03"] == [
        ("2026-03", "USD", D("1.0800"), date(2026, 3, 31))]
    february = [p for p in report.series if p.month == "2026-02"][0]
    assert february.mrr is None  # no USD rate in February: a gap, not a guess
    assert ("2026-02", "USD") in {(m.month, m.currency) for m in board.missing_rates}


def test_a_reporting_currency_other_than_eur_crosses_through_eur(seeded):
    _set(seeded, date(2026, 3, 31), "USD", "1.0800")
    _set(seeded, date(2026, 3, 31), "GBP", "0.8600")
    with Session(seeded) as session:
        board = dash.dashboard(session, "2026-03", as_of=date(2026, 3, 31), reporting_currency="GBP")
    march = [p for p in board.reporting.series if p.month == "2026-03"][0]
    # 2,475.00 × 0.86 + 300.00 × 0.86 / 1.08 = 2,128.50 + 238.888… = 2,367.39
    assert march.mrr == D("2367.39")
    assert {(r.currency, r.rate) for r in board.rates if r.month == "2026-03"} == {("GBP", D("0.8600")),
                                                                                   ("USD", D("1.0800"))}


def test_receivables_by_aging_bucket_and_customers_by_status(seeded):
    with Session(seeded) as session:
        board = dash.dashboard(session, "2026-06", as_of=date(2026, 6, 30), reporting_currency="EUR")
        behind = dash.figure_customers(session, "2026-06", "status:past_due", as_of=date(2026, 6, 30), limit=10)
        owing = dash.figure_customers(session, "2026-06", "aging:90+", as_of=date(2026, 6, 30), limit=10)
    figures = {f.currency: f for f in board.currencies}
    assert sum(board.customers_by_status.values()) == 3
    assert set(board.customers_by_status) == {"active", "cancelling", "past_due", "cancelled", "none"}
    # The two months billed on 2026-02-01 are unpaid: more than 90 days late on 2026-06-30.
    eur_old = figures["EUR"].receivables["90+"]
    assert eur_old > 0 and figures["EUR"].receivables_total == sum(figures["EUR"].receivables.values())
    assert {(c.customer_id, c.currency) for c in owing} == {(c, cur) for c, cur in (("cus-a", "EUR"), ("cus-b", "USD"))
                                                            if figures[cur].receivables["90+"] > 0}
    assert sum(c.amount for c in owing if c.currency == "EUR") == eur_old
    assert {c.customer_id for c in behind} == {c.customer_id for c in owing}
    assert board.customers_by_status["past_due"] == len(behind)


def test_movements_behind_the_waterfall_page_by_customer(seeded):
    with Session(seeded) as session:
        first = dash.figure_customers(session, "2026-01", "movement:new", as_of=date(2026, 1, 31), limit=1)
        rest = dash.figure_customers(session, "2026-01", "movement:new", as_of=date(2026, 1, 31), limit=5,
                                     after=(first[-1].customer_id, first[-1].currency))
    assert [(c.customer_id, c.amount) for c in first] == [("cus-a", D("2145.00"))]
    assert [(c.customer_id, c.currency, c.amount) for c in rest] == [("cus-b", "USD", D("300.00"))]
    assert first[0].name == "Customer cus-a"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"month": "2026-13"}, "month"), ({"months": 6}, "months"), ({"months": 25}, "months"),
    ({"reporting_currency": "XXX"}, "currency"),
])
def test_bad_dashboard_requests_name_the_field(engine, kwargs, field):
    args = {"month": "2026-03", "months": 12, "reporting_currency": "EUR"} | kwargs
    with Session(engine) as session, pytest.raises(InvalidInputError) as caught:
        dash.dashboard(session, args["month"], as_of=date(2026, 3, 31), reporting_currency=args["reporting_currency"],
                       months=args["months"])
    assert caught.value.field == field


def test_setting_a_rate_again_is_idempotent_and_a_new_value_replaces_it(engine):
    with transaction(engine) as session:
        first = rates.set_rate(session, date(2026, 3, 31), "USD", "1.0800", entered_by="alice", now=NOW)
        again = rates.set_rate(session, date(2026, 3, 31), "USD", D("1.08"), entered_by="bob", now=NOW)
        changed = rates.set_rate(session, date(2026, 3, 31), "USD", "1.0812", entered_by="bob", now=NOW)
    assert first.changed and first.before is None
    assert not again.changed and again.rate.entered_by == "alice"
    assert changed.changed and changed.before.rate == D("1.0800")
    with Session(engine) as session:
        stored = rates.list_rates(session, limit=10)
    assert [(r.on, r.quote, r.rate, r.entered_by) for r in stored] == [(date(2026, 3, 31), "USD", D("1.0812"), "bob")]


ECB_HIST = """Date,USD,JPY,BGN,CYP,GBP,
2026-03-31,1.0800,162.50,1.9558,N/A,0.8600,
2026-03-30,1.0790,161.90,1.9558,N/A,0.8590,
"""


def test_an_ecb_file_is_imported_whole(engine):
    with transaction(engine) as session:
        result = rates.import_ecb_rates(session, ECB_HIST, entered_by="cli:alice", now=NOW)
    assert (result.rates, result.days, result.first_on, result.last_on) == (8, 2, date(2026, 3, 30), date(2026, 3, 31))
    assert result.currencies == ("BGN", "GBP", "JPY", "USD")  # CYP: not a currency billsync bills in
    with Session(engine) as session:
        stored = rates.list_rates(session, limit=100, currency="JPY")
    assert [(r.on, r.rate, r.source) for r in stored] == [(date(2026, 3, 30), D("161.90"), "ecb"),
                                                          (date(2026, 3, 31), D("162.50"), "ecb")]


def test_a_file_with_bad_lines_writes_nothing_and_names_each_line(engine):
    bad = "Date,USD,GBP,\n2026-03-31,1.08,0.86,\n2026-03-30,abc,0.85,\n2026-13-01,1.07,0.85,\n2026-03-27,-1,0.8,\n"
    with transaction(engine) as session, pytest.raises(rates.RateFileError) as caught:
        rates.import_ecb_rates(session, bad, entered_by="cli:alice", now=NOW)
    assert [str(p) for p in caught.value.problems] == [
        "line 3: USD 'abc' is not a number", "line 4: '2026-13-01' is not a date (YYYY-MM-DD)",
        "line 5: USD -1 must be greater than 0"]
    with Session(engine) as session:
        assert rates.list_rates(session, limit=10) == []


@pytest.fixture
def lively(engine):
    """The seeded three plus customers that contract, churn and come back, in EUR and GBP."""
    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import (
        amend_subscription,
        cancel_subscription,
        start_subscription,
    )

    seed_subscriptions(engine)
    seats = {c: make_price(f"pr-u-{c}", make_product("p-u", "USERS", "Users"), currency=c, model="per_unit",
                           unit_price="10") for c in ("EUR", "GBP")}
    with transaction(engine) as session:
        for price in seats.values():
            upsert_product(session, price.product)
            upsert_price(session, price)
        for n, currency in enumerate(["EUR", "GBP", "EUR", "GBP", "EUR"]):
            cid = f"cus-l{n}"
            upsert_customer(session, Customer(cid, f"Lively {n}", currency))
            start_subscription(session, make_subscription(f"sub-l{n}", cid, currency, date(2026, 1, 1), [
                SubscriptionItem("users", seats[currency], quantity=D(10 + n))]))
        amend_subscription(session, "sub-l0", Amendment("down", 0, AmendmentAction.CHANGE_QUANTITY,
                                                        date(2026, 3, 1), item_id="users", quantity=D(4)))
        amend_subscription(session, "sub-l1", Amendment("up", 0, AmendmentAction.CHANGE_QUANTITY,
                                                        date(2026, 3, 1), item_id="users", quantity=D(30)))
        cancel_subscription(session, "sub-l2", date(2026, 2, 10), immediate=True, reason="closed")
        cancel_subscription(session, "sub-l3", date(2026, 3, 5), immediate=True, reason="closed")
        start_subscription(session, make_subscription("sub-l2b", "cus-l2", "EUR", date(2026, 3, 15), [
            SubscriptionItem("users", seats["EUR"], quantity=D(7))]))
    return engine


def test_every_month_s_figures_are_the_bridge_s_and_each_count_is_its_customers(lively):
    from billing_engine.revenue import MOVEMENT_KINDS
    from billing_engine.use_cases.revenue import mrr_movements

    with Session(lively) as session:
        for month in ("2026-01", "2026-02", "2026-03", "2026-04"):
            board = dash.dashboard(session, month, as_of=date(2026, 4, 30), reporting_currency="EUR")
            bridge = {r.currency: r for r in mrr_bridge_months(session, month, month)}
            assert {f.currency for f in board.currencies} >= set(bridge)
            for fig in board.currencies:
                row = bridge.get(fig.currency)
                if row is None:
                    continue
                water = fig.waterfall
                assert (water.opening, water.new, water.expansion, water.reactivation, water.contraction,
                        water.churn, water.closing, fig.series[-1].arr, fig.closing_customers) == (
                    row.opening, row.new, row.expansion, row.reactivation, row.contraction, row.churn, row.closing,
                    row.arr, row.customers), (month, fig.currency)
                for kind in MOVEMENT_KINDS:
                    moves = mrr_movements(session, month, limit=100, currency=fig.currency, kind=kind)
                    behind = dash.figure_customers(session, month, f"movement:{kind}", as_of=date(2026, 4, 30),
                                                   limit=100, currency=fig.currency)
                    assert fig.movers[kind] == len(moves) == len(behind), (month, fig.currency, kind)
                    assert sum((c.amount for c in behind), D(0)) == (
                        getattr(row, kind) if kind in ("new", "expansion", "reactivation") else -getattr(row, kind))
        march = dash.dashboard(session, "2026-03", as_of=date(2026, 3, 31), reporting_currency="EUR")
    eur = {f.currency: f for f in march.currencies}["EUR"]
    assert eur.movers["reactivation"] == 1 and eur.movers["contraction"] == 1  # cus-l2 back, cus-l0 down
    gbp = {f.currency: f for f in march.currencies}["GBP"]
    assert gbp.movers["churn"] == 1 and gbp.movers["expansion"] == 1
    # GBP in March: opening 110 + 130 = 240.00; expansion 300 − 110 = 190; churn 130.
    assert gbp.waterfall.opening == D("240.00") and gbp.net_revenue_retention == D("125.00")
    assert gbp.gross_revenue_retention == D("45.83") and gbp.logo_churn_rate == D("50.00")


def test_customers_by_status_are_the_customers_listed_behind_each_status(lively):
    # 10 March: cus-l3's only subscription ended on 5 March; cus-l2's first one ended in February but its
    # second starts on 15 March and cus-c's in September (active: about to start).
    on = date(2026, 3, 10)
    with Session(lively) as session:
        board = dash.dashboard(session, "2026-03", as_of=on, reporting_currency="EUR")
        listed = {status: dash.figure_customers(session, "2026-03", f"status:{status}", as_of=on, limit=100)
                  for status in board.customers_by_status}
    assert {status: len(rows) for status, rows in listed.items()} == board.customers_by_status
    assert sum(board.customers_by_status.values()) == 8
    assert [c.customer_id for c in listed["cancelled"]] == ["cus-l3"]
    assert {"cus-c", "cus-l2"} <= {c.customer_id for c in listed["active"]}
