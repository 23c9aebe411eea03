"""GET /api/v1/metrics/dashboard, its customers, and /api/v1/exchange-rates (docs/api.md,
Dashboard and reporting currency)."""

from __future__ import annotations

import pytest

from tests.support.api import bearer, seed_subscriptions


@pytest.fixture
def seeded(app):
    seed_subscriptions(app.extensions["billsync"].engine)
    return app


def _get(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


def test_the_dashboard_s_mrr_waterfall_and_arr_are_the_bridge_s(seeded, client, read_key):
    board = _get(client, read_key, "/api/v1/metrics/dashboard?month=2026-04&as_of=2026-04-30")
    bridge = _get(client, read_key, "/api/v1/metrics/mrr?from=2026-04&to=2026-04")
    for row in bridge["months"]:
        figures = next(f for f in board["currencies"] if f["currency"] == row["currency"])
        water = figures["waterfall"]
        for part in ("opening", "new", "expansion", "reactivation", "contraction", "churn", "closing"):
            assert water[part] == row[part], (row["currency"], part)
        assert water["rounding"]["amount"] in ("0", "0.00")
        april = figures["mrr_series"][-1]
        assert april["month"] == "2026-04" and april["mrr"] == row["closing"] and april["arr"] == row["arr"]
        assert figures["closing_customers"] == row["customers"]
    usd = next(f for f in board["currencies"] if f["currency"] == "USD")
    assert usd["logo_churn_rate"] == "100.00" and usd["movers"]["churn"] == 1
    assert board["reporting_currency"] == "EUR"
    # USD had MRR from January to March and moved in April: every one of those months lacks its rate.
    assert board["missing_rates"] == [{"month": f"2026-0{m}", "currency": "USD"} for m in range(1, 5)]
    assert board["reporting"]["waterfall"] is None  # USD moved in April and has no rate: no guess
    assert len(board["currencies"][0]["mrr_series"]) == 12


def test_a_rate_set_through_the_api_converts_the_dashboard(seeded, client, read_key, write_key):
    put = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.0800"}, headers=bearer(write_key))
    assert put.status_code == 201, put.json
    assert put.json == {"date": "2026-03-31", "base": "EUR", "currency": "USD", "rate": "1.0800",
                        "source": "manual", "entered_by": "api-key:finance-bot"}
    again = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.0800"}, headers=bearer(write_key))
    assert again.status_code == 200 and again.json == put.json
    board = _get(client, read_key, "/api/v1/metrics/dashboard?month=2026-03&as_of=2026-03-31")
    march = board["reporting"]["mrr_series"][-1]
    assert march == {"month": "2026-03", "mrr": {"amount": "2752.78", "currency": "EUR"},
                     "arr": {"amount": "33033.33", "currency": "EUR"}, "customers": 2}
    assert board["rates"] == [{"month": "2026-03", "currency": "USD", "rate": "1.0800", "date": "2026-03-31",
                               "source": "manual"}]
    listed = _get(client, read_key, "/api/v1/exchange-rates?currency=USD")
    assert [r["rate"] for r in listed["data"]] == ["1.0800"]


def test_the_customers_behind_a_figure_page_by_customer(seeded, client, read_key):
    first = _get(client, read_key, "/api/v1/metrics/dashboard/customers?month=2026-01&figure=movement:new&limit=1")
    assert [(c["customer_id"], c["amount"]) for c in first["data"]] == [
        ("cus-a", {"amount": "2145.00", "currency": "EUR"})]
    rest = _get(client, read_key, first["next"])
    assert [c["customer_id"] for c in rest["data"]] == ["cus-b"] and rest["next"] is None
    churned = _get(client, read_key, "/api/v1/metrics/dashboard/customers?month=2026-04&figure=movement:churn")
    assert [(c["customer_id"], c["before"]["amount"]) for c in churned["data"]] == [("cus-b", "300.00")]


@pytest.mark.parametrize(("url", "parameter"), [
    ("/api/v1/metrics/dashboard?month=2026-13", "month"),
    ("/api/v1/metrics/dashboard?month=march", "month"),
    ("/api/v1/metrics/dashboard", "month"),
    ("/api/v1/metrics/dashboard?month=2026-03&currency=eur", "currency"),
    ("/api/v1/metrics/dashboard?month=2026-03&months=36", "months"),
    ("/api/v1/metrics/dashboard/customers?month=2026-03&figure=movement:lost", "figure"),
])
def test_bad_dashboard_queries_are_problems_naming_the_parameter(client, read_key, url, parameter):
    response = client.get(url, headers=bearer(read_key))
    assert response.status_code == 422 and response.mimetype == "application/problem+json", response.json
    assert response.json["errors"][0]["parameter"] == parameter, response.json


def test_an_unknown_reporting_currency_is_a_problem_not_a_500(client, read_key):
    response = client.get("/api/v1/metrics/dashboard?month=2026-03&currency=XXX", headers=bearer(read_key))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert "XXX" in response.json["detail"] or "XXX" in str(response.json.get("errors"))


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/exchange-rates/2026-03-31/USD", {"rate": "-1"}),
    ("/api/v1/exchange-rates/2026-03-31/USD", {"rate": 1.08}),
    ("/api/v1/exchange-rates/2026-03-31/USD", {"rate": "0"}),
    ("/api/v1/exchange-rates/2026-03-31/EUR", {"rate": "1"}),
    ("/api/v1/exchange-rates/2026-03-31/XXX", {"rate": "1.2"}),
    ("/api/v1/exchange-rates/2026-02-30/USD", {"rate": "1.2"}),
])
def test_bad_rates_are_refused_and_nothing_is_stored(client, read_key, write_key, path, body):
    response = client.put(path, json=body, headers=bearer(write_key))
    assert response.status_code in (400, 422) and response.mimetype == "application/problem+json", response.json
    assert _get(client, read_key, "/api/v1/exchange-rates")["data"] == []


