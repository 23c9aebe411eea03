"""The review queue and the sync page through the test client: what each role sees, the actions,
and bad input shown on the page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from billing_engine.storage.outbox import OutboxRow
from connector.billing_jobs import run_bill_run
from connector.console.users import create_user
from connector.database import transaction
from connector.settings import load_settings
from connector.sync.tables import ReviewFlag
from connector.wiring import build_services
from tests.integration.console.conftest import PASSWORD, csrf_token, sign_in

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)


def text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def audit(engine, action: str) -> list[tuple[str, str]]:
    from billing_engine.use_cases.audit import list_actions

    with Session(engine) as session:
        return [(e.actor, e.target_id) for e in list_actions(session, action=action, limit=50)]


@pytest.fixture
def settings(database_url):
    """billsync holding every invoice of a bill run for review (web and worker share the settings)."""
    return load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", "HOLD_INVOICES_FOR_REVIEW": "true"})


@pytest.fixture
def admin(app, client):
    create_user(app.extensions["billsync"].engine, "boss@example.com", role="admin", password=PASSWORD,
                now=datetime.now(UTC))
    assert sign_in(client, "boss@example.com").status_code == 303
    return client


@pytest.fixture
def flags(app):
    engine = app.extensions["billsync"].engine
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
        session.flush()
        return changed.id, refused.id


@pytest.fixture
def held(app, settings):
    """The March bill run with HOLD_INVOICES_FOR_REVIEW: two drafts wait for finance."""
    services = build_services(settings)
    try:
        run_bill_run(services, date(2026, 3, 1))
    finally:
        services.engine.dispose()
    from billing_engine.use_cases import invoices

    with Session(app.extensions["billsync"].engine) as session:
        page = invoices.list_invoices(session, as_of=date(2026, 3, 1),
                                      filters=invoices.InvoiceFilters(statuses=("draft",)))
    return {i.customer_id: i.invoice_id for i in page.items}


def dead_rows(engine, count: int) -> list[int]:
    with transaction(engine) as session:
        rows = [OutboxRow(topic="invoice.finalized", aggregate_type="invoice", aggregate_id=str(900 + n), payload="{}",
                          created_at=AT, status="dead", attempts=8, last_error=f"invoice {900 + n} not found")
                for n in range(count)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def outbox_statuses(engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(OutboxRow.status).where(OutboxRow.aggregate_id.like("90%"))).all())


# ---------------------------------------------------------------- review queue


def test_the_review_queue_lists_held_drafts_with_their_reason_and_open_flags(finance, held, flags):
    page = text(finance.get("/review/"))
    assert f"Draft #{held['cus-a']}" in page and f"Draft #{held['cus-b']}" in page
    assert page.count("Every invoice is held for review (HOLD_INVOICES_FOR_REVIEW).") == 2
    assert "Edited after Closed Won (LIC quantity 10 → 15)." in page and "billsync cannot bill this account" in page
    assert 'id="flag-count">2<' in page
    assert 'action="/review/flags/' in page and f'action="/invoices/{held["cus-a"]}/finalize"' in page


def test_a_draft_the_anomaly_guard_held_shows_its_findings_in_the_queue(app, finance, held):
    from billing_engine.storage.anomalies import InvoiceAnomaly

    with transaction(app.extensions["billsync"].engine) as session:
        session.add(InvoiceAnomaly(invoice_id=held["cus-a"], kind="quantity", score=Decimal("9.5"), created_at=AT,
                                   reason="LIC quantity 120 is 10 times the usual 12 of this customer."))
    page = text(finance.get("/review/"))
    assert "Held by the anomaly guard: LIC quantity 120 is 10 times the usual 12 of this customer." in page
    assert page.count("Every invoice is held for review (HOLD_INVOICES_FOR_REVIEW).") == 1  # the other draft


def test_a_held_draft_is_finalized_from_the_queue_and_leaves_it(finance, held):
    token = csrf_token(finance, "/review/")
    done = finance.post(f"/invoices/{held['cus-a']}/finalize", data={"csrf_token": token})
    assert done.status_code == 303
    page = text(finance.get("/review/"))
    assert f"Draft #{held['cus-a']}" not in page and f"Draft #{held['cus-b']}" in page


def test_a_flag_is_resolved_with_keep_and_audited_with_the_user(app, finance, flags):
    changed, refused = flags
    token = csrf_token(finance, "/review/")
    done = finance.post(f"/review/flags/{refused}/resolve",
                        data={"csrf_token": token, f"r{refused}-action": "keep", f"r{refused}-note": "billed by hand"})
    assert done.status_code == 303
    page = text(finance.get("/review/"))
    assert f"Review {refused} is resolved" in page and "billsync cannot bill this account" not in page
    assert "Edited after Closed Won" in page
    assert audit(app.extensions["billsync"].engine, "review.resolve") == [("console:fin@example.com", str(refused))]


def test_a_cancellation_from_a_date_ends_the_subscription(app, finance, flags):
    from billing_engine.use_cases import subscriptions

    changed, _ = flags
    token = csrf_token(finance, "/review/")
    done = finance.post(f"/review/flags/{changed}/resolve", data={
        "csrf_token": token, f"r{changed}-action": "cancel", f"r{changed}-on": "2026-12-01",
        f"r{changed}-note": "customer left"})
    assert done.status_code == 303, text(done)
    with Session(app.extensions["billsync"].engine) as session:
        sub = subscriptions.get_subscription(session, "sub-a")
    assert sub.ends_before == date(2026, 12, 1)
    assert "cancelled sub-a from 2026-12-01" in text(finance.get("/review/"))


@pytest.mark.parametrize(("fields", "message"), [
    ({"action": "keep", "note": ""}, "Note: This field is required."),
    ({"action": "cancel", "note": "gone"}, "A cancellation needs the first day not billed."),
    ({"action": "keep", "on": "2026-12-01", "note": "ok"}, "Only a cancellation takes a date."),
    ({"action": "cancel", "on": "01/12/2026", "note": "gone"}, "First day not billed (cancel only): Not a valid date"),
    ({"action": "destroy", "note": "x"}, "Decision: Not a valid choice"),
    ({"action": "reapply", "note": "read it again"}, "Salesforce is not configured"),
])
def test_a_bad_resolution_is_a_message_and_the_flag_stays_open(finance, flags, fields, message):
    changed, _ = flags
    token = csrf_token(finance, "/review/")
    response = finance.post(f"/review/flags/{changed}/resolve",
                            data={"csrf_token": token, **{f"r{changed}-{k}": v for k, v in fields.items()}})
    assert response.status_code == 422
    page = text(response)
    assert message in page and 'role="alert"' in page
    assert 'id="flag-count">2<' in page


def test_resolving_a_closed_or_unknown_flag_is_a_message(finance, flags):
    changed, _ = flags
    token = csrf_token(finance, "/review/")
    data = {"csrf_token": token, f"r{changed}-action": "keep", f"r{changed}-note": "fine"}
    assert finance.post(f"/review/flags/{changed}/resolve", data=data).status_code == 303
    again = finance.post(f"/review/flags/{changed}/resolve", data=data)
    assert again.status_code == 422 and "already resolved" in text(again)
    missing = finance.post("/review/flags/9999/resolve", data={"csrf_token": token, "r9999-action": "keep",
                                                               "r9999-note": "x"})
    assert missing.status_code == 404 and "There is no open review 9999." in text(missing)


def test_a_viewer_sees_the_queue_without_buttons_and_cannot_post(viewer, held, flags):
    changed, _ = flags
    page = text(viewer.get("/review/"))
    assert f"Draft #{held['cus-a']}" in page and "Edited after Closed Won" in page
    assert "Resolve" not in page and "Finalize" not in page and 'action="/review/flags' not in page
    token = csrf_token(viewer, "/review/")
    assert viewer.post(f"/review/flags/{changed}/resolve", data={
        "csrf_token": token, f"r{changed}-action": "keep", f"r{changed}-note": "x"}).status_code == 403
    assert viewer.post(f"/invoices/{held['cus-a']}/finalize", data={"csrf_token": token}).status_code == 403


def test_an_empty_queue_says_so(finance):
    page = text(finance.get("/review/"))
    assert "No draft is waiting for review." in page and "No review flag is open." in page


# ---------------------------------------------------------------- sync page


def test_the_sync_page_shows_counts_dead_letters_and_their_errors(app, finance):
    dead_rows(app.extensions["billsync"].engine, 2)
    page = text(finance.get("/sync/"))
    assert 'id="outbox-dead">2<' in page and "invoice 900 not found" in page and "invoice 901 not found" in page
    assert "not connected" in page and "Nothing has been pulled yet." in page
    assert "Retry all" in page and "Run the reconciliation" not in page  # finance does not reconcile


def test_one_dead_letter_then_all_are_retried_and_audited(app, finance):
    engine = app.extensions["billsync"].engine
    ids = dead_rows(engine, 3)
    token = csrf_token(finance, "/sync/")
    one = finance.post("/sync/dead-letters/retry", data={"csrf_token": token, "queue": "outbox", "row_id": ids[0]})
    assert one.status_code == 303
    assert "1 dead letters are back in the queue" in text(finance.get("/sync/"))
    assert outbox_statuses(engine) == ["dead", "dead", "pending"]
    assert finance.post("/sync/dead-letters/retry", data={"csrf_token": token}).status_code == 303
    assert outbox_statuses(engine) == ["pending", "pending", "pending"]
    assert "No dead letter" in text(finance.get("/sync/"))
    assert audit(engine, "sync.retry") == [("console:fin@example.com", "all"), ("console:fin@example.com", "rows")]


@pytest.mark.parametrize("data", [{"queue": "outbox"}, {"queue": "elsewhere", "row_id": "1"},
                                  {"queue": "outbox", "row_id": "-3"}, {"row_id": "1"}])
def test_a_bad_retry_is_a_message_and_requeues_nothing(app, finance, data):
    engine = app.extensions["billsync"].engine
    dead_rows(engine, 1)
    response = finance.post("/sync/dead-letters/retry", data={"csrf_token": csrf_token(finance, "/sync/"), **data})
    assert response.status_code == 422 and "cannot be retried" in text(response)
    assert outbox_statuses(engine) == ["dead"]


def test_a_viewer_sees_the_sync_without_buttons_and_cannot_post(app, viewer):
    engine = app.extensions["billsync"].engine
    dead_rows(engine, 1)
    page = text(viewer.get("/sync/"))
    assert "invoice 900 not found" in page and "Retry" not in page and "Run the reconciliation" not in page
    token = csrf_token(viewer, "/sync/")
    assert viewer.post("/sync/dead-letters/retry", data={"csrf_token": token}).status_code == 403
    assert viewer.post("/sync/reconciliations", data={"csrf_token": token, "period": "2026-11"}).status_code == 403
    assert outbox_statuses(engine) == ["dead"]


def test_only_admins_reconcile(finance):
    token = csrf_token(finance, "/sync/")
    assert finance.post("/sync/reconciliations", data={"csrf_token": token, "period": "2026-11"}).status_code == 403


@pytest.mark.parametrize(("period", "message"), [
    ("2026-13", "Write the month as YYYY-MM"), ("", "This field is required."),
    ("2026-11", "Salesforce is not configured"),
])
def test_a_reconciliation_without_salesforce_or_a_month_is_a_message(admin, period, message):
    page = text(admin.get("/sync/"))
    assert "Run the reconciliation" in page
    response = admin.post("/sync/reconciliations", data={"csrf_token": csrf_token(admin, "/sync/"),
                                                         "period": period})
    assert response.status_code == 422 and message in text(response)


def test_an_unknown_reconciliation_is_a_404_page(finance):
    assert finance.get("/sync/reconciliations/999").status_code == 404
