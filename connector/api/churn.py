"""Churn risk (docs/intelligence.md, Churn risk): ``GET /api/v1/churn-risks`` (scored customers from
the riskiest), ``GET /api/v1/customers/{customer_id}/churn-risk`` (one customer's score and
reasons) and ``GET /api/v1/churn-risks/evaluation`` (the latest model's holdout figures)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from billing_engine.use_cases import churn
from connector.api.framework import ApiBlueprint, api_state, reading, respond
from connector.api.invoices import CUSTOMER_ID_PATTERN
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.problems import not_found

blueprint = ApiBlueprint("churn", __name__, tag="Churn risk",
                         description="Each paying customer's risk of leaving (0–100) and its three main reasons.")

Language = Literal["en", "fr"]


class ChurnQuery(PageQuery):
    lang: Language = Field("en", description="The language of the reasons: en or fr.")


class ChurnPath(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="The customer's id.")


class LangQuery(BaseModel):
    lang: Language = Field("en", description="The language of the reasons: en or fr.")


class ReasonOut(BaseModel):
    signal: str = Field(description="The signal: mrr_trend, contraction, overdue_days, payment_return, "
                                    "usage_decline, self_service_cancel, sales_request, tenure_months.")
    value: float = Field(description="The signal's value on the scoring day.")
    weight: float = Field(description="Its weight in the score: baseline points, or the model's contribution.")
    text: str = Field(description="The reason in plain words.")


class ChurnRiskOut(BaseModel):
    customer_id: str
    customer_name: str
    score: int = Field(ge=0, le=100, description="0 (no risk) to 100.")
    reasons: list[ReasonOut] = Field(description="The three reasons weighing most, heaviest first.")
    method: str = Field(description="baseline (the documented rules) or model (trained on this installation).")
    scored_on: date


class ChurnRiskPage(Page[ChurnRiskOut]):
    pass


class EvaluationOut(BaseModel):
    model_id: int | None
    trained_at: datetime | None
    trained_through: str = Field(description="The last month end of the history it was trained on (YYYY-MM).")
    holdout_from: str = Field(description="The first month held out for the evaluation (YYYY-MM).")
    train_rows: int
    train_churned: int
    holdout_rows: int
    holdout_churned: int
    churned_customers: int
    model_auc: float | None = Field(description="ROC AUC of the model on the holdout months.")
    baseline_auc: float | None = Field(description="ROC AUC of the baseline rules on the same months.")
    in_use: bool = Field(description="Whether the scores come from this model (CHURN_MIN_CHURNED reached).")


def risk_out(risk: churn.CustomerRisk, lang: str) -> ChurnRiskOut:
    return ChurnRiskOut(customer_id=risk.customer_id, customer_name=risk.customer_name, score=risk.score,
                        reasons=[ReasonOut(signal=r.signal, value=r.value, weight=r.weight, text=r.text(lang))
                                 for r in risk.reasons],
                        method=risk.method, scored_on=risk.scored_on)


@blueprint.get("/churn-risks", scope="read", responses={200: ChurnRiskPage})
def list_churn_risks(query: ChurnQuery):
    """Scored customers from the riskiest (then by id), with their reasons."""
    after = decode_cursor(query.cursor, "churn", (int, str))
    with reading() as session:
        rows = churn.churn_risks(session, limit=query.limit + 1, after=(after[0], after[1]) if after else None)
    return respond(ChurnRiskPage(**page(rows, query, "churn", key=lambda r: [r.score, r.customer_id],
                                        item=lambda r: risk_out(r, query.lang))))


@blueprint.get("/churn-risks/evaluation", scope="read", responses={200: EvaluationOut})
def churn_evaluation():
    """The latest model's evaluation: trained on earlier months, ROC AUC on the later ones, next to the baseline."""
    with reading() as session:
        found = churn.churn_evaluation(session, churn.ChurnRules(min_churned=api_state().churn_min_churned))
    if found is None:
        raise not_found("no churn model trained yet: the baseline scores (billsync churn train)")
    return respond(EvaluationOut(**found.as_payload()))


@blueprint.get("/customers/<customer_id>/churn-risk", scope="read", responses={200: ChurnRiskOut})
def customer_churn_risk(path: ChurnPath, query: LangQuery):
    """One customer's churn risk and reasons (404 for an unknown or unscored customer)."""
    with reading() as session:
        risk = churn.customer_churn_risk(session, path.customer_id)
    if risk is None:
        raise not_found(f"customer {path.customer_id!r} has no churn risk: it has no MRR, or it was not scored yet")
    return respond(risk_out(risk, query.lang))
