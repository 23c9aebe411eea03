"""/api/v1 operations: sync status, dead letters and their retry, review flags, reconciliations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.subscriptions import SubscriptionRow
from connector import create_app
from connector.database import transaction
from connector.sync.installation import keys_of
from connector.sync.push import push_outbox
from connector.sync.tables import ReviewFlag, SyncRecordError
from tests.support.api import bearer, new_key, seed_subscriptions
from tests.support.push import bill_customers, create_accounts

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _get(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


def dead_rows(engine, count: int) -> list[int]:
    """``count`` outbox rows given up after their attempts (a topic the push cannot deliver)."""
    with transaction(engine) as session:
        rows = [OutboxRow(topic="invoice.finalized", aggregate_type="invoice", aggregate_id=str(900 + n), payload="{}",
                          created_at=AT, status="dead", attempts=8, last_error=f"invoice {900 + n} not found")
                for n in range(count)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


# ---------------------------------------------------------------- without Salesforce


def test_the_sync_status_of_a_new_installation(client, read_key):
    status = _get(client, read_key, "/api/v1/sync/status")
    assert status["installation"] is None and status["last_push"] is None and status["last_pull_at"] is None
    assert status["salesforce"] == {"configured": False, "api_used": None, "api_max": None, "budget_share": None,
                                    "paused_until": None, "pause_reason": None}
    assert status["outbox"] == {"pending": 0, "failing": 0, "in_flight": 0, "done": 0, "dead": 0}
    assert status["inbox"] == {"pending": 0, "in_flight": 0, "failed": 0, "done": 0, "dead": 0}
    assert (status["cursors"], status["record_errors"], status["open_reviews"]) == ([], 0, 0)


def test_dead_letters_page_oldest_first_and_a_retry_requeues_them_once(app, client, read_key, write_key):
    engine = app.extensions["billsync"].engine
    ids = dead_rows(engine, 3)
    assert _get(client, read_key, "/api/v1/sync/status")["outbox"]["dead"] == 3
    first = _get(client, read_key, "/api/v1/sync/dead-letters?limit=2")
    assert [x["id"] for x in first["data"]] == ids[:2]
    assert first["data"][0] == {"id": ids[0], "queue": "outbox", "status": "dead", "event": "invoice.finalized",
                                "record": "invoice 900", "attempts": 8, "last_error": "invoice 900 not found",
                                "next_attempt_at": None, "created_at": "2026-11-20T09:00:00Z"}
    rest = _get(client, read_key, first["next"])
    assert [x["id"] for x in rest["data"]] == ids[2:] and rest["next"] is None
    assert _get(client, read_key, "/api/v1/sync/dead-letters?queue=inbox")["data"] == []

    assert client.post("/api/v1/sync/dead-letters/retry", json={"outbox_ids": [ids[0]]},
                       headers=bearer(read_key)).status_code == 403
    headers = {**bearer(write_key), "Idempotency-Key": "retry-1"}
    retried = client.post("/api/v1/sync/dead-letters/retry", json={"outbox_ids": [ids[0]]}, headers=headers)
    assert retried.status_code == 200 and retried.json == {"outbox_requeued": 1, "inbox_requeued": 0}
    replayed = client.post("/api/v1/sync/dead-letters/retry", json={"outbox_ids": [ids[0]]}, headers=headers)
    assert replayed.json == retried.json and replayed.headers["Idempotent-Replayed"] == "true"
    again = client.post("/api/v1/sync/dead-letters/retry", json={"outbox_ids": [ids[0]]}, headers=bearer(write_key))
    assert again.json == {"outbox_requeued": 0, "inbox_requeued": 0}  # already back in the queue
    assert [x["id"] for x in _get(client, read_key, "/api/v1/sync/dead-letters")["data"]] == ids[1:]
    # The requeued row is pending again, its last error kept until it is delivered.
    assert _get(client, read_key, "/api/v1/sync/status")["outbox"] == {"pending": 1, "failing": 1, "in_flight": 0,
                                                                       "done": 0, "dead": 2}
    everything = client.post("/api/v1/sync/dead-letters/retry", json={}, headers=bearer(write_key))
    assert everything.json == {"outbox_requeued": 2, "inbox_requeued": 0}  # the dead ones: the other is due already
    audit = _get(client, read_key, "/api/v1/audit-log?action=sync.retry")["data"]
    assert [(e["target_id"], e["after"]["outbox_requeued"]) for e in audit] == [("all", 2), ("rows", 0), ("rows", 1)]


@pytest.mark.parametrize(("body", "pointer"), [
    ({"outbox_ids": [0]}, "/outbox_ids/0"), ({"inbox_ids": [1, 2**31]}, "/inbox_ids/1"),
    ({"outbox_ids": "all"}, "/outbox_ids"), ({"everything": True}, "/everything"),
])
def test_a_bad_retry_is_a_422_naming_the_field_and_requeues_nothing(app, client, write_key, body, pointer):
    dead_rows(app.extensions["billsync"].engine, 1)
    response = client.post("/api/v1/sync/dead-letters/retry", json=body, headers=bearer(write_key))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert [e["pointer"] for e in response.json["errors"]] == [pointer]
    with Session(app.extensions["billsync"].engine) as session:
        assert session.exec(select(OutboxRow.status)).all() == ["dead"]


@pytest.fixture
def flagged(app):
    """Two open reviews: a won deal edited after Closed Won (its subscription sub-a) and an Account
    billsync refuses to apply (with its record error)."""
    engine = app.extensions["billsync"].engine
    seed_subscriptions(engine)
    with transaction(engine) as session:
        changed = ReviewFlag(object_name="Opportunity", record_id="006000000000001AAA", kind="changed",
                             reason="LIC quantity 10 -> 15", engine_id="sub-a", created_at=AT,
                             summary="Edited after Closed Won (LIC quantity 10 → 15).",
                             target_object="Opportunity", target_id="006000000000001AAA")
        refused = ReviewFlag(object_name="Account", record_id="001000000000001AAA", kind="refused",
                             reason="billing_address.country: 'Atlantis' is not a country",
                             created_at=AT + timedelta(minutes=1), summary="billsync cannot bill this account",
                             target_object="Account", target_id="001000000000001AAA")
        session.add_all([changed, refused])
        session.add(SyncRecordError(object_name="Account", record_id="001000000000001AAA",
                                    reason="billing_address.country: 'Atlantis' is not a country",
                                    first_failed_at=AT, last_failed_at=AT))
        session.flush()
        return engine, changed.id, refused.id


def test_review_flags_are_listed_and_settled_with_keep_or_cancel(flagged, client, read_key, write_key):
    engine, changed, refused = flagged
    listed = _get(client, read_key, "/api/v1/review-flags?limit=1")
    assert [f["id"] for f in listed["data"]] == [changed]
    assert listed["data"][0] | {"since": None} == {
        "id": changed, "object": "Opportunity", "record_id": "006000000000001AAA", "kind": "changed",
        "reason": "Edited after Closed Won (LIC quantity 10 → 15).", "detail": "LIC quantity 10 -> 15",
        "engine_id": "sub-a", "since": None, "shown_on": "Opportunity 006000000000001AAA",
        "in_salesforce": "not shown"}
    assert [f["id"] for f in _get(client, read_key, listed["next"])["data"]] == [refused]
    assert _get(client, read_key, "/api/v1/sync/status")["open_reviews"] == 2

    kept = client.post(f"/api/v1/review-flags/{refused}/resolve", json={"action": "keep", "note": "not billed yet"},
                       headers=bearer(write_key))
    assert kept.status_code == 200, kept.json
    assert kept.json == {"id": refused, "action": "keep",
                         "message": f"review {refused}: kept as billed; Account 001000000000001AAA is no longer "
                                    "flagged"}
    cancelled = client.post(f"/api/v1/review-flags/{changed}/resolve",
                            json={"action": "cancel", "on": "2026-06-01", "note": "deal lost"},
                            headers=bearer(write_key))
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["message"] == f"review {changed}: cancelled sub-a from 2026-06-01"
    with Session(engine) as session:
        assert session.get(SubscriptionRow, "sub-a").ends_before == date(2026, 6, 1)
        assert session.exec(select(SyncRecordError)).all() == []  # keep stops retrying the refused Account
        assert [f.resolution for f in session.exec(select(ReviewFlag).order_by(ReviewFlag.id)).all()] == [
            "cancel", "keep"]
    assert _get(client, read_key, "/api/v1/review-flags")["data"] == []
    [entry, _] = _get(client, read_key, "/api/v1/audit-log?action=review.resolve")["data"]
    assert (entry["target_id"], entry["before"]["kind"], entry["after"]) == (
        str(changed), "changed", {"open": False, "action": "cancel", "on": "2026-06-01", "note": "deal lost"})

    again = client.post(f"/api/v1/review-flags/{changed}/resolve", json={"action": "keep", "note": "x"},
                        headers=bearer(write_key))
    assert again.status_code == 409 and "already resolved (cancel on" in again.json["detail"]


@pytest.mark.parametrize(("body", "status", "pointer"), [
    ({"action": "cancel", "note": "lost"}, 422, "/on"),
    ({"action": "keep", "on": "2026-06-01", "note": "billed"}, 422, "/on"),
    ({"action": "keep", "note": "  "}, 422, "/note"),
    ({"action": "drop", "note": "fixed"}, 422, "/action"),
    ({"action": "keep"}, 422, "/note"),
])
def test_a_bad_resolution_is_refused_and_the_review_stays_open(flagged, client, write_key, body, status, pointer):
    engine, changed, _ = flagged
    response = client.post(f"/api/v1/review-flags/{changed}/resolve", json=body, headers=bearer(write_key))
    assert response.status_code == status and [e["pointer"] for e in response.json["errors"]] == [pointer]
    with Session(engine) as session:
        assert session.get(ReviewFlag, changed).resolved_at is None


def test_resolving_an_unknown_review_is_a_404_and_a_refused_cancel_a_409(flagged, client, write_key):
    engine, _, refused = flagged
    missing = client.post("/api/v1/review-flags/99999/resolve", json={"action": "keep", "note": "x"},
                          headers=bearer(write_key))
    assert missing.status_code == 404 and missing.json["detail"].startswith("review 99999: no such review")
    cannot = client.post(f"/api/v1/review-flags/{refused}/resolve",
                         json={"action": "cancel", "on": "2026-06-01", "note": "x"}, headers=bearer(write_key))
    assert cannot.status_code == 409 and "cannot cancel" in cannot.json["detail"]
    with Session(engine) as session:
        assert session.get(ReviewFlag, refused).resolved_at is None


def test_re_applying_a_deal_needs_salesforce_and_leaves_the_review_open(flagged, client, write_key):
    engine, changed, _ = flagged
    response = client.post(f"/api/v1/review-flags/{changed}/resolve", json={"action": "reapply", "note": "15 seats"},
                           headers=bearer(write_key))
    assert response.status_code == 409 and "not configured" in response.json["detail"]
    with Session(engine) as session:
        assert session.get(ReviewFlag, changed).resolved_at is None


def test_a_reconciliation_needs_salesforce(client, write_key):
    response = client.post("/api/v1/reconciliations", json={"period": "2026-11"}, headers=bearer(write_key))
    assert response.status_code == 409 and "not configured" in response.json["detail"]
    bad = client.post("/api/v1/reconciliations", json={"period": "2026-13"}, headers=bearer(write_key))
    assert bad.status_code == 422 and bad.json["errors"][0]["pointer"] == "/period"


# ---------------------------------------------------------------- against the sandbox


@pytest.fixture
def connected(services, connected_settings):
    """The web app connected to the sandbox, with two customers billed for November 2026 and pushed today
    (as of today, like the reconciliation: an invoice past its due date is overdue on both sides)."""
    accounts = create_accounts(services.salesforce(), 2)
    bill_customers(services.engine, accounts, lines=2)
    push_outbox(services, worker_id="w1")
    app = create_app(connected_settings)
    return services, app, app.test_client(), new_key(app, "finance", "write")


def test_the_sync_status_shows_the_installation_and_the_last_push(connected):
    services, app, client, key = connected
    status = _get(client, key, "/api/v1/sync/status")
    installation = keys_of(services.engine).installation_id
    assert status["installation"]["id"] == installation and status["installation"]["org_id"].startswith("00D")
    assert status["outbox"]["done"] == 4 and status["outbox"]["pending"] == 0
    pushed_at = datetime.fromisoformat(status["last_push"]["at"])
    assert timedelta(0) <= datetime.now(UTC) - pushed_at < timedelta(minutes=5)
    assert status["last_push"]["summary"].startswith("pushed 4 outbox rows in 1 batches: 4 done")
    assert status["salesforce"]["configured"] is True and status["salesforce"]["budget_share"] == "0.5"
    refreshed = _get(client, key, "/api/v1/sync/status?refresh=true")["salesforce"]
    assert refreshed["api_max"] > refreshed["api_used"] > 0


def test_a_reconciliation_is_run_kept_and_read_again(connected):
    services, app, client, key = connected
    ran = client.post("/api/v1/reconciliations", json={"period": "2026-11"}, headers=bearer(key))
    assert ran.status_code == 201, ran.json
    result = ran.json
    assert (result["agrees"], result["billsync_records"], result["salesforce_records"]) == (True, 4, 4)
    assert ran.headers["Location"] == f"/api/v1/reconciliations/{result['id']}"
    assert result["requested_by"] == "api-key:finance" and result["mismatches"] == [] and result["repair"] is None
    invoices = [t for t in result["totals"] if t["object"] == "invoice"]
    assert len(invoices) == 1 and invoices[0]["billsync_sum"] == invoices[0]["salesforce_sum"]
    assert (invoices[0]["currency"], invoices[0]["billsync_count"], invoices[0]["agrees"]) == ("EUR", 2, True)
    assert _get(client, key, ran.headers["Location"]) == result

    # Someone edits an invoice in Salesforce: the next run names it; with repair it is re-queued.
    invoice_key = keys_of(services.engine).invoice(1)
    services.salesforce().upsert("Invoice__c", "Billsync_Invoice_Id__c", invoice_key, {"Balance__c": Decimal("1")})
    drifted = client.post("/api/v1/reconciliations", json={"period": "2026-11", "repair": True},
                          headers=bearer(key)).json
    assert drifted["agrees"] is False
    [mismatch] = drifted["mismatches"]
    assert {k: mismatch[k] for k in ("object", "external_id", "kind", "field", "salesforce_value")} == {
        "object": "invoice", "external_id": invoice_key, "kind": "amount", "field": "Balance__c",
        "salesforce_value": "1"}
    assert mismatch["description"].startswith(f"invoice INV-2026-000001 (billsync id {invoice_key}): amount differs")
    assert drifted["repair"] == {"requeued": ["invoice INV-2026-000001"], "not_repairable": []}
    push_outbox(services, worker_id="w1")
    fixed = client.post("/api/v1/reconciliations", json={"period": "2026-11"}, headers=bearer(key)).json
    assert fixed["agrees"] is True

    listed = _get(client, key, "/api/v1/reconciliations?period=2026-11&limit=2")
    assert [(r["id"], r["agrees"], r["mismatches"]) for r in listed["data"]] == [
        (fixed["id"], True, 0), (drifted["id"], False, 1)]
    assert [r["id"] for r in _get(client, key, listed["next"])["data"]] == [result["id"]]
    assert _get(client, key, "/api/v1/reconciliations?period=2026-10")["data"] == []
    missing = client.get("/api/v1/reconciliations/999", headers=bearer(key))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_a_reconciliation_before_the_first_push_names_what_the_push_will_write(services, connected_settings):
    accounts = create_accounts(services.salesforce(), 1)
    bill_customers(services.engine, accounts, lines=1)
    app = create_app(connected_settings)
    client, key = app.test_client(), new_key(app, "finance", "write")
    ran = client.post("/api/v1/reconciliations", json={"period": "2026-11"},
                      headers={**bearer(key), "Idempotency-Key": "first-reconcile"})
    assert ran.status_code == 201, ran.json
    keys = keys_of(services.engine)  # the installation the reconciliation created, which the push then uses
    assert [(m["object"], m["external_id"], m["kind"]) for m in ran.json["mismatches"]] == [
        ("invoice", keys.invoice(1), "missing_in_salesforce"), ("account", "c000000", "missing_in_salesforce")]
    push_outbox(services, worker_id="w1")
    assert client.post("/api/v1/reconciliations", json={"period": "2026-11"},
                       headers=bearer(key)).json["agrees"] is True


def test_a_deal_edited_after_closed_won_is_re_applied_through_the_api(services, connected_settings, org):
    from billing_engine.use_cases.subscriptions import get_subscription
    from connector.sync.apply import subscription_id_for
    from connector.sync.pull import pull_changes
    from connector.sync.review import open_reviews
    from tests.integration.sync.test_pull import salesforce, won_opportunities
    from tests.integration.sync.test_review import lic_line

    org.seed("small", 0)
    pull_changes(services)
    push_outbox(services)
    sf = salesforce(org)
    edited = won_opportunities(sf)[0]
    line = lic_line(sf, edited["Id"])
    sf.QuoteLineItem.update(line["Id"], {"Quantity": line["Quantity"] + 3})  # a rep edits the won deal
    pull_changes(services)
    with Session(services.engine) as session:
        [review] = [r for r in open_reviews(session) if r.record_id == edited["Id"]]
    app = create_app(connected_settings)
    client = app.test_client()
    key = new_key(app, "finance", "write")
    response = client.post(f"/api/v1/review-flags/{review.id}/resolve",
                           json={"action": "reapply", "note": "the rep was right"}, headers=bearer(key))
    assert response.status_code == 200, response.json
    assert response.json["action"] == "reapply" and response.json["id"] == review.id
    with Session(services.engine) as session:
        subscription = get_subscription(session, subscription_id_for(edited["Id"]))
        assert open_reviews(session) == []
    lic = next(i for i in subscription.version_on(subscription.starts_on).items.values()
               if i.price.product.code == "LIC")
    assert lic.quantity == Decimal(line["Quantity"] + 3)
    [entry] = _get(client, key, "/api/v1/audit-log?action=review.resolve")["data"]
    assert entry["after"] == {"open": False, "action": "reapply", "on": None, "note": "the rep was right"}
    again = client.post(f"/api/v1/review-flags/{review.id}/resolve", json={"action": "reapply", "note": "x"},
                        headers=bearer(key))
    assert again.status_code == 409 and "already resolved" in again.json["detail"]
