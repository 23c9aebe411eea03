"""Churn risk through the API (docs/api.md, docs/intelligence.md): the scored customers from the
riskiest in keyset pages, one customer's score and reasons in English or French, the model's
evaluation; unknown customers, unscored ones and bad parameters are problems, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing_engine.use_cases.churn import ChurnRules, score_customers, train_churn_model
from connector.database import transaction
from tests.support.api import bearer
from tests.support.churn import HISTORY_TODAY, write_histories

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


@pytest.fixture
def scored(app):
    engine = app.extensions["billsync"].engine
    ids = write_histories(engine, 18)
    with transaction(engine) as s:
        score_customers(s, HISTORY_TODAY, now=NOW)
    return engine, ids


def test_the_riskiest_customers_come_first_in_pages_with_three_reasons(client, read_key, scored):
    first = client.get("/api/v1/churn-risks?limit=5", headers=bearer(read_key))
    assert first.status_code == 200, first.json
    body = first.json
    assert len(body["data"]) == 5 and body["next"]
    scores = [r["score"] for r in body["data"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 100 for s in scores)
    assert all(len(r["reasons"]) == 3 and r["reasons"][0]["text"] for r in body["data"])
    rest = client.get(body["next"], headers=bearer(read_key)).json
    seen = [r["customer_id"] for r in body["data"]] + [r["customer_id"] for r in rest["data"]]
    assert len(seen) == len(set(seen))
    assert max(r["score"] for r in rest["data"]) <= scores[-1]


def test_one_customers_risk_in_english_and_french(client, read_key, scored):
    top = client.get("/api/v1/churn-risks?limit=1", headers=bearer(read_key)).json["data"][0]
    en = client.get(f"/api/v1/customers/{top['customer_id']}/churn-risk", headers=bearer(read_key))
    fr = client.get(f"/api/v1/customers/{top['customer_id']}/churn-risk?lang=fr", headers=bearer(read_key))
    assert en.status_code == fr.status_code == 200
    assert en.json["score"] == top["score"] and en.json["method"] == "baseline"
    assert [r["signal"] for r in en.json["reasons"]] == [r["signal"] for r in fr.json["reasons"]]
    assert en.json["reasons"][0]["text"] != fr.json["reasons"][0]["text"]


def test_unknown_unscored_and_bad_requests_are_problems(client, read_key, scored):
    engine, ids = scored
    unknown = client.get("/api/v1/customers/nobody/churn-risk", headers=bearer(read_key))
    assert unknown.status_code == 404 and unknown.content_type == "application/problem+json"
    left = client.get("/api/v1/customers/ch-005/churn-risk", headers=bearer(read_key))  # left in 2025: no MRR
    assert left.status_code == 404 and "no churn risk" in left.json["detail"]
    for query in ("lang=de", "limit=0", "limit=5000", "cursor=%%%"):
        answer = client.get(f"/api/v1/churn-risks?{query}", headers=bearer(read_key))
        assert answer.status_code in (400, 422), (query, answer.status_code)
        assert answer.content_type == "application/problem+json"
    assert client.get("/api/v1/churn-risks").status_code == 401


def test_the_evaluation_is_a_404_until_a_model_is_trained_then_its_figures(client, read_key, scored):
    engine, _ = scored
    missing = client.get("/api/v1/churn-risks/evaluation", headers=bearer(read_key))
    assert missing.status_code == 404 and "no churn model trained yet" in missing.json["detail"]
    with transaction(engine) as s:
        report = train_churn_model(s, HISTORY_TODAY, now=NOW, rules=ChurnRules(min_churned=3))
    assert report.trained, report.message
    found = client.get("/api/v1/churn-risks/evaluation", headers=bearer(read_key))
    assert found.status_code == 200
    body = found.json
    assert body["model_id"] == report.evaluation.model_id and body["holdout_from"] > "2025-01"
    assert body["train_rows"] > 0 and body["holdout_rows"] > 0
    assert body["in_use"] is False  # CHURN_MIN_CHURNED is 30 by default: the baseline still scores
