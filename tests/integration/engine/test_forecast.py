"""The MRR forecast against a real database: contracted MRR follows the subscriptions' terms
(a recorded end-of-term cancellation, a renewal uplift), the expected MRR and its band follow the
history, conversion uses the last complete month's rates, and a month's snapshot is stored once.

Rules: docs/intelligence.md, MRR forecast.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from billing_engine.errors import InvalidInputError
from billing_engine.forecast import months_after
from billing_engine.storage.forecasts import MrrForecast
from billing_engine.use_cases import forecast as fc
from billing_engine.use_cases.revenue import mrr_bridge_months
from connector.database import transaction
from tests.support.forecast import seed_forecast, set_usd_rate

MADE_IN = "2026-07"


@pytest.fixture
def seeded(engine):
    seed_forecast(engine, MADE_IN)
    return engine


def _months(forecast, currency):
    return {c.currency: c for c in forecast.currencies}[currency].months


def test_an_end_of_term_cancellation_drops_contracted_mrr_by_that_customer_s_mrr(seeded):
    with Session(seeded) as session:
        eur = _months(fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR"), "EUR")
    assert [m.month for m in eur] == [months_after(MADE_IN, k) for k in range(12)]
    assert [m.horizon for m in eur] == list(range(1, 13))
    # cus-f1 (100.00) runs until the 15th of September: August's end has it, September's not.
    assert eur[1].month == "2026-08" and eur[2].month == "2026-09"
    assert eur[1].contracted - eur[2].contracted == D("100.00")
    assert eur[0].contracted == D("300.00") and eur[2].contracted == D("200.00")


def test_a_renewal_uplift_raises_the_month_after_the_renewal_exactly(seeded):
    with Session(seeded) as session:
        eur = _months(fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR"), "EUR")
    # cus-f2 renews on 1 October at 200.00 + 5 %.
    september, october = eur[2], eur[3]
    assert october.month == "2026-10"
    assert october.contracted - september.contracted == D("10.00")
    assert [m.contracted for m in eur[3:]] == [D("210.00")] * 9


def test_contracted_mrr_is_the_bridge_s_closing_ahead(seeded):
    with Session(seeded) as session:
        result = fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR")
        bridge = {(r.period, r.currency): r.closing for r in
                  mrr_bridge_months(session, MADE_IN, months_after(MADE_IN, 11))}
    for c in result.currencies:
        assert [m.contracted for m in c.months] == [bridge[(m.month, c.currency)] for m in c.months]


def test_expected_mrr_takes_the_history_s_churn_and_stays_inside_its_band(seeded):
    with Session(seeded) as session:
        result = fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR")
    eur = {c.currency: c for c in result.currencies}["EUR"]
    # One churn in eleven months with an opening: 50.00 of 350.00.
    assert eur.rates.months == 11
    assert eur.rates.churn == (D(50) / D(350) / 11).quantize(D("0.000001"))
    assert eur.rates.expansion == D(0)
    first = eur.months[0]
    assert first.expected == (first.contracted * (1 - eur.rates.churn)).quantize(D("0.01"))
    for m in eur.months:
        assert m.low <= m.expected <= m.high
        assert m.expected <= m.contracted
    # The last month is further from the contract than the first.
    assert eur.months[-1].contracted - eur.months[-1].expected > first.contracted - first.expected
    # USD never churned: its expected MRR is the contract.
    usd = {c.currency: c for c in result.currencies}["USD"]
    assert all(m.expected == m.contracted == m.low == m.high == D("300.00") for m in usd.months)


def test_the_known_cancellation_is_not_counted_twice(seeded):
    with Session(seeded) as session:
        result = fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR")
    eur = {c.currency: c for c in result.currencies}["EUR"]
    keep = 1 - eur.rates.churn
    # July and August take the history's churn; September's recorded cancellation (100 of 300) is
    # more than it: nothing more is taken that month; October takes it again.
    assert [m.expected for m in eur.months[:4]] == [
        (m.contracted * keep ** n).quantize(D("0.01")) for m, n in zip(eur.months[:4], (1, 2, 2, 3), strict=True)]


def test_the_reporting_currency_uses_the_last_complete_month_s_rate(seeded):
    set_usd_rate(seeded, "2026-06", "1.2")
    set_usd_rate(seeded, "2026-07", "3")  # the forecast's own month: not used
    with Session(seeded) as session:
        result = fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR")
    assert result.rates_month == "2026-06" and not result.missing_rates
    assert [(r.currency, r.rate) for r in result.rates] == [("USD", D("1.2"))]
    first = result.reporting[0]
    # 300.00 EUR + 300.00 USD / 1.2 = 550.00 EUR
    assert first.contracted == D("550.00")
    eur = _months(result, "EUR")[0]
    assert first.expected == (eur.expected + D(250)).quantize(D("0.01"))


def test_a_missing_rate_leaves_the_reporting_currency_empty_and_says_which(seeded):
    with Session(seeded) as session:
        result = fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR")
    assert result.reporting is None
    assert [(m.month, m.currency) for m in result.missing_rates] == [("2026-06", "USD")]
    assert {c.currency for c in result.currencies} == {"EUR", "USD"}


def test_bad_parameters_are_refused(seeded):
    with Session(seeded) as session:
        with pytest.raises(InvalidInputError):
            fc.mrr_forecast(session, "2026-13", reporting_currency="EUR")
        with pytest.raises(InvalidInputError):
            fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR", currency="XXX")
        with pytest.raises(InvalidInputError):
            fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR", history_months=0)


def test_a_month_s_snapshot_is_stored_once(seeded):
    with transaction(seeded) as session:
        first = fc.store_forecast(session, MADE_IN, now=datetime(2026, 7, 1, tzinfo=UTC))
    with transaction(seeded) as session:
        again = fc.store_forecast(session, MADE_IN, now=datetime(2026, 7, 2, tzinfo=UTC))
    assert first.stored and first.rows == 24 and not again.stored and again.rows == 0
    with Session(seeded) as session:
        rows = list(session.exec(select(MrrForecast)))
    assert len(rows) == 24 and {r.made_at.day for r in rows} == {1}


def test_the_table_refuses_a_second_row_for_the_same_month(seeded):
    row = {"made_in": MADE_IN, "currency": "EUR", "month": MADE_IN, "horizon": 1, "contracted": D("1.00"),
           "expected": D("1.00"), "low": D("1.00"), "high": D("1.00"), "made_at": datetime.now(UTC)}
    with transaction(seeded) as session:
        session.add(MrrForecast(**row))
    with pytest.raises(IntegrityError), transaction(seeded) as session:
        session.add(MrrForecast(**row))
        session.flush()


def test_accuracy_compares_past_snapshots_with_the_actual_month_ends(seeded):
    with transaction(seeded) as session:
        fc.store_forecast(session, MADE_IN)
        fc.store_forecast(session, "2026-08")
    with Session(seeded) as session:
        report = {(a.currency, a.horizon): a for a in fc.forecast_accuracy(session, date(2026, 10, 5))}
        actual = {(r.period, r.currency): r.closing for r in mrr_bridge_months(session, "2026-07", "2026-09")}
    # Closed months: July, August, September. Made in July: horizons 1-3; in August: 1-2.
    eur1 = report[("EUR", 1)]
    assert eur1.months == 2 and eur1.contracted_mape == D("0.00")  # nothing changed since
    assert report[("EUR", 3)].months == 1 and ("EUR", 4) not in report
    # The expected MRR took churn that did not come: its error is the gap to the actual.
    with Session(seeded) as session:
        stored = {(m, c, f.month): f for m, c, f in
                  fc.forecast_store.snapshots_through(session, "2026-09")}
    july = stored[(MADE_IN, "EUR", "2026-07")]
    august = stored[("2026-08", "EUR", "2026-08")]
    errors = [abs(f.expected - actual[(f.month, "EUR")]) * 100 / actual[(f.month, "EUR")] for f in (july, august)]
    assert eur1.expected_mape == (sum(errors) / 2).quantize(D("0.01"), ROUND_HALF_UP)
    assert eur1.within_band == 2


def test_one_shared_read_of_the_bridge_gives_the_same_dashboard_and_forecast(seeded):
    from billing_engine.use_cases import dashboard as dash

    with Session(seeded) as session:
        bridge = fc.shared_bridge(session, dash.bridge_range("2026-05"), fc.bridge_range(MADE_IN))
        assert bridge is not None and min(r.period for r in bridge) == "2025-05"
        assert max(r.period for r in bridge) == "2027-06"
        for kwargs in ({}, {"currency": "EUR"}):
            assert fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR", bridge=bridge, **kwargs) == \
                fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR", **kwargs)
        shared = dash.dashboard(session, "2026-05", as_of=date(2026, 5, 31), reporting_currency="EUR", bridge=bridge)
        alone = dash.dashboard(session, "2026-05", as_of=date(2026, 5, 31), reporting_currency="EUR")
        assert shared == alone
        # Ten years apart: too long to read at once, each reads its own.
        assert fc.shared_bridge(session, dash.bridge_range("2016-05"), fc.bridge_range(MADE_IN)) is None


def test_a_downgrade_dated_ahead_lowers_the_contract_from_its_month(seeded):
    from billing_engine.subscriptions import Amendment, AmendmentAction
    from billing_engine.use_cases.subscriptions import amend_subscription

    with transaction(seeded) as session:  # Hudson Co moves to 250.00 a month from 15 December
        amend_subscription(session, "sub-f3", Amendment("down", 0, AmendmentAction.CHANGE_PRICE, date(2026, 12, 15),
                                                        item_id="f3-plan", unit_price=D("250"), reason="downgrade"),
                           now=datetime(2026, 7, 1, tzinfo=UTC))
    with Session(seeded) as session:
        usd = _months(fc.mrr_forecast(session, MADE_IN, reporting_currency="EUR"), "USD")
    assert [m.contracted for m in usd[4:7]] == [D("300.00"), D("250.00"), D("250.00")]
    assert usd[5].month == "2026-12"
