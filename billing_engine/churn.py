"""Churn risk: a score from 0 to 100 per customer and its three main reasons in plain words.

Everything here is pure (standard library): the facts a customer's billing history holds
(``CustomerFacts``, read by ``billing_engine.storage.churn``), the **signals** measured on
them at a date, the transparent **baseline** (points per signal, documented in
docs/intelligence.md, Churn risk), the scoring with a trained logistic model (``ModelParams``:
standardized features × coefficients, so each feature's contribution is its reason), the
training snapshots with their label, the time-ordered split and the ROC AUC. The fitting itself
(scikit-learn) is in ``billing_engine.use_cases.churn``.

A signal is one ``Signal``: a name, a function measuring it on a customer's facts at a date (it
reads nothing dated after that date), the baseline's points for a value and its wording in
English and French. A new signal — self-service cancel reasons, support requests — is one more
``Signal`` in ``SIGNALS``; dated facts of a new kind travel in ``CustomerFacts.events`` under
the signal's name, so ``recent_events`` measures them without a new field
(``event_count_signal`` builds such a signal in one call).

Amounts (MRR) and quantities (usage, units included) stay ``Decimal`` as the engine keeps them;
only a signal's value — a ratio, a count, days or months, no amount — becomes a ``float``, at the
boundary where the features meet the model (scikit-learn and the logistic formula need floats).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.periods import add_months

#: Months ahead a snapshot's label looks: a customer paying at a month end and paying nothing
#: this many month ends later has churned.
HORIZON_MONTHS = 3
#: The months looked back by the trends and counts.
TREND_MONTHS = 3
EVENT_MONTHS = 6
LANGUAGES = ("en", "fr")
BASELINE = "baseline"
MODEL = "model"
ZERO = Decimal(0)


@dataclass(frozen=True)
class InvoiceFacts:
    """An invoice as the risk sees it: when it was due and when it stopped being owed — paid,
    credited or voided (``None``: still owed). On a day before ``settled_on`` it was owed."""

    due_on: date
    settled_on: date | None = None


@dataclass(frozen=True)
class AllowancePeriod:
    """Units included per month by one subscription item from ``starts_on`` until the day before
    ``ends_before`` (``None``: still running)."""

    starts_on: date
    ends_before: date | None
    units: Decimal

    def active_on(self, on: date) -> bool:
        return self.starts_on <= on and (self.ends_before is None or on < self.ends_before)


@dataclass(frozen=True)
class CustomerFacts:
    """What a customer's billing history says, as plain values.

    ``mrr``: the MRR at each month end where it changed (``YYYY-MM`` → amount; a month's value is
    the last at or before it, 0 before the first); ``first_started_on``: its first subscription's
    start; ``events``: dated facts by kind (``contraction``: a quantity lowered or an item removed by
    an amendment; ``payment_return``: a direct debit returned; any kind a new signal reads);
    ``usage``: units used per month; ``allowances``: the units included per month, each with the
    days its item ran (``allowance_on`` sums those running on a day).
    """

    customer_id: str
    first_started_on: date | None
    mrr: Mapping[str, Decimal] = field(default_factory=dict)
    invoices: Sequence[InvoiceFacts] = ()
    events: Mapping[str, Sequence[date]] = field(default_factory=dict)
    usage: Mapping[str, Decimal] = field(default_factory=dict)
    allowances: Sequence[AllowancePeriod] = ()


# ---------------------------------------------------------------- months


def month_key(on: date) -> str:
    return f"{on.year:04d}-{on.month:02d}"


def month_end(month: str) -> date:
    """The last day of ``YYYY-MM``."""
    year, number = int(month[:4]), int(month[5:7])
    return date.fromordinal(add_months(date(year, number, 1), 1).toordinal() - 1)


def shift_month(month: str, months: int) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return month_key(add_months(date(year, number, 1), months))


def mrr_at(facts: CustomerFacts, month: str) -> Decimal:
    """The MRR at the end of ``month``: the last change at or before it."""
    best: str | None = None
    for key in facts.mrr:
        if key <= month and (best is None or key > best):
            best = key
    return facts.mrr[best] if best is not None else ZERO


def allowance_on(facts: CustomerFacts, on: date) -> Decimal:
    """Units included per month by the items running on ``on`` (none started later, none ended)."""
    return sum((a.units for a in facts.allowances if a.active_on(on)), ZERO)


def recent_events(facts: CustomerFacts, kind: str, on: date, months: int = EVENT_MONTHS) -> float:
    """How many facts of ``kind`` fall in the ``months`` months up to ``on`` (never after it)."""
    since = add_months(on, -months)
    return float(sum(1 for d in facts.events.get(kind, ()) if since < d <= on))


# ---------------------------------------------------------------- signals


@dataclass(frozen=True)
class Signal:
    """One measured signal. ``measure(facts, on)`` reads only facts dated on or before ``on``;
    ``points(value)`` is the baseline's risk points for it (0 = no risk); ``describe(value, lang)``
    says it in plain words; ``risky_when_high``: the direction in which the value means risk
    (used only for documentation and checks: the model learns its own sign)."""

    name: str
    measure: Callable[[CustomerFacts, date], float]
    points: Callable[[float], float]
    describe: Callable[[float, str], str]
    risky_when_high: bool = True


def _pct(value: float) -> int:
    return int(round(abs(value) * 100))


def _mrr_trend(facts: CustomerFacts, on: date) -> float:
    month = month_key(on)
    now, before = mrr_at(facts, month), mrr_at(facts, shift_month(month, -TREND_MONTHS))
    if before <= 0:
        return 0.0
    return max(-1.0, min(1.0, float((now - before) / before)))  # a ratio: float at the feature boundary


def _describe_mrr_trend(value: float, lang: str) -> str:
    if value < -0.005:
        return (f"MRR fell {_pct(value)} % in three months" if lang == "en"
                else f"MRR en baisse de {_pct(value)} % en trois mois")
    if value > 0.005:
        return (f"MRR grew {_pct(value)} % in three months" if lang == "en"
                else f"MRR en hausse de {_pct(value)} % en trois mois")
    return "MRR steady over three months" if lang == "en" else "MRR stable sur trois mois"


def _overdue_days(facts: CustomerFacts, on: date) -> float:
    worst = 0
    for inv in facts.invoices:
        if inv.due_on < on and (inv.settled_on is None or inv.settled_on > on):
            worst = max(worst, (on - inv.due_on).days)
    return float(worst)


def _describe_overdue(value: float, lang: str) -> str:
    if value <= 0:
        return "no invoice overdue" if lang == "en" else "aucune facture en retard"
    return (f"an invoice overdue by {int(value)} days" if lang == "en"
            else f"une facture en retard de {int(value)} jours")


def _describe_count(one_en: str, many_en: str, none_en: str, one_fr: str, many_fr: str,
                    none_fr: str) -> Callable[[float, str], str]:
    def describe(value: float, lang: str) -> str:
        n = int(value)
        if n <= 0:
            return none_en if lang == "en" else none_fr
        text = (one_en if n == 1 else many_en) if lang == "en" else (one_fr if n == 1 else many_fr)
        return text.format(n=n)
    return describe


def _usage_decline(facts: CustomerFacts, on: date) -> float:
    """The drop of the last three complete months' usage against the three before, measured against
    the allowance when there is one (0: no drop or no usage; 1: usage stopped). A month still under
    way on ``on`` does not count: its usage is not all in."""
    month = month_key(on) if on == month_end(month_key(on)) else shift_month(month_key(on), -1)
    last = sum((facts.usage.get(shift_month(month, -i), ZERO) for i in range(TREND_MONTHS)), ZERO)
    before = sum((facts.usage.get(shift_month(month, -i), ZERO) for i in range(TREND_MONTHS, 2 * TREND_MONTHS)),
                 ZERO)
    reference = max(before, allowance_on(facts, on) * TREND_MONTHS)
    if reference <= 0 or last >= before:
        return 0.0
    return min(1.0, float((before - last) / reference))  # a ratio: float at the feature boundary


def _describe_usage(value: float, lang: str) -> str:
    if value <= 0.005:
        return "usage not declining" if lang == "en" else "usage sans baisse"
    return (f"usage down {_pct(value)} % of its level or allowance in three months" if lang == "en"
            else f"usage en baisse de {_pct(value)} % de son niveau ou de son forfait en trois mois")


def _tenure(facts: CustomerFacts, on: date) -> float:
    if facts.first_started_on is None or facts.first_started_on > on:
        return 0.0
    return float((on.year - facts.first_started_on.year) * 12 + on.month - facts.first_started_on.month)


def _describe_tenure(value: float, lang: str) -> str:
    n = int(value)
    if n < 12:
        return f"customer for {n} months only" if lang == "en" else f"client depuis {n} mois seulement"
    return f"customer for {n // 12} years or more" if lang == "en" else f"client depuis {n // 12} ans ou plus"


def event_count_signal(kind: str, *, points_each: float, most: float,
                       describe: Callable[[float, str], str], months: int = EVENT_MONTHS) -> Signal:
    """A signal counting the customer's facts of ``kind`` (``CustomerFacts.events[kind]``) in the
    last ``months`` months: ``points_each`` baseline points a fact, at most ``most``."""
    return Signal(kind, lambda facts, on: recent_events(facts, kind, on, months),
                  lambda v: min(most, v * points_each), describe)


SIGNALS: tuple[Signal, ...] = (
    Signal("mrr_trend", _mrr_trend, lambda v: min(35.0, max(0.0, -v) * 70.0), _describe_mrr_trend,
           risky_when_high=False),
    event_count_signal("contraction", points_each=10.0, most=25.0, describe=_describe_count(
        "{n} seat reduction or removed item in six months", "{n} seat reductions or removed items in six months",
        "no reduction in six months", "{n} réduction ou produit retiré en six mois",
        "{n} réductions ou produits retirés en six mois", "aucune réduction en six mois")),
    Signal("overdue_days", _overdue_days, lambda v: min(25.0, max(0.0, v - 5) * 0.4), _describe_overdue),
    event_count_signal("payment_return", points_each=10.0, most=20.0, describe=_describe_count(
        "{n} direct debit returned in six months", "{n} direct debits returned in six months",
        "no direct debit returned", "{n} prélèvement rejeté en six mois", "{n} prélèvements rejetés en six mois",
        "aucun prélèvement rejeté")),
    Signal("usage_decline", _usage_decline, lambda v: min(20.0, v * 30.0), _describe_usage),
    # What customers did themselves in the portal (the audit log's portal.cancelled and
    # portal.sales_requested): a subscription cancelled online, a message to sales.
    event_count_signal("self_service_cancel", points_each=20.0, most=30.0, describe=_describe_count(
        "{n} subscription cancelled online in six months", "{n} subscriptions cancelled online in six months",
        "nothing cancelled online", "{n} abonnement résilié en ligne en six mois",
        "{n} abonnements résiliés en ligne en six mois", "aucune résiliation en ligne")),
    event_count_signal("sales_request", points_each=5.0, most=10.0, describe=_describe_count(
        "{n} request to sales from the portal in six months", "{n} requests to sales from the portal in six months",
        "no request to sales", "{n} demande au commercial depuis le portail en six mois",
        "{n} demandes au commercial depuis le portail en six mois", "aucune demande au commercial")),
    Signal("tenure_months", _tenure, lambda v: max(0.0, (12.0 - v) / 12.0) * 10.0, _describe_tenure,
           risky_when_high=False),
)


def signal_names(signals: Sequence[Signal] = SIGNALS) -> tuple[str, ...]:
    return tuple(s.name for s in signals)


def measure(facts: CustomerFacts, on: date, signals: Sequence[Signal] = SIGNALS) -> dict[str, float]:
    """Every signal's value for ``facts`` on ``on``."""
    return {s.name: s.measure(facts, on) for s in signals}


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Reason:
    """One reason of a score: the signal, its value, its weight in the score (points or contribution)."""

    signal: str
    value: float
    weight: float

    def text(self, lang: str = "en", signals: Sequence[Signal] = SIGNALS) -> str:
        by_name = {s.name: s for s in signals}
        found = by_name.get(self.signal)
        return found.describe(self.value, lang) if found else self.signal


