"""Churn risk over the database (docs/intelligence.md, Churn risk): histories written through the
subscription use cases; the baseline scores until the history holds CHURN_MIN_CHURNED churned
customers, then the model trained on it; its evaluation is stored; a declining customer's reasons
name its seat reductions and its MRR fall; changed scores ask for the Account summary again; and
``billsync churn`` refuses bad input in one line per problem."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.churn import allowance_on, measure
from billing_engine.storage.churn import ChurnModelRow, ChurnScoreRow, customer_facts
from billing_engine.storage.invoices import CreditNote, Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.usage import UsageEventRow
from billing_engine.use_cases.churn import (
    ChurnRules,
    churn_evaluation,
    churn_risks,
    customer_churn_risk,
    score_customers,
    train_churn_model,
)
from connector.cli import cli
from connector.database import transaction
from tests.support.churn import HISTORY_TODAY, decliner, surprise_leaver, write_histories

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


@pytest.fixture
def histories(engine):
    return write_histories(engine, 30)


def run(database_url, *args, **env):
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                                                      "BILLSYNC_TIMEZONE": "UTC", **env})
    return result.exit_code, result.output


def _paying(ids):
    with_mrr = []
    for n, cid in enumerate(ids):
        if (decliner(n) or surprise_leaver(n)):
            continue
        with_mrr.append(cid)
    return with_mrr


def test_the_baseline_scores_until_enough_customers_churned_then_the_trained_model(engine, histories):
    few = ChurnRules(min_churned=100)
    with transaction(engine) as s:
        report = train_churn_model(s, HISTORY_TODAY, now=NOW, rules=few)
    assert not report.trained and "CHURN_MIN_CHURNED" in report.message
    with transaction(engine) as s:
        scored = score_customers(s, HISTORY_TODAY, now=NOW, rules=few)
    assert scored.method == "baseline" and scored.model_id is None
    with Session(engine) as s:
        assert s.scalars(select(ChurnModelRow)).all() == []
        assert {r.method for r in s.scalars(select(ChurnScoreRow))} == {"baseline"}

    enough = ChurnRules(min_churned=3)
    with transaction(engine) as s:
        report = train_churn_model(s, HISTORY_TODAY, now=NOW, rules=enough)
    assert report.trained, report.message
    evaluation = report.evaluation
    assert evaluation.in_use and evaluation.trained_at == NOW and evaluation.churned_customers >= 3
    assert evaluation.trained_through == "2026-11"
    assert evaluation.train_churned >= 1 and evaluation.holdout_churned >= 1
    assert 0.0 <= evaluation.model_auc <= 1.0 and 0.0 <= evaluation.baseline_auc <= 1.0
    with transaction(engine) as s:
        scored = score_customers(s, HISTORY_TODAY, now=NOW, rules=enough)
    assert scored.method == "model" and scored.model_id == evaluation.model_id
    with Session(engine) as s:
        assert {r.method for r in s.scalars(select(ChurnScoreRow))} == {"model"}
        # The same model with a higher threshold (CHURN_MIN_CHURNED raised): back to the baseline.
        assert churn_evaluation(s, few).in_use is False
    with transaction(engine) as s:
        assert score_customers(s, HISTORY_TODAY, now=NOW, rules=few).method == "baseline"


def test_scores_are_from_0_to_100_with_three_reasons_and_a_declining_customer_ranks_first(engine, histories):
    with transaction(engine) as s:
        report = score_customers(s, HISTORY_TODAY, now=NOW)
    with Session(engine) as s:
        risks = churn_risks(s, limit=100)
    # Every customer still paying on the day is scored; those who left are not.
    paying = {r.customer_id for r in risks}
    assert report.scored == len(paying) and set(_paying(histories)) <= paying
    assert not any(surprise_leaver(n) and cid in paying for n, cid in enumerate(histories))
    for r in risks:
        assert 0 <= r.score <= 100 and len(r.reasons) == 3
    assert [r.score for r in risks] == sorted((r.score for r in risks), reverse=True)
    # Decliners still paying today (their cancellation is ahead) reduced their seats twice: they rank first.
    declining = [cid for n, cid in enumerate(histories) if decliner(n) and cid in paying]
    assert declining
    top = risks[0]
    assert top.customer_id in declining
    assert {"contraction", "mrr_trend"} <= {r.signal for r in top.reasons}
    assert "seat reductions or removed items in six months" in "; ".join(top.reasons_text())
    steady = next(r for r in risks if r.customer_id in _paying(histories))
    assert steady.score < top.score
    with Session(engine) as s:
        one = customer_churn_risk(s, top.customer_id)
    assert one.score == top.score and one.reasons_text("fr")[0] != one.reasons_text("en")[0]


def test_a_changed_score_asks_for_the_account_summary_again_and_an_unchanged_one_does_not(engine, histories):
    def summary_rows(s):
        return s.scalars(select(OutboxRow).where(OutboxRow.topic == "customer.summary_changed",
                                                 OutboxRow.status == "pending")).all()

    with Session(engine) as s:
        for row in s.scalars(select(OutboxRow)):
            row.status = "done"
        s.commit()
    with transaction(engine) as s:
        first = score_customers(s, HISTORY_TODAY, now=NOW)
    with Session(engine) as s:
        assert {r.aggregate_id for r in summary_rows(s)} == {r.customer_id for r in churn_risks(s, limit=100)}
        assert first.changed == first.scored
        for row in s.scalars(select(OutboxRow)):
            row.status = "done"
        s.commit()
    with transaction(engine) as s:
        again = score_customers(s, HISTORY_TODAY, now=NOW)
    assert again.changed == 0
    with Session(engine) as s:
        assert summary_rows(s) == []


def test_the_cli_scores_trains_lists_and_shows_the_evaluation(engine, database_url, histories):
    code, output = run(database_url, "churn", "evaluation")
    assert code == 0 and "no model trained yet" in output
    code, output = run(database_url, "churn", "train", "--as-of", "2026-12-06", CHURN_MIN_CHURNED="100")
    assert code == 0 and "the model needs 100 (CHURN_MIN_CHURNED)" in output
    code, output = run(database_url, "churn", "train", "--as-of", "2026-12-06", CHURN_MIN_CHURNED="3")
    assert code == 0, output
    assert "holdout ROC AUC: model" in output and "baseline" in output
    code, output = run(database_url, "churn", "score", "--as-of", "2026-12-06", CHURN_MIN_CHURNED="3")
    assert code == 0 and "by the model 1" in output, output
    code, output = run(database_url, "churn", "list", "--limit", "2")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["score", "customer", "name", "reasons"] and len(lines) == 4
    assert lines[-1].startswith("next page: --after ")
    code, output = run(database_url, "churn", "list", "--after", lines[-1].split()[-1], "--json", "--lang", "fr")
    assert code == 0
    rows = json.loads(output)
    assert rows and all(0 <= r["score"] <= 100 and len(r["reasons"]) == 3 for r in rows)
    code, output = run(database_url, "churn", "evaluation", "--json", CHURN_MIN_CHURNED="3")
    assert code == 0 and json.loads(output)["in_use"] is True


def test_the_cli_refuses_bad_input_and_a_disabled_feature_in_one_line_each(database_url):
    code, output = run(database_url, "churn", "score", "--as-of", "2026-13-01")
    assert code == 2 and output.strip().splitlines() == [
        "error: --as-of: '2026-13-01' is not a valid date (month must be in 1..12)"]
    code, output = run(database_url, "churn", "score", CHURN_RISK="off")
    assert code == 2 and output.strip().splitlines() == [
        "error: churn score: CHURN_RISK is off: set CHURN_RISK=on to score customers and train the model"]
    code, output = run(database_url, "churn", "train", CHURN_RISK="off")
    assert code == 2 and len(output.strip().splitlines()) == 1
    code, output = run(database_url, "churn", "list", "--after", "high")
    assert code == 2 and output.strip().splitlines()[0].startswith("error: --after: 'high' is not a cursor")
    code, output = run(database_url, "churn", "list", "--limit", "0")
    assert code == 2 and "--limit" in output
    code, output = run(database_url, "churn", "score", CHURN_MIN_CHURNED="zero")
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: CHURN_MIN_CHURNED: ")


def test_the_history_read_holds_overdue_invoices_settlements_and_usage_by_month(engine):
    """What ``customer_facts`` reads besides MRR and amendments: an invoice unpaid past its due date
    is overdue by the days since; one paid late is not overdue once paid; usage sums by month."""
    from datetime import date
    from decimal import Decimal as D

    from billing_engine.churn import baseline_score, measure
    from billing_engine.storage.churn import customer_facts
    from billing_engine.storage.invoices import Invoice
    from billing_engine.storage.payments import Payment, PaymentAllocation
    from billing_engine.storage.usage import UsageEventRow

    write_histories(engine, 6)
    with Session(engine) as s, s.begin():
        s.add(Invoice(id=901, customer_id="ch-001", currency="EUR", status="open", number="INV-T-1",
                      issued_on=date(2026, 9, 15), due_on=date(2026, 10, 15), total=D("300.00"), created_at=NOW))
        s.add(Invoice(id=902, customer_id="ch-002", currency="EUR", status="paid", number="INV-T-2",
                      issued_on=date(2026, 10, 1), due_on=date(2026, 11, 1), total=D("300.00"), created_at=NOW))
        s.flush()
        s.add(Payment(id=901, customer_id="ch-002", currency="EUR", amount=D("300.00"), received_on=date(2026, 11, 20),
                      method="transfer", source="bank", external_reference="T-901", created_at=NOW))
        s.flush()
        s.add(PaymentAllocation(payment_id=901, invoice_id=902, amount=D("300.00")))
        for n, (month, quantity) in enumerate([(6, 3000), (7, 3000), (8, 3000), (9, 600), (10, 600), (11, 600), (12, 50)]):
            s.add(UsageEventRow(event_id=9000 + n, occurred_on=date(2026, month, 3), subscription_id="sub-ch-004",
                                subscription_item_id="seats", quantity=D(quantity), occurred_at=NOW, recorded_at=NOW))
    with Session(engine) as s:
        facts = {f.customer_id: f for f in customer_facts(s, HISTORY_TODAY)}
    overdue = measure(facts["ch-001"], HISTORY_TODAY)
    assert overdue["overdue_days"] == (HISTORY_TODAY - date(2026, 10, 15)).days == 52
    assert measure(facts["ch-002"], HISTORY_TODAY)["overdue_days"] == 0
    assert measure(facts["ch-002"], date(2026, 11, 10))["overdue_days"] == 9  # before it was paid
    usage = measure(facts["ch-004"], HISTORY_TODAY)
    assert usage["usage_decline"] == pytest.approx((9000 - 1800) / 9000)  # Sep–Nov against Jun–Aug; December is not over
    assert "an invoice overdue by 52 days" in baseline_score(facts["ch-001"], HISTORY_TODAY).reasons_text()


def test_a_model_trained_as_of_a_day_learns_nothing_from_what_happened_after_it(engine, histories):
    """The same training day gives the same model whatever happens later: changes after the day
    (here, every remaining customer cancelling in July, within three months of the last month end
    known) are neither features nor labels."""
    from datetime import date

    from billing_engine.use_cases.subscriptions import cancel_subscription

    rules = ChurnRules(min_churned=3)
    day = date(2026, 6, 15)
    with transaction(engine) as s:
        first = train_churn_model(s, day, now=NOW, rules=rules)
    assert first.trained, first.message
    assert first.evaluation.trained_through == "2026-05"
    for n, cid in enumerate(histories):
        if not decliner(n) and not surprise_leaver(n):
            with transaction(engine) as s:
                cancel_subscription(s, f"sub-{cid}", date(2026, 7, 1), immediate=True, now=NOW)
    with transaction(engine) as s:
        second = train_churn_model(s, day, now=NOW, rules=rules)
        later = train_churn_model(s, HISTORY_TODAY, now=NOW, rules=rules)
    with Session(engine) as s:
        models = {m.id: m for m in s.scalars(select(ChurnModelRow))}
    a, b = models[first.evaluation.model_id], models[second.evaluation.model_id]
    assert (a.params_json, a.holdout_from, a.train_rows, a.holdout_rows) == (
        b.params_json, b.holdout_from, b.train_rows, b.holdout_rows)
    assert models[later.evaluation.model_id].params_json != a.params_json  # today's training sees them


# ---------------------------------------------------------------- the signals read the day's state

SCORED_ON = date(2026, 6, 30)


def _allowance_customer(engine):
    """A customer paying seats since 2025; a data plan including 1000 units a month ended in March
    2026, another including 5000 starts in 2027; its usage fell from 100 to 40 units a month in April 2026."""
    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import SubscriptionItem, make_subscription
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import cancel_subscription, start_subscription

    seat = make_price("pr-al-seat", make_product("p-al-seat", "ALSEAT", "Seats"), currency="EUR",
                      model="per_unit", unit_price="30")
    small = make_price("pr-al-small", make_product("p-al-small", "ALDATA1", "Data 1000"), currency="EUR",
                       model="allowance", charge_type="usage", unit_price="10", included_units="1000",
                       overage_unit_price="0.50")
    large = make_price("pr-al-large", make_product("p-al-large", "ALDATA5", "Data 5000"), currency="EUR",
                       model="allowance", charge_type="usage", unit_price="40", included_units="5000",
                       overage_unit_price="0.50")
    with transaction(engine) as s:
        for price in (seat, small, large):
            upsert_product(s, price.product)
            upsert_price(s, price)
        upsert_customer(s, Customer("al-1", "Allowance customer", "EUR"))
        start_subscription(s, make_subscription("sub-al-seats", "al-1", "EUR", date(2025, 1, 1),
                                                [SubscriptionItem("seats", seat, quantity=D(5))]), now=NOW)
        start_subscription(s, make_subscription("sub-al-old", "al-1", "EUR", date(2025, 1, 1),
                                                [SubscriptionItem("data", small, quantity=D(1))]), now=NOW)
        cancel_subscription(s, "sub-al-old", date(2026, 3, 1), immediate=True, now=NOW)
        start_subscription(s, make_subscription("sub-al-new", "al-1", "EUR", date(2027, 1, 1),
                                                [SubscriptionItem("data", large, quantity=D(1))]), now=NOW)
    with Session(engine) as s:
        for n, (month, quantity) in enumerate([(1, 100), (2, 100), (3, 100), (4, 40), (5, 40), (6, 40)]):
            day = date(2026, month, 15)
            s.add(UsageEventRow(event_id=9_000_000 + n, occurred_on=day, subscription_id="sub-al-seats",
                                subscription_item_id="seats", quantity=D(quantity),
                                occurred_at=datetime(day.year, day.month, day.day, tzinfo=UTC), recorded_at=NOW))
        s.commit()


def test_units_included_count_only_for_items_running_on_the_scoring_day(engine):
    _allowance_customer(engine)
    with Session(engine) as s:
        facts = next(f for f in customer_facts(s, SCORED_ON) if f.customer_id == "al-1")
    # 300 units in the three months before, 120 in the last three: down 60 % of its level, as no
    # plan includes units on the day (the old one ended, the new one has not started).
    assert measure(facts, SCORED_ON)["usage_decline"] == pytest.approx(0.6)
    assert allowance_on(facts, date(2026, 2, 28)) == D(1000)
    assert allowance_on(facts, SCORED_ON) == D(0)
    assert allowance_on(facts, date(2027, 1, 1)) == D(5000)
    assert all(isinstance(v, D) for v in facts.mrr.values()) and all(isinstance(v, D) for v in facts.usage.values())


def _invoice(s, number, due_on, status, changed_on):
    inv = Invoice(customer_id="al-1", currency="EUR", status=status, number=number, issued_on=due_on - timedelta(30),
                  due_on=due_on, subtotal=D(100), net=D(100), total=D(100),
                  created_at=NOW, finalized_at=datetime(2026, 1, 1, tzinfo=UTC),
                  status_changed_at=datetime(changed_on.year, changed_on.month, changed_on.day, tzinfo=UTC))
    s.add(inv)
    s.flush()
    return inv.id


def test_an_invoice_owed_on_the_day_counts_as_overdue_though_it_was_voided_or_credited_later(engine):
    _allowance_customer(engine)
    with Session(engine) as s:
        voided = _invoice(s, "CH-T-1", date(2026, 4, 1), "void", date(2026, 8, 1))
        credited = _invoice(s, "CH-T-2", date(2026, 5, 1), "paid", date(2026, 7, 20))
        for iid, number, on in ((voided, "CN-CH-T-1", date(2026, 8, 1)), (credited, "CN-CH-T-2", date(2026, 7, 20))):
            s.add(CreditNote(number=number, customer_id="al-1", invoice_id=iid, currency="EUR", reason="test",
                             issued_on=on, net=D(100), total=D(100), applied_to_invoice=D(100), created_at=NOW))
        s.commit()
    with Session(engine) as s:
        on_the_day = next(f for f in customer_facts(s, SCORED_ON) if f.customer_id == "al-1")
        later = next(f for f in customer_facts(s, date(2026, 8, 15)) if f.customer_id == "al-1")
    # On 30 June the invoice due 1 April was still owed: 90 days overdue; voided 1 August, and the
    # one due 1 May credited 20 July, nothing is overdue on 15 August.
    assert measure(on_the_day, SCORED_ON)["overdue_days"] == 90.0
    assert measure(later, date(2026, 8, 15))["overdue_days"] == 0.0


def test_a_cancellation_and_a_request_to_sales_in_the_portal_raise_the_risk_and_say_why(engine, histories):
    from billing_engine.use_cases.audit import record_action

    steady = _paying(histories)[-1]
    with transaction(engine) as s:
        score_customers(s, HISTORY_TODAY, now=NOW)
    with Session(engine) as s:
        before = customer_churn_risk(s, steady)
    at = datetime.combine(HISTORY_TODAY - timedelta(days=20), datetime.min.time(), tzinfo=UTC)
    with transaction(engine) as s:
        record_action(s, at=at, actor=f"portal:{steady}", action="portal.cancelled", target_type="subscription",
                      target_id="sub-any", after={"reason": "too_expensive"})
        for _ in range(2):  # the same form sent twice: one request
            record_action(s, at=at, actor=f"portal:{steady}", action="portal.sales_requested",
                          target_type="customer", target_id=steady,
                          after={"message_id": "k" * 32, "message": "Can we talk about the price?"})
        # After the scoring day: not known on it.
        record_action(s, at=at + timedelta(days=40), actor=f"portal:{steady}", action="portal.sales_requested",
                      target_type="customer", target_id=steady, after={"message": "later"})
        score_customers(s, HISTORY_TODAY, now=NOW)
    with Session(engine) as s:
        after = customer_churn_risk(s, steady)
    assert after.score >= before.score + 25  # 20 points for the cancellation, 5 for the request
    words = "; ".join(after.reasons_text())
    assert "1 subscription cancelled online in six months" in words
    assert "1 request to sales from the portal in six months" in words
    assert "1 abonnement résilié en ligne en six mois" in "; ".join(after.reasons_text("fr"))


def test_a_switch_of_plan_is_not_a_removed_item_but_a_removal_alone_is(engine, histories):
    from billing_engine.catalog import make_price, make_product
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.subscriptions import amend_subscription

    switcher, remover = _paying(histories)[-1], _paying(histories)[-2]
    team = make_price("pr-churn-team", make_product("p-churn-team", "TEAM", "Team"), currency="EUR",
                      model="per_unit", unit_price="45")
    extra = make_price("pr-churn-extra", make_product("p-churn-extra", "EXTRA", "Extra"), currency="EUR",
                       model="flat", unit_price="10")
    on = HISTORY_TODAY - timedelta(days=30)
    with transaction(engine) as s:
        for price in (team, extra):
            upsert_product(s, price.product)
            upsert_price(s, price)
        # The switcher moves from seats to the Team plan; the remover drops an add-on it had.
        amend_subscription(s, f"sub-{switcher}", Amendment("", 0, AmendmentAction.REMOVE_ITEM, on, item_id="seats"),
                           now=NOW)
        amend_subscription(s, f"sub-{switcher}", Amendment("", 0, AmendmentAction.ADD_ITEM, on, item=SubscriptionItem(
            "team", team, quantity=D(10))), now=NOW)
        amend_subscription(s, f"sub-{remover}", Amendment("", 0, AmendmentAction.ADD_ITEM, on - timedelta(days=60),
                                                          item=SubscriptionItem("extra", extra, quantity=D(1))), now=NOW)
        amend_subscription(s, f"sub-{remover}", Amendment("", 0, AmendmentAction.REMOVE_ITEM, on, item_id="extra"),
                           now=NOW)
    with Session(engine) as s:
        facts = {f.customer_id: f for f in customer_facts(s, HISTORY_TODAY)}
    assert measure(facts[switcher], HISTORY_TODAY)["contraction"] == 0
    assert measure(facts[remover], HISTORY_TODAY)["contraction"] == 1
