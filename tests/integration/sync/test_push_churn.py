"""Churn risk reaches Salesforce through the push (docs/intelligence.md, Churn risk): the scoring
asks for the Account summary again, and the push writes ``Churn_Risk__c`` and
``Churn_Risk_Reasons__c`` on each scored customer's Account; a customer who is no longer scored has
them emptied; the scoring run again with nothing changed sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from billing_engine.use_cases.churn import churn_risks
from connector.churn_jobs import run_churn_scoring
from connector.database import transaction
from connector.sync.push import push_outbox
from tests.support.churn import HISTORY_TODAY, write_histories
from tests.support.push import create_accounts, drain_outbox

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


def accounts_risk(client, ids):
    found = {r["Id"]: (r["Churn_Risk__c"], r["Churn_Risk_Reasons__c"]) for r in client.query_all(
        "SELECT Id, Churn_Risk__c, Churn_Risk_Reasons__c FROM Account")}
    return [found[i] for i in ids]


def test_scores_and_reasons_reach_the_accounts_through_the_push(services, org):
    client = services.salesforce()
    accounts = create_accounts(client, 12)
    customers = write_histories(services.engine, 12, account_ids=accounts)
    drain_outbox(services)
    assert {risk for risk, _ in accounts_risk(client, accounts)} == {None}

    report = run_churn_scoring(services, HISTORY_TODAY, now=NOW)
    assert report.scored > 0 and report.changed == report.scored
    drain_outbox(services)

    with Session(services.engine) as s:
        risks = {r.customer_id: r for r in churn_risks(s, limit=100)}
    shown = dict(zip(customers, accounts_risk(client, accounts), strict=True))
    for cid, (score, reasons) in shown.items():
        if cid in risks:
            assert score is not None and int(score) == risks[cid].score
            assert reasons == "; ".join(risks[cid].reasons_text("en"))
            assert len(reasons.split("; ")) == 3
        else:  # no MRR today: not scored, the fields stay empty
            assert (score, reasons) == (None, None)
    assert any(cid not in risks for cid in customers) and len(risks) >= 6
    top = max(risks.values(), key=lambda r: r.score)

    # Nothing changed: scoring again sends nothing.
    again = run_churn_scoring(services, HISTORY_TODAY, now=NOW)
    assert again.changed == 0
    assert push_outbox(services, worker_id="w1", now=NOW).claimed == 0

    # A customer that stops paying loses its score, and its Account's fields are emptied.
    from billing_engine.use_cases.subscriptions import cancel_subscription

    leaving = next(cid for cid in risks if cid != top.customer_id)
    with transaction(services.engine) as s:
        cancel_subscription(s, f"sub-{leaving}", HISTORY_TODAY.replace(day=1), immediate=True, now=NOW)
    drain_outbox(services)
    gone = run_churn_scoring(services, HISTORY_TODAY, now=NOW)
    assert gone.removed == 1
    drain_outbox(services)
    assert shown[leaving][0] is not None
    assert accounts_risk(client, [accounts[customers.index(leaving)]]) == [(None, None)]
