"""The MRR forecast's arithmetic (billing_engine/forecast.py): the history's rates, the expected
MRR that does not count a known change twice, the band, and the error of a forecast."""

from __future__ import annotations

from decimal import Decimal as D

from billing_engine.forecast import (
    Rates,
    absolute_percentage_error,
    forecast,
    historical_rates,
    horizon_of,
    mape,
    months_after,
)
from billing_engine.revenue import BridgeRow

ZERO = D("0.00")


def row(month, opening, closing, *, expansion=ZERO, contraction=ZERO, churn=ZERO, new=ZERO):
    return BridgeRow(month, "EUR", D(opening), D(new), D(expansion), ZERO, D(contraction), D(churn), D(closing), 1,
                     D(closing) * 12)


def test_the_history_s_rates_are_the_mean_and_spread_of_its_months():
    rates = historical_rates([row("2026-01", "0", "100", new="100"),  # no opening: no rate
                              row("2026-02", "100", "110", expansion="10"),
                              row("2026-03", "110", "99", churn="11"),
                              row("2026-04", "99", "99")])
    assert rates.months == 3
    assert rates.expansion == D("0.033333") and rates.churn == D("0.033333")
    # population standard deviation of (0.1, 0, 0): 0.04714…
    assert rates.expansion_spread == D("0.047140") and rates.churn_spread == D("0.047140")


def test_without_history_the_expected_mrr_is_the_contract():
    months = forecast("EUR", [row("2026-07", "100", "100"), row("2026-08", "100", "0", churn="100")], Rates())
    assert [(m.contracted, m.expected, m.low, m.high) for m in months] == [
        (D(100), D("100.00"), D("100.00"), D("100.00")), (D(0), D("0.00"), D("0.00"), D("0.00"))]


def test_the_history_s_churn_compounds_and_a_known_churn_takes_its_place():
    rates = Rates(churn=D("0.02"))
    contracted = [row("2026-07", "1000", "1000"), row("2026-08", "1000", "900", churn="100"),
                  row("2026-09", "900", "900")]
    july, august, september = forecast("EUR", contracted, rates)
    assert july.expected == D("980.00")  # 1000 × 0.98
    assert august.expected == D("882.00")  # 900 × 0.98: August's 10 % known churn is more than 2 %
    assert september.expected == D("864.36")  # 900 × 0.98²


def test_a_known_uplift_takes_the_place_of_the_history_s_expansion():
    rates = Rates(expansion=D("0.01"))
    contracted = [row("2026-07", "1000", "1000"), row("2026-08", "1000", "1050", expansion="50")]
    july, august = forecast("EUR", contracted, rates)
    assert (july.expected, august.expected) == (D("1010.00"), D("1060.50"))  # 1050 × 1.01, not × 1.01²


def test_the_band_is_one_spread_either_side_and_never_negative():
    rates = Rates(expansion=D("0.01"), churn=D("0.02"), expansion_spread=D("0.02"), churn_spread=D("0.01"))
    [month] = forecast("EUR", [row("2026-07", "1000", "1000")], rates)
    assert month.low == D("970.00")  # churn 3 %, expansion 0 (not −1 %)
    assert month.high == D("1019.70")  # 1000 × 0.99 × 1.03
    assert month.expected == D("989.80")  # 1000 × 0.98 × 1.01
    assert month.low <= month.expected <= month.high


def test_the_error_of_a_forecast():
    assert absolute_percentage_error(D("95"), D("100")) == D(5)
    assert absolute_percentage_error(D("105"), D("100")) == D(5)
    assert absolute_percentage_error(D("1"), D("0")) is None  # no percentage of nothing
    assert mape([D(5), D("2.5"), D("0.005")]) == D("2.50")
    assert mape([]) is None


def test_months_and_horizons():
    assert months_after("2026-11", 2) == "2027-01" and months_after("2026-01", -1) == "2025-12"
    assert horizon_of("2026-11", "2026-11") == 1 and horizon_of("2026-11", "2027-10") == 12