@dataclass(frozen=True)
class Score:
    customer_id: str
    score: int  # 0–100
    reasons: tuple[Reason, ...]  # the three weighing most towards risk, heaviest first
    method: str  # baseline | model

    def reasons_text(self, lang: str = "en") -> str:
        return "; ".join(r.text(lang) for r in self.reasons)


def _top_reasons(values: Mapping[str, float], weights: Mapping[str, float], signals: Sequence[Signal]) -> tuple[
        Reason, ...]:
    order = sorted(signals, key=lambda s: (-weights[s.name], s.name))
    return tuple(Reason(s.name, values[s.name], round(weights[s.name], 4)) for s in order[:3])


def baseline_score(facts: CustomerFacts, on: date, signals: Sequence[Signal] = SIGNALS) -> Score:
    """The transparent rule: the sum of every signal's points, at most 100."""
    values = measure(facts, on, signals)
    points = {s.name: s.points(values[s.name]) for s in signals}
    total = min(100, int(round(sum(points.values()))))
    return Score(facts.customer_id, max(0, total), _top_reasons(values, points, signals), BASELINE)


@dataclass(frozen=True)
class ModelParams:
    """A fitted logistic model: per feature its mean, scale and coefficient, and the intercept.
    Probability = 1 / (1 + e^-(intercept + Σ coef × (x − mean) / scale))."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def as_json(self) -> dict[str, object]:
        return {"features": list(self.features), "means": list(self.means), "scales": list(self.scales),
                "coefficients": list(self.coefficients), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ModelParams:
        def floats(key: str) -> tuple[float, ...]:
            value = data[key]
            assert isinstance(value, list)
            return tuple(float(v) for v in value)
        features = data["features"]
        assert isinstance(features, list)
        intercept = data["intercept"]
        assert isinstance(intercept, (int, float))
        return cls(tuple(str(f) for f in features), floats("means"), floats("scales"), floats("coefficients"),
                   float(intercept))

    def contributions(self, values: Mapping[str, float]) -> dict[str, float]:
        return {f: c * (values.get(f, 0.0) - m) / (s or 1.0)
                for f, m, s, c in zip(self.features, self.means, self.scales, self.coefficients, strict=True)}

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(self.contributions(values).values())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def model_score(facts: CustomerFacts, on: date, params: ModelParams, signals: Sequence[Signal] = SIGNALS) -> Score:
    """The trained model's probability × 100; reasons: the features pushing the risk up most."""
    known = [s for s in signals if s.name in params.features]
    values = measure(facts, on, known)
    contributions = params.contributions(values)
    score = int(round(100 * params.probability(values)))
    return Score(facts.customer_id, max(0, min(100, score)), _top_reasons(values, contributions, known), MODEL)


