"""Churn risk: every paying customer scored 0–100 with its three main reasons, the model trained
on the installation's own history and its evaluation (docs/intelligence.md, Churn risk).

The signals, the baseline, the model's scoring and the time-ordered split are pure
(``billing_engine.churn``); this module reads the history (``storage.churn.customer_facts``),
fits the model with scikit-learn — a standardized logistic regression, whose coefficients ×
standardized values are each feature's contribution, so the model's reasons are the baseline's
signals in the same words — stores the scores and the models with their evaluation, and asks for
the Account summary to be pushed again (``customer.summary_changed``) for each customer whose
score or reasons changed: the push writes them with the summary (``Churn_Risk__c``,
``Churn_Risk_Reasons__c``).

Which scores: the baseline until the installation has seen ``ChurnRules.min_churned`` customers
churn and a model was trained on them; the latest model after that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from billing_engine import churn as rules_
from billing_engine.churn import (
    BASELINE,
    MODEL,
    ModelParams,
    Reason,
    Score,
    Snapshot,
    baseline_points,
    baseline_score,
    labelled_months,
    model_score,
    month_key,
    roc_auc,
    signal_names,
    snapshots,
    time_split,
)
from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.outbox import customer_summary_event
from billing_engine.storage import churn as churn_store
from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events


@dataclass(frozen=True)
class ChurnRules:
    """``min_churned``: churned customers the history must hold before a model replaces the
    baseline (``CHURN_MIN_CHURNED``); ``horizon_months``: how far ahead churn is predicted."""

    min_churned: int = 30
    horizon_months: int = rules_.HORIZON_MONTHS

    def __post_init__(self) -> None:
        if self.min_churned < 1:
            raise InvalidInputError("min_churned", f"must be at least 1, got {self.min_churned}")
        if not 1 <= self.horizon_months <= 12:
            raise InvalidInputError("horizon_months", f"must be between 1 and 12, got {self.horizon_months}")


@dataclass(frozen=True)
class ScoringReport:
    scored: int
    changed: int  # scores or reasons that changed (their Account summary is pushed again)
    removed: int  # customers no longer paying, their score dropped
    method: str
    model_id: int | None
    as_of: date


@dataclass(frozen=True)
class Evaluation:
    """A training's evaluation on the months held out (``holdout_from`` onwards)."""

    model_id: int | None
    trained_at: datetime | None
    trained_through: str
    holdout_from: str
    train_rows: int
    train_churned: int
    holdout_rows: int
    holdout_churned: int
    churned_customers: int
    model_auc: float | None
    baseline_auc: float | None
    in_use: bool  # whether scoring uses this model (enough churned customers)

    def as_payload(self) -> dict[str, object]:
        return {"model_id": self.model_id, "trained_at": self.trained_at.isoformat() if self.trained_at else None,
                "trained_through": self.trained_through, "holdout_from": self.holdout_from,
                "train_rows": self.train_rows, "train_churned": self.train_churned,
                "holdout_rows": self.holdout_rows, "holdout_churned": self.holdout_churned,
                "churned_customers": self.churned_customers, "model_auc": _rounded(self.model_auc),
                "baseline_auc": _rounded(self.baseline_auc), "in_use": self.in_use}


@dataclass(frozen=True)
class TrainingReport:
    trained: bool
    message: str
    evaluation: Evaluation | None


@dataclass(frozen=True)
class CustomerRisk:
    customer_id: str
    customer_name: str
    score: int
    reasons: tuple[Reason, ...]
    method: str
    scored_on: date

    def reasons_text(self, lang: str = "en") -> list[str]:
        return [r.text(lang) for r in self.reasons]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# ---------------------------------------------------------------- fitting


