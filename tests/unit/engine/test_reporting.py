"""Exchange rates, conversion to the reporting currency and the dashboard's formulas (pure).

Rules: docs/reporting.md §1 The figures and §2 Exchange rates and conversion.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_engine.errors import InvalidInputError
from billing_engine.exchange_rates import (
    ExchangeRate,
    MissingRateError,
    RateSet,
    check_rate,
    convert,
    convert_total,
    parse_ecb_csv,
    rate_of_month,
)
from billing_engine.money import round_money
from billing_engine.reporting import (
    arpa,
    billing_status,
    converted_waterfall,
    gross_revenue_retention,
    logo_churn_rate,
    net_revenue_retention,
    revenue_churn_rate,
)
from billing_engine.revenue import movements_and_bridge


def eur_rate(on, quote, rate, source="ecb"):
    return ExchangeRate(on, "EUR", quote, D(rate), source)


RATES = RateSet({"USD": eur_rate(date(2026, 3, 31), "USD", "1.0800"),
                 "GBP": eur_rate(date(2026, 3, 31), "GBP", "0.8600"),
                 "JPY": eur_rate(date(2026, 3, 31), "JPY", "162.50"),
                 "KWD": eur_rate(date(2026, 3, 31), "KWD", "0.3321")})


def test_a_month_uses_its_latest_rate_on_or_before_its_end():
    rates = [eur_rate(date(2026, 3, 2), "USD", "1.20"), eur_rate(date(2026, 3, 27), "USD", "1.08"),
             eur_rate(date(2026, 4, 1), "USD", "2"), eur_rate(date(2026, 3, 31), "GBP", "0.86")]
    # March 28-31 2026 has no USD rate (a weekend, then the 30th and 31st not published): the 27th is used.
    assert rate_of_month(rates, "USD", 2026, 3).rate == D("1.08")
    assert rate_of_month(rates, "USD", 2026, 4).rate == D("2")
    assert rate_of_month(rates, "USD", 2026, 2) is None  # February has none: a gap, not March's nor an old one


def test_conversion_goes_through_eur_and_rounds_once():
    assert convert(D("100.00"), "USD", "EUR", RATES) == D("92.59")  # 100 / 1.08 = 92.592…
    assert convert(D("100.00"), "EUR", "USD", RATES) == D("108.00")
    assert convert(D("100.00"), "USD", "GBP", RATES) == D("79.63")  # 100 × 0.86 / 1.08 = 79.629…
    assert convert(D("100.00"), "GBP", "JPY", RATES) == D("18895")  # 0-decimal currency: 18,895.348…
    assert convert(D("1000.00"), "EUR", "KWD", RATES) == D("332.100")  # 3-decimal currency
    assert convert(D("12.34"), "USD", "USD", RATES) == D("12.34")


def test_a_total_rounds_the_sum_of_its_unrounded_parts():
    # 1 JPY = 0.00615… EUR and 0.002 KWD = 0.00602… EUR: each alone shows 0.01, but together they are
    # 0.01217… EUR, so the total is 0.01 (rounded once), not 0.02.
    parts = {"JPY": D("1"), "KWD": D("0.002")}
    assert convert(D("1"), "JPY", "EUR", RATES) == convert(D("0.002"), "KWD", "EUR", RATES) == D("0.01")
    assert convert_total(parts, "EUR", RATES) == D("0.01")


def test_a_missing_rate_is_an_error_never_a_zero_or_a_one():
    with pytest.raises(MissingRateError) as caught:
        convert(D("10.00"), "CHF", "EUR", RATES)
    assert caught.value.currencies == ("CHF",)
    with pytest.raises(MissingRateError):
        convert(D("10.00"), "EUR", "CHF", RATES)  # the reporting currency needs its rate too
    assert convert(D("0.00"), "CHF", "EUR", RATES) == D("0.00")  # nothing to convert needs no rate


@pytest.mark.parametrize("value", [1.08, "abc", "0", "-1.2", "NaN", "1.12345678901", True])
def test_a_rate_is_a_positive_exact_decimal(value):
    with pytest.raises(InvalidInputError):
        check_rate(value)


amounts = st.decimals(min_value=D("-1000000"), max_value=D("1000000"), places=2, allow_nan=False,
                      allow_infinity=False)
rates = st.decimals(min_value=D("0.0001"), max_value=D("50000"), places=4, allow_nan=False, allow_infinity=False)


@given(st.dictionaries(st.sampled_from(["EUR", "USD", "GBP", "JPY", "CHF"]), amounts, min_size=1),
       st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
       st.fixed_dictionaries({c: rates for c in ["USD", "GBP", "JPY", "CHF"]}))
def test_a_reporting_total_is_its_parts_converted_with_the_stored_rates(parts, reporting, values):
    rate_set = RateSet({c: eur_rate(date(2026, 3, 31), c, v) for c, v in values.items()})
    parts = {c: round_money(v, c) for c, v in parts.items()}
    total = convert_total(parts, reporting, rate_set)
    # The total is Σ amount × rate(reporting) / rate(currency), rounded once to the reporting minor unit …
    exact = sum((v * (values.get(reporting, D(1)) if reporting != "EUR" else D(1))
                 / (values.get(c, D(1)) if c != "EUR" else D(1)) for c, v in parts.items()), D(0))
    assert abs(total - exact) <= D("0.5") * D(10) ** -{"JPY": 0}.get(reporting, 2) + D("1e-20")
    # … so it differs from the sum of the separately rounded parts by at most half a minor unit per part.
    shown = sum((convert(v, c, reporting, rate_set) for c, v in parts.items()), D(0))
    assert abs(total - shown) <= D(len(parts) + 1) / 2 * D(10) ** -{"JPY": 0}.get(reporting, 2)
    if len(parts) == 1:
        assert total == shown


def test_the_retention_and_churn_formulas():
    # opening 1,000; expansion 200; contraction 50; churn 100
    assert net_revenue_retention(D(1000), D(200), D(50), D(100)) == D("105.00")
    assert gross_revenue_retention(D(1000), D(50), D(100)) == D("85.00")
    assert revenue_churn_rate(D(1000), D(50), D(100)) == D("15.00")
    assert logo_churn_rate(1, 3) == D("33.33")
    assert net_revenue_retention(D(0), D(0), D(0), D(0)) is None  # no opening: undefined, not 0 or 100
    assert logo_churn_rate(0, 0) is None
    assert arpa(D("1000.00"), 3, "EUR") == D("333.33") and arpa(D(0), 0, "EUR") is None


def test_retention_counts_only_the_opening_customers():
    opening = {("a", "EUR"): D("100.00"), ("b", "EUR"): D("100.00"), ("c", "EUR"): D("100.00")}
    closing = {("a", "EUR"): D("150.00"), ("c", "EUR"): D("80.00"), ("d", "EUR"): D("500.00"),
               ("e", "EUR"): D("40.00")}
    _, [row] = movements_and_bridge(opening, [("2026-03", closing)], had_mrr_before=[("e", "EUR")])
    assert (row.new, row.reactivation, row.expansion, row.contraction, row.churn) == (
        D("500.00"), D("40.00"), D("50.00"), D("20.00"), D("100.00"))
    assert row.movers == {"new": 1, "expansion": 1, "reactivation": 1, "contraction": 1, "churn": 1}
    # NRR: (300 + 50 − 20 − 100) / 300; new and reactivated revenue are not retention.
    assert net_revenue_retention(row.opening, row.expansion, row.contraction, row.churn) == D("76.67")
    assert gross_revenue_retention(row.opening, row.contraction, row.churn) == D("60.00")
    assert logo_churn_rate(row.movers["churn"], 3) == D("33.33")


@pytest.mark.parametrize(("standing", "status"), [
    ({"subscriptions": 0, "past_due": False, "running": False, "cancelling": False}, "none"),
    ({"subscriptions": 2, "past_due": True, "running": True, "cancelling": False}, "past_due"),
    ({"subscriptions": 2, "past_due": False, "running": True, "cancelling": True}, "active"),
    ({"subscriptions": 1, "past_due": False, "running": False, "cancelling": True}, "cancelling"),
    ({"subscriptions": 1, "past_due": False, "running": False, "cancelling": False}, "cancelled"),
])
def test_a_customer_s_billing_status(standing, status):
    assert billing_status(**standing) == status


def test_a_waterfall_in_the_reporting_currency_says_what_rounding_moved():
    parts = {"USD": {"opening": D("0.01"), "new": D("0.01"), "expansion": D(0), "reactivation": D(0),
                     "contraction": D(0), "churn": D(0), "closing": D("0.02")},
             "EUR": {"opening": D("0.00"), "new": D("0.00"), "expansion": D(0), "reactivation": D(0),
                     "contraction": D(0), "churn": D(0), "closing": D("0.00")}}
    water = converted_waterfall(parts, "GBP", RATES)
    # 0.01 USD = 0.00796… GBP → 0.01; 0.02 USD = 0.0159… GBP → 0.02: 0.01 + 0.01 = 0.02, nothing to carry
    assert (water.opening, water.new, water.closing, water.rounding) == (D("0.01"), D("0.01"), D("0.02"), D("0.00"))
    parts["USD"] = {**parts["USD"], "opening": D("0.03"), "new": D("0.03"), "closing": D("0.06")}
    water = converted_waterfall(parts, "EUR", RATES)
    # 0.03 / 1.08 = 0.0277… → 0.03 twice, but 0.06 / 1.08 = 0.0555… → 0.06: rounding 0.00
    assert water.holds()


ECB_DAILY = """Date, USD, JPY, BGN, CZK, DKK, GBP, HUF, PLN, RON, SEK, CHF, ISK, NOK, TRY, AUD, BRL, CAD, CNY, HKD, IDR, ILS, INR, KRW, MXN, MYR, NZD, PHP, SGD, THB, ZAR,
04 December 2026, 1.0528, 157.45, 1.9558, 25.223, 7.4580, 0.82838, 408.98, 4.2713, 4.9740, 11.5105, 0.9291, 146.30, 11.6690, 36.7041, 1.6418, 6.3900, 1.4805, 7.6720, 8.1940, 16843.51, 3.8270, 89.2175, 1487.45, 21.3520, 4.6910, 1.8018, 61.344, 1.4135, 36.302, 19.0712,
"""


def test_the_ecb_daily_file_is_read():
    found, problems = parse_ecb_csv(ECB_DAILY)
    assert problems == []
    by_currency = {r.quote: r for r in found}
    assert by_currency["USD"].rate == D("1.0528") and by_currency["USD"].on == date(2026, 12, 4)
    assert by_currency["GBP"].rate == D("0.82838") and by_currency["KRW"].rate == D("1487.45")
    assert all(r.base == "EUR" and r.source == "ecb" for r in found)


def test_a_file_that_is_not_the_ecb_format_is_one_problem():
    found, problems = parse_ecb_csv("when,USD\n2026-01-01,1.1\n")
    assert found == [] and [str(p) for p in problems] == [
        "line 1: not an ECB reference-rates file: the first column must be 'Date'"]
