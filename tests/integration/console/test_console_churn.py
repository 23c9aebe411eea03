"""Churn risk in the console (docs/console.md, docs/intelligence.md): the customer page shows the
score and its three reasons (in French for a French user), the customers by risk are listed from
the riskiest with the model's evaluation, and a bad page link is a message, not an error page."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest

from billing_engine.use_cases.churn import ChurnRules, score_customers, train_churn_model
from connector.database import transaction
from tests.integration.console.conftest import csrf_token
from tests.support.churn import HISTORY_TODAY, write_histories

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def scored(app):
    engine = app.extensions["billsync"].engine
    write_histories(engine, 30)
    with transaction(engine) as s:
        score_customers(s, HISTORY_TODAY, now=NOW)
    return engine


def _rows(body: str) -> list[tuple[int, str]]:
    import re

    return [(int(score), cid) for score, cid in re.findall(
        r'<td class="num strong">(\d+)</td>\s*<td><a href="/customers/([^"]+)"', body)]


def test_the_customers_by_risk_come_riskiest_first_and_each_page_shows_its_score_and_reasons(finance, scored):
    body = text(finance.get("/customers/churn-risk"))
    rows = _rows(body)
    assert rows and [s for s, _ in rows] == sorted((s for s, _ in rows), reverse=True)
    assert "No model trained yet: the baseline rules score until the history holds 30 churned customers." in body
    score, top = rows[0]
    page = text(finance.get(f"/customers/{top}"))
    assert f"{score} / 100" in page
    assert "seat reductions or removed items in six months" in page and "by the baseline rules" in page

    finance.post("/language", data={"locale": "fr", "csrf_token": csrf_token(finance, "/customers/")})
    french = text(finance.get(f"/customers/{top}"))
    assert "Risque de départ" in french and "réductions ou produits retirés en six mois" in french


def test_the_models_evaluation_is_shown_once_trained(finance, scored):
    with transaction(scored) as s:
        report = train_churn_model(s, HISTORY_TODAY, now=NOW, rules=ChurnRules(min_churned=3))
    body = text(finance.get("/customers/churn-risk"))
    assert "ROC AUC, model" in body and f"{report.evaluation.model_auc:.3f}" in body
    assert f"{report.evaluation.baseline_auc:.3f}" in body
    assert "no: the baseline rules score" in body  # CHURN_MIN_CHURNED (30) not reached


def test_a_customer_without_a_score_shows_no_risk_and_a_bad_page_link_is_a_message(finance, scored):
    assert "Churn risk" not in text(finance.get("/customers/cus-b"))  # seeded by the console's fixture: not scored
    response = finance.get("/customers/churn-risk?after=lots")
    assert response.status_code == 422
    assert 'class="notice error"' in response.get_data(as_text=True)
