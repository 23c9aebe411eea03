"""Churn risk, the pure part (docs/intelligence.md, Churn risk): scores from 0 to 100 with three
reasons in plain words, the reasons of a customer at risk name what is really wrong with it, the
signals never read the future, the time-ordered split never trains on the holdout's months, and
the ROC AUC is the rank statistic it claims to be."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from billing_engine.churn import (
    SIGNALS,
    AllowancePeriod,
    CustomerFacts,
    InvoiceFacts,
    Snapshot,
    baseline_score,
    event_count_signal,
    labelled_months,
    measure,
    model_score,
    month_end,
    mrr_at,
    roc_auc,
    shift_month,
    snapshots,
    time_split,
)
from billing_engine.errors import InvalidInputError
from billing_engine.use_cases.churn import evaluate_split, fit_model
from tests.support.churn import simulate

ON = date(2026, 6, 30)


def steady(cid: str = "steady") -> CustomerFacts:
    return CustomerFacts(cid, date(2022, 3, 1), {"2022-03": D(1000)},
                         tuple(InvoiceFacts(month_end(shift_month("2026-01", i)), month_end(shift_month("2026-01", i)))
                               for i in range(6)),
                         {}, {shift_month("2026-01", i): D(900) for i in range(6)},
                         (AllowancePeriod(date(2022, 3, 1), None, D(1000)),))


def at_risk() -> CustomerFacts:
    """MRR halved by two seat reductions, an invoice 50 days late; usage steady, an old customer."""
    return CustomerFacts("at-risk", date(2021, 5, 1), {"2021-05": D(1000), "2026-04": D(700), "2026-05": D(500)},
                         (InvoiceFacts(date(2026, 5, 11), None), InvoiceFacts(date(2026, 6, 10), date(2026, 6, 8))),
                         {"contraction": (date(2026, 4, 12), date(2026, 5, 20))},
                         {shift_month("2026-01", i): D(1000) for i in range(6)},
                         (AllowancePeriod(date(2021, 5, 1), None, D(1000)),))


@pytest.fixture(scope="module")
def population():
    return simulate(customers=150, months=20, seed=3)


def test_every_paying_customer_gets_a_score_from_0_to_100_and_three_distinct_reasons(population):
    on = month_end(population.last_month)
    scored = [baseline_score(f, on) for f in population.facts]
    assert len(scored) == len(population.facts)
    for s in scored:
        assert 0 <= s.score <= 100
        assert len(s.reasons) == 3 and len({r.signal for r in s.reasons}) == 3
        assert all(r.text("en") and r.text("fr") and r.text("en") != r.text("fr") for r in s.reasons)
    assert len({s.score for s in scored}) > 5  # the scores spread; they are not one value


def test_an_at_risk_customer_scores_high_and_its_reasons_name_its_real_drivers():
    risky, fine = baseline_score(at_risk(), ON), baseline_score(steady(), ON)
    assert risky.score >= 60 > 10 >= fine.score
    # Heaviest first: the MRR fall (35 points), two reductions (20), 50 days overdue (18).
    assert [r.signal for r in risky.reasons] == ["mrr_trend", "contraction", "overdue_days"]
    assert risky.reasons_text() == ("MRR fell 50 % in three months; 2 seat reductions or removed items in six months; "
                                    "an invoice overdue by 50 days")
    assert risky.reasons_text("fr") == ("MRR en baisse de 50 % en trois mois; 2 réductions ou produits retirés en six "
                                        "mois; une facture en retard de 50 jours")


def test_the_trained_models_reasons_for_a_churning_customer_name_drivers_it_showed(population):
    months = labelled_months(population.first_month, population.last_month)
    split = time_split(snapshots(population.facts, months))
    params = fit_model(split.train)
    on = month_end(split.holdout_from)
    by_id = {f.customer_id: f for f in population.facts}
    churned = [r for r in split.holdout if r.month == split.holdout_from and r.churned
               and population.drivers.get(r.customer_id)]
    assert churned
    named = sum(bool({x.signal for x in model_score(by_id[r.customer_id], on, params).reasons}
                     & set(population.drivers[r.customer_id])) for r in churned)
    assert named >= 0.8 * len(churned)
    # The at-risk customer built by hand: the model names at least two of its three drivers too.
    signals = {r.signal for r in model_score(at_risk(), ON, params).reasons}
    assert len(signals & {"contraction", "mrr_trend", "overdue_days"}) >= 2


def test_signals_never_read_facts_dated_after_the_scoring_day():
    facts = at_risk()
    later = CustomerFacts(facts.customer_id, facts.first_started_on, {**facts.mrr, "2026-07": D(0)},
                          (*facts.invoices, InvoiceFacts(date(2026, 7, 1), None)),
                          {"contraction": (*facts.events["contraction"], date(2026, 7, 2)),
                           "payment_return": (date(2026, 7, 3),)},
                          {**facts.usage, "2026-07": D(0)},
                          (*facts.allowances, AllowancePeriod(date(2026, 7, 1), None, D(50000))))
    assert measure(later, ON) == measure(facts, ON)


def test_the_time_ordered_split_trains_only_on_labels_known_before_the_holdout(population):
    months = labelled_months(population.first_month, population.last_month, 3)
    assert shift_month(months[-1], 3) == population.last_month
    split = time_split(snapshots(population.facts, months, horizon=3), horizon=3)
    assert split.train and split.holdout
    assert max(shift_month(r.month, 3) for r in split.train) <= split.holdout_from
    assert min(r.month for r in split.holdout) == split.holdout_from
    assert {r.month for r in split.train}.isdisjoint({r.month for r in split.holdout})
    # The label of a training snapshot is whether the customer pays nothing three month ends later:
    # all of those month ends are at or before the holdout's first one.
    by_id = {f.customer_id: f for f in population.facts}
    for r in split.train[:200]:
        later = shift_month(r.month, 3)
        assert later <= split.holdout_from
        assert r.churned == (mrr_at(by_id[r.customer_id], later) <= 0)


def test_a_short_history_cannot_be_split_and_says_so():
    rows = [Snapshot("a", "2026-01", {s.name: 0.0 for s in SIGNALS}, False)]
    with pytest.raises(InvalidInputError, match="months of history"):
        time_split(rows)


def test_the_model_beats_chance_on_later_months_and_the_baseline_is_evaluated_on_the_same_rows(population):
    months = labelled_months(population.first_month, population.last_month)
    split = time_split(snapshots(population.facts, months))
    params, model_auc, baseline_auc = evaluate_split(split.train, split.holdout)
    assert model_auc is not None and baseline_auc is not None
    assert model_auc > 0.7 and baseline_auc > 0.7
    assert params.features == tuple(s.name for s in SIGNALS)
    # Contractions and overdue days push the risk up, a long tenure down.
    weights = dict(zip(params.features, params.coefficients, strict=True))
    assert weights["contraction"] > 0 and weights["overdue_days"] > 0 and weights["tenure_months"] < 0


def test_roc_auc_is_the_probability_that_a_churned_customer_ranks_above_one_that_stayed():
    assert roc_auc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc([True, False], [0.5, 0.5]) == 0.5
    assert roc_auc([True, False, False], [0.5, 0.7, 0.1]) == 0.5
    assert roc_auc([False, False], [0.1, 0.2]) is None


def test_a_new_signal_plugs_in_as_one_definition_and_reads_its_own_dated_facts():
    support = event_count_signal("support_request", points_each=5.0, most=15.0,
                                 describe=lambda v, lang: f"{int(v)} support requests")
    facts = CustomerFacts("c", date(2020, 1, 1), {"2020-01": D(100)},
                          events={"support_request": tuple(ON - timedelta(days=d) for d in (1, 20, 40, 400))})
    score = baseline_score(facts, ON, (*SIGNALS, support))
    assert score.reasons[0].signal == "support_request" and score.reasons[0].value == 3.0
    assert score.reasons[0].text("en", (*SIGNALS, support)) == "3 support requests"
