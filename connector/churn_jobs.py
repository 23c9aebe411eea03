"""Churn risk as the CLI, the API, the console and the clock run it, with the settings applied
(docs/intelligence.md, Churn risk): ``CHURN_RISK=off`` refuses to score or train,
``CHURN_MIN_CHURNED`` says when the trained model replaces the baseline."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from billing_engine.use_cases.churn import (
    ChurnRules,
    Evaluation,
    ScoringReport,
    TrainingReport,
    churn_evaluation,
    model_is_current,
    score_customers,
    train_churn_model,
)
from connector.database import transaction
from connector.settings import SettingsError

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.wiring import Services


def churn_rules(settings: Settings) -> ChurnRules:
    return ChurnRules(min_churned=settings.churn_min_churned)


def is_enabled(settings: Settings) -> bool:
    return settings.churn_risk == "on"


def require_enabled(settings: Settings) -> None:
    if not is_enabled(settings):
        raise SettingsError(["CHURN_RISK is off: set CHURN_RISK=on to score customers and train the model"])


def run_churn_scoring(services: Services, as_of: date, *, now: datetime | None = None) -> ScoringReport:
    """Score every paying customer as of ``as_of`` (``billsync churn score`` and the clock)."""
    require_enabled(services.settings)
    with transaction(services.engine) as session:
        return score_customers(session, as_of, now=now or datetime.now(UTC), rules=churn_rules(services.settings))


def run_churn_training(services: Services, as_of: date, *, now: datetime | None = None) -> TrainingReport:
    """Train and evaluate the model on the history known on ``as_of`` (``billsync churn train`` and the clock)."""
    require_enabled(services.settings)
    with transaction(services.engine) as session:
        return train_churn_model(session, as_of, now=now or datetime.now(UTC), rules=churn_rules(services.settings))


def latest_evaluation(services: Services) -> Evaluation | None:
    with transaction(services.engine) as session:
        return churn_evaluation(session, churn_rules(services.settings))


def churn_model_is_current(services: Services, as_of: date) -> bool:
    """Whether this month's model is trained (on the history through the last month end)."""
    with transaction(services.engine) as session:
        return model_is_current(session, as_of)