# ---------------------------------------------------------------- training data


@dataclass(frozen=True)
class Snapshot:
    """A customer paying at a month end, its signals then, and whether it churned within the horizon."""

    customer_id: str
    month: str
    values: Mapping[str, float]
    churned: bool


def snapshots(facts: Sequence[CustomerFacts], months: Sequence[str], *, horizon: int = HORIZON_MONTHS,
              signals: Sequence[Signal] = SIGNALS) -> list[Snapshot]:
    """One snapshot per customer paying at the end of each of ``months`` (the caller passes only
    months whose horizon has passed): its signals measured at that month end, labelled churned
    when it pays nothing ``horizon`` month ends later."""
    out: list[Snapshot] = []
    for month in months:
        on = month_end(month)
        later = shift_month(month, horizon)
        for f in facts:
            if mrr_at(f, month) <= 0:
                continue
            out.append(Snapshot(f.customer_id, month, measure(f, on, signals), mrr_at(f, later) <= 0))
    return out


def labelled_months(first: str, through: str, horizon: int = HORIZON_MONTHS) -> list[str]:
    """The month ends from ``first`` whose label is known by the end of ``through``."""
    out, month = [], first
    while shift_month(month, horizon) <= through:
        out.append(month)
        month = shift_month(month, 1)
    return out