def fit_model(train: Sequence[Snapshot], features: Sequence[str] | None = None) -> ModelParams:
    """A logistic regression on standardized features (scikit-learn), balanced between churned
    and staying customers; returned as plain parameters, so scoring needs no scikit-learn."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415  (loaded only to train)
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    names = tuple(features or signal_names())
    labels = [r.churned for r in train]
    if len(set(labels)) < 2:
        raise InvalidInputError("history", "the training months hold no churned customer, or only churned ones")
    matrix = [[r.values[n] for n in names] for r in train]
    scaler = StandardScaler().fit(matrix)
    scales = tuple(float(s) if s > 0 else 1.0 for s in scaler.scale_)
    standardized = [[(x - m) / s for x, m, s in zip(row, scaler.mean_, scales, strict=True)] for row in matrix]
    model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=500).fit(standardized, labels)
    return ModelParams(names, tuple(float(m) for m in scaler.mean_), scales,
                       tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))


def evaluate_split(train: Sequence[Snapshot], holdout: Sequence[Snapshot]) -> tuple[ModelParams, float | None,
                                                                                    float | None]:
    """Fit on ``train``; the holdout's ROC AUC of the model and of the baseline."""
    params = fit_model(train)
    labels = [r.churned for r in holdout]
    model_auc = roc_auc(labels, [params.probability(r.values) for r in holdout])
    baseline_auc = roc_auc(labels, [baseline_points(r.values) for r in holdout])
    return params, model_auc, baseline_auc


# ---------------------------------------------------------------- training


def train_churn_model(session: Session, as_of: date, *, now: datetime, rules: ChurnRules | None = None,
                      ) -> TrainingReport:
    """Train on the history known on ``as_of`` with a time-ordered split and store the model with its
    evaluation. Nothing is stored while fewer than ``min_churned`` customers churned."""
    rules = rules or ChurnRules()
    through = month_key(as_of)
    churned = churn_store.churned_customers(session, through)
    if churned < rules.min_churned:
        return TrainingReport(False, f"{churned} churned customers in the history; the model needs "
                                     f"{rules.min_churned} (CHURN_MIN_CHURNED): the baseline scores until then", None)
    first = churn_store.first_mrr_month(session)
    facts = churn_store.customer_facts(session, as_of)
    # The last labelled month must be a complete month end before as_of.
    last_complete = through if rules_.month_end(through) <= as_of else rules_.shift_month(through, -1)
    months = labelled_months(first or through, last_complete, rules.horizon_months)
    rows = snapshots(facts, months, horizon=rules.horizon_months)
    split = time_split(rows, horizon=rules.horizon_months)
    params, model_auc, baseline_auc = evaluate_split(split.train, split.holdout)
    values = {"trained_at": now, "trained_through": last_complete, "holdout_from": split.holdout_from,
              "params_json": _json(params), "train_rows": len(split.train),
              "train_churned": sum(r.churned for r in split.train), "holdout_rows": len(split.holdout),
              "holdout_churned": sum(r.churned for r in split.holdout), "churned_customers": churned,
              "model_auc": model_auc, "baseline_auc": baseline_auc}
    model_id = churn_store.add_model(session, values)
    evaluation = _evaluation(churn_store.latest_model(session), rules)
    assert evaluation is not None and evaluation.model_id == model_id
    return TrainingReport(True, f"model {model_id} trained on {len(split.train)} snapshots, evaluated on "
                                f"{len(split.holdout)} from {split.holdout_from}", evaluation)


def _json(params: ModelParams) -> str:
    return json.dumps(params.as_json())


def _evaluation(row: churn_store.ChurnModelRow | None, rules: ChurnRules) -> Evaluation | None:
    if row is None:
        return None
    trained_at = row.trained_at if row.trained_at is None or row.trained_at.tzinfo else row.trained_at.replace(
        tzinfo=UTC)  # SQLite gives back naive UTC times
    return Evaluation(row.id, trained_at, row.trained_through, row.holdout_from, row.train_rows,
                      row.train_churned, row.holdout_rows, row.holdout_churned, row.churned_customers,
                      row.model_auc, row.baseline_auc, row.churned_customers >= rules.min_churned)


