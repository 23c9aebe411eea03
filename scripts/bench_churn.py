#!/usr/bin/env python
"""Benchmark churn risk: time-ordered holdout ROC AUC of the trained model and of the baseline.

    .venv/bin/python scripts/bench_churn.py [--customers 3000] [--months 36] [--seed 7] [--horizon 3]

Simulates a population (``tests/support/churn.py``) whose churn is drawn each month from a hazard
depending on known drivers — MRR trend, contractions, days overdue, direct debits returned, usage
decline, a short tenure — plus noise, with customers turning unhappy and recovering. Then does what
``billsync churn train`` does with the installation's history: one snapshot per paying customer and
month end whose label (no MRR ``--horizon`` month ends later) is known, a time-ordered split (the last
quarter of the months held out; training labels all known before the holdout starts), a logistic
model fitted on the training months (scikit-learn), and both the model and the baseline scored on
the holdout. Prints the counts, the two ROC AUCs and how often a churned customer's top three
reasons name one of the drivers it really showed. Goal: model AUC ≥ 0.80.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_engine.churn import (  # noqa: E402
    labelled_months,
    model_score,
    month_end,
    snapshots,
    time_split,
)
from billing_engine.use_cases.churn import evaluate_split  # noqa: E402
from tests.support.churn import simulate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--horizon", type=int, default=3)
    args = parser.parse_args()
    if args.customers < 50 or args.months < args.horizon + 6:
        print("error: --customers must be at least 50 and --months at least --horizon + 6", file=sys.stderr)
        return 2

    started = time.perf_counter()
    population = simulate(args.customers, args.months, seed=args.seed)
    simulated = time.perf_counter() - started
    months = labelled_months(population.first_month, population.last_month, args.horizon)
    rows = snapshots(population.facts, months, horizon=args.horizon)
    split = time_split(rows, horizon=args.horizon)
    fit_started = time.perf_counter()
    params, model_auc, baseline_auc = evaluate_split(split.train, split.holdout)
    fitted = time.perf_counter() - fit_started

    # Reasons: churned customers of the holdout's first month, scored at that month end.
    first = split.holdout_from
    on = month_end(first)
    by_id = {f.customer_id: f for f in population.facts}
    named = total = 0
    for r in split.holdout:
        if r.month != first or not r.churned or not population.drivers.get(r.customer_id):
            continue
        total += 1
        reasons = {x.signal for x in model_score(by_id[r.customer_id], on, params).reasons}
        named += bool(reasons & set(population.drivers[r.customer_id]))

    print(f"population: {len(population.facts)} customers, {population.first_month} to {population.last_month}, "
          f"{len(population.drivers)} churned (seed {args.seed})")
    print(f"snapshots: {len(rows)}; train {len(split.train)} ({sum(r.churned for r in split.train)} churned) "
          f"before {split.holdout_from}; holdout {len(split.holdout)} "
          f"({sum(r.churned for r in split.holdout)} churned) from {split.holdout_from}")
    print(f"holdout ROC AUC: model {model_auc:.3f}   baseline {baseline_auc:.3f}")
    print("model coefficients (standardized): " + ", ".join(
        f"{f} {c:+.2f}" for f, c in zip(params.features, params.coefficients, strict=True)))
    print(f"churned customers whose top three reasons name a driver they showed: {named} of {total}")
    print(f"simulation {simulated:.1f} s, snapshots and fit {fitted:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