@dataclass(frozen=True)
class Split:
    train: list[Snapshot]
    holdout: list[Snapshot]
    holdout_from: str  # the first month of the holdout


def time_split(rows: Sequence[Snapshot], *, horizon: int = HORIZON_MONTHS, holdout_share: float = 0.25) -> Split:
    """Train on earlier months, evaluate on later ones: the last ``holdout_share`` of the months
    are held out, and a training snapshot's label must be known before the holdout's first month
    (its month + ``horizon`` at or before it), so no training label looks into the holdout."""
    months = sorted({r.month for r in rows})
    if len(months) < horizon + 2:
        raise InvalidInputError("history", f"{len(months)} months of history; at least {horizon + 2} are needed")
    held = max(1, int(round(len(months) * holdout_share)))
    holdout_from = months[-held]
    train = [r for r in rows if shift_month(r.month, horizon) <= holdout_from]
    holdout = [r for r in rows if r.month >= holdout_from]
    return Split(train, holdout, holdout_from)


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """The probability that a churned customer scores above one that stayed (ties count half);
    ``None`` without both kinds."""
    ranked = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    positives = sum(1 for _, y in ranked if y)
    negatives = len(ranked) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average_rank = (i + j + 1) / 2  # ranks i+1..j
        rank_sum += average_rank * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def baseline_points(values: Mapping[str, float], signals: Sequence[Signal] = SIGNALS) -> float:
    """The baseline's score of measured values (for the evaluation of snapshots)."""
    return min(100.0, sum(s.points(values[s.name]) for s in signals if s.name in values))


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise InvalidInputError("language", f"{lang!r} is not supported; use en or fr")
    return lang