def model_is_current(session: Session, as_of: date) -> bool:
    """Whether the latest model was trained on the history through the month end before ``as_of``'s
    month, as the month's training on its 1st does (``False``: none was trained this month)."""
    row = churn_store.latest_model(session)
    return row is not None and row.trained_through >= rules_.shift_month(month_key(as_of), -1)


def churn_evaluation(session: Session, rules: ChurnRules | None = None) -> Evaluation | None:
    """The latest training's evaluation (``None``: never trained)."""
    return _evaluation(churn_store.latest_model(session), rules or ChurnRules())


# ---------------------------------------------------------------- scoring


def score_customers(session: Session, as_of: date, *, now: datetime, rules: ChurnRules | None = None,
                    ) -> ScoringReport:
    """Score every customer paying on ``as_of`` (MRR above zero at its month end) and store the
    scores; a customer no longer paying loses its score. Customers whose score or reasons changed
    get their Account summary pushed again."""
    rules = rules or ChurnRules()
    model_row = churn_store.latest_model(session)
    use_model = model_row is not None and model_row.churned_customers >= rules.min_churned
    params = churn_store.model_params(model_row) if use_model and model_row is not None else None
    month = month_key(as_of)
    scores: list[Score] = []
    for facts in churn_store.customer_facts(session, as_of):
        if rules_.mrr_at(facts, month) <= 0:
            continue
        scores.append(model_score(facts, as_of, params) if params is not None else baseline_score(facts, as_of))
    before = churn_store.stored_scores(session)
    model_id = model_row.id if params is not None and model_row is not None else None
    rows, changed = [], []
    for s in scores:
        reasons_json = churn_store.reasons_to_json(s.reasons)
        old = before.get(s.customer_id)
        if old is None or old.score != s.score or _texts(old.reasons_json) != s.reasons_text():
            changed.append(s.customer_id)
        rows.append({"customer_id": s.customer_id, "score": s.score, "reasons_json": reasons_json,
                     "method": s.method, "model_id": model_id, "scored_on": as_of, "scored_at": now})
    churn_store.save_scores(session, rows)
    gone = sorted(set(before) - {s.customer_id for s in scores})
    churn_store.delete_scores(session, gone)
    add_events(session, [customer_summary_event(cid, now) for cid in sorted(set(changed) | set(gone))])
    return ScoringReport(len(scores), len(changed), len(gone), MODEL if params is not None else BASELINE,
                         model_id, as_of)


def _texts(reasons_json: str) -> str:
    return "; ".join(r.text() for r in churn_store.reasons_from_json(reasons_json))


def churn_risks(session: Session, *, limit: int = 50, after: tuple[int, str] | None = None) -> list[CustomerRisk]:
    """Scored customers from the riskiest (keyset pages: ``after`` = the last row's score and id)."""
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit", f"must be between 1 and 1000, got {limit}")
    return [_risk(row, name) for row, name in churn_store.ranked_scores(session, limit=limit, after=after)]


def customer_churn_risk(session: Session, customer_id: str) -> CustomerRisk | None:
    """The customer's stored score (``None``: not scored); ``NotFoundError`` for an unknown customer."""
    customer = session.get(CustomerRow, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    row = churn_store.stored_scores(session, [customer_id]).get(customer_id)
    return _risk(row, customer.name) if row is not None else None


def churn_summaries(session: Session, customer_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """The score and the reasons in English (one line) of each scored customer, for the Account push."""
    return {cid: (row.score, _texts(row.reasons_json))
            for cid, row in churn_store.stored_scores(session, customer_ids).items()}


def _risk(row: churn_store.ChurnScoreRow, name: str) -> CustomerRisk:
    return CustomerRisk(row.customer_id, name, row.score, churn_store.reasons_from_json(row.reasons_json),
                        row.method, row.scored_on)