def test_a_read_key_cannot_set_a_rate(client, read_key):
    response = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.08"}, headers=bearer(read_key))
    assert response.status_code == 403


def test_the_dashboard_s_sync_health_matches_the_sync_status(seeded, client, read_key):
    board = _get(client, read_key, "/api/v1/metrics/dashboard?month=2026-04")
    status = _get(client, read_key, "/api/v1/sync/status")
    health = board["sync"]
    assert health["outbox_pending"] == status["outbox"]["pending"] > 0  # the seeded changes wait for a push
    assert health["dead_letters"] == status["outbox"]["dead"] + status["inbox"]["dead"] == 0
    assert health["open_reviews"] == status["open_reviews"]
    assert health["last_push_at"] is None and health["last_pull_at"] is None
    assert health["api_used"] is None  # Salesforce is not configured: unknown, not 0


def test_replacing_a_rate_is_audited_with_the_rate_before(client, read_key, write_key):
    headers = {**bearer(write_key), "Idempotency-Key": "rate-usd-0331"}
    first = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.0800"}, headers=headers)
    replay = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.0800"}, headers=headers)
    assert first.status_code == replay.status_code == 201 and replay.json == first.json
    changed = client.put("/api/v1/exchange-rates/2026-03-31/USD", json={"rate": "1.0812", "source": "ecb"},
                         headers=bearer(write_key))
    assert changed.status_code == 200 and changed.json["rate"] == "1.0812" and changed.json["source"] == "ecb"
    log = _get(client, read_key, "/api/v1/audit-log?target_type=exchange_rate")["data"]
    assert [(e["action"], e["target_id"]) for e in log] == [("exchange_rate.set", "2026-03-31/USD")] * 2
    assert log[0]["before"]["rate"] == "1.0800" and log[0]["after"]["rate"] == "1.0812"
    assert log[1]["before"] is None
