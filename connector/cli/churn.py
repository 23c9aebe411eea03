"""``billsync churn score|train|list|evaluation``: churn risk (docs/intelligence.md, Churn risk).

``score`` and ``train`` call the same functions as the clock (``connector.churn_jobs``);
``list`` prints the scored customers from the riskiest, ``evaluation`` the latest training's
holdout figures. ``CHURN_RISK=off`` makes ``score`` and ``train`` refuse in one line.
"""

from __future__ import annotations

import re
from datetime import date

import click

from connector.cli.invoices import business_day
from connector.cli.output import echo_json, echo_table, text
from connector.cli.support import UserError, load_services, reported_as

_CURSOR = re.compile(r"(\d{1,3}):(.+)")


@click.group()
def churn() -> None:
    """Churn risk: score customers, train the model, list the riskiest, show the model's evaluation."""


def _as_of(services, raw: str | None) -> date:
    return business_day(services, raw, "--as-of")


@churn.command("score")
@click.option("--as-of", metavar="YYYY-MM-DD", help="Score as of this day (default: today).")
def score(as_of: str | None) -> None:
    """Score every paying customer 0–100 with its three main reasons; changed scores are pushed
    to Salesforce with the Account summary."""
    services = load_services()
    day = _as_of(services, as_of)
    from connector.churn_jobs import run_churn_scoring

    with reported_as("churn score"):
        report = run_churn_scoring(services, day)
    click.echo(f"{report.scored} customers scored as of {report.as_of} by the {report.method}"
               f"{f' {report.model_id}' if report.model_id else ''}; {report.changed} changed, "
               f"{report.removed} no longer paying")


@churn.command("train")
@click.option("--as-of", metavar="YYYY-MM-DD", help="Train on the history known on this day (default: today).")
def train(as_of: str | None) -> None:
    """Train the model on the installation's history (earlier months) and evaluate it on the
    latest months, next to the baseline; stored and used once CHURN_MIN_CHURNED customers churned."""
    services = load_services()
    day = _as_of(services, as_of)
    from connector.churn_jobs import run_churn_training

    with reported_as("churn train"):
        report = run_churn_training(services, day)
    click.echo(report.message)
    if report.evaluation is not None:
        _print_evaluation(report.evaluation)


@churn.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Customers per page.")
@click.option("--after", metavar="CURSOR", help="Start after this cursor (printed at the end of a page).")
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True,
              help="The language of the reasons.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_risks(limit: int, after: str | None, lang: str, as_json: bool) -> None:
    """Scored customers from the riskiest, with their reasons."""
    cursor = None
    if after is not None:
        match = _CURSOR.fullmatch(after.strip())
        if not match or int(match.group(1)) > 100:
            raise UserError(f"--after: {after!r} is not a cursor; use the one printed at the end of a page "
                            "(SCORE:CUSTOMER_ID)")
        cursor = (int(match.group(1)), match.group(2))
    services = load_services()
    from billing_engine.use_cases.churn import churn_risks
    from connector.database import transaction

    with reported_as("churn list"), transaction(services.engine) as session:
        risks = churn_risks(session, limit=limit, after=cursor)
    if as_json:
        echo_json([{"customer_id": r.customer_id, "customer_name": r.customer_name, "score": r.score,
                    "reasons": r.reasons_text(lang), "method": r.method, "scored_on": r.scored_on} for r in risks])
        return
    if not risks:
        click.echo("no customer scored (billsync churn score scores them)")
        return
    echo_table(["score", "customer", "name", "reasons"],
               [[str(r.score), r.customer_id, r.customer_name, "; ".join(r.reasons_text(lang))] for r in risks],
               right=["score"])
    if len(risks) == limit:
        click.echo(f"next page: --after {risks[-1].score}:{risks[-1].customer_id}")


@churn.command("evaluation")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluation(as_json: bool) -> None:
    """The latest model's evaluation on the months held out: ROC AUC of the model and the baseline."""
    services = load_services()
    from connector.churn_jobs import latest_evaluation

    with reported_as("churn evaluation"):
        found = latest_evaluation(services)
    if as_json:
        echo_json(found.as_payload() if found else None)
        return
    if found is None:
        click.echo("no model trained yet: the baseline scores (billsync churn train trains one)")
        return
    _print_evaluation(found)


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_evaluation(e) -> None:
    click.echo(f"model {e.model_id} trained at {text(e.trained_at)} on the months through {e.trained_through}"
               f" ({'in use' if e.in_use else 'not in use: too few churned customers, the baseline scores'})")
    click.echo(f"  trained on {e.train_rows} snapshots ({e.train_churned} churned) before {e.holdout_from}; "
               f"held out {e.holdout_rows} ({e.holdout_churned} churned) from {e.holdout_from}")
    click.echo(f"  holdout ROC AUC: model {_auc(e.model_auc)}, baseline {_auc(e.baseline_auc)}; "
               f"{e.churned_customers} churned customers in the history")
