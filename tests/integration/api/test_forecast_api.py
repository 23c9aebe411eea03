"""GET /api/v1/metrics/forecast and /api/v1/metrics/forecast/accuracy (docs/api.md, MRR forecast)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_engine.use_cases.forecast import store_forecast
from connector.database import transaction
from tests.support.api import bearer
from tests.support.forecast import seed_forecast, set_usd_rate

MADE_IN = "2026-07"


@pytest.fixture
def seeded(app):
    engine = app.extensions["billsync"].engine
    seed_forecast(engine, MADE_IN)
    set_usd_rate(engine, "2026-06", "1.2")
    return app


def _get(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


def test_the_forecast_is_decimal_strings_per_currency_and_in_the_reporting_currency(seeded, client, read_key):
    body = _get(client, read_key, f"/api/v1/metrics/forecast?month={MADE_IN}")
    assert body["made_in"] == MADE_IN and body["reporting_currency"] == "EUR" and body["rates_month"] == "2026-06"
    eur = next(c for c in body["currencies"] if c["currency"] == "EUR")
    assert [m["month"] for m in eur["months"]][:4] == ["2026-07", "2026-08", "2026-09", "2026-10"]
    contracted = [m["contracted"] for m in eur["months"][:4]]
    assert contracted == [{"amount": a, "currency": "EUR"} for a in ("300.00", "300.00", "200.00", "210.00")]
    for month in eur["months"]:
        for name in ("contracted", "expected", "low", "high"):
            assert isinstance(month[name]["amount"], str)
        assert Decimal(month["low"]["amount"]) <= Decimal(month["expected"]["amount"]) \
            <= Decimal(month["high"]["amount"])
    assert eur["rates"]["months"] == 11 and eur["rates"]["churn"] == "1.2987"
    # 300.00 EUR + 300.00 USD at 1 EUR = 1.2 USD
    assert body["reporting"][0]["contracted"] == {"amount": "550.00", "currency": "EUR"}
    assert body["rates"] == [{"month": "2026-06", "currency": "USD", "rate": "1.2", "date": "2026-06-28",
                              "source": "manual"}]


def test_another_reporting_currency(seeded, client, read_key):
    body = _get(client, read_key, f"/api/v1/metrics/forecast?month={MADE_IN}&currency=USD")
    # 300.00 EUR × 1.2 + 300.00 USD
    assert body["reporting_currency"] == "USD"
    assert body["reporting"][0]["contracted"] == {"amount": "660.00", "currency": "USD"}


def test_a_missing_rate_leaves_the_total_null(seeded, client, read_key):
    body = _get(client, read_key, f"/api/v1/metrics/forecast?month={MADE_IN}&currency=GBP")
    assert body["reporting"] is None
    assert body["missing_rates"] == [{"month": "2026-06", "currency": "GBP"}]


@pytest.mark.parametrize("query", ["currency=eur", "currency=EURO", "currency=XXX", "month=2026-13",
                                   "month=july", "history_months=0", "history_months=61", "history_months=a"])
def test_bad_parameters_are_problems(seeded, client, read_key, query):
    response = client.get(f"/api/v1/metrics/forecast?{query}", headers=bearer(read_key))
    assert response.status_code in (400, 422), response.json
    assert response.mimetype == "application/problem+json"


def test_the_forecast_needs_a_key(seeded, client):
    response = client.get("/api/v1/metrics/forecast")
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_accuracy_per_horizon(seeded, client, read_key):
    with transaction(seeded.extensions["billsync"].engine) as session:
        store_forecast(session, "2026-07")
        store_forecast(session, "2026-08")
    body = _get(client, read_key, "/api/v1/metrics/forecast/accuracy?currency=EUR")
    # Nothing changed since they were made: the contracted MRR of a closed month was exact.
    first = body["horizons"][0]
    assert first["currency"] == "EUR" and first["horizon"] == 1
    assert first["contracted_mape"] == "0.00" and isinstance(first["expected_mape"], str)
    assert {h["currency"] for h in body["horizons"]} == {"EUR"}
    bad = client.get("/api/v1/metrics/forecast/accuracy?currency=1", headers=bearer(read_key))
    assert bad.status_code in (400, 422) and bad.mimetype == "application/problem+json"


def test_turned_off_the_forecast_is_not_found(database_url, client, read_key, monkeypatch):
    from dataclasses import replace

    services = client.application.extensions["billsync"]
    monkeypatch.setattr(services, "settings", replace(services.settings, forecast="off"))
    response = client.get("/api/v1/metrics/forecast", headers=bearer(read_key))
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert "FORECAST=off" in response.json["detail"]
