"""Finance's and admins' operations pages in a browser, with the sandbox standing in for the org:
an admin retries a dead letter, reconciles a month someone edited in Salesforce, repairs it, and
once the push has run the month agrees; the review queue, a bill run followed on its page, and the
mappings page. Each page is saved to ``test-artifacts/console/``."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from billing_engine.storage.outbox import OutboxRow
from connector import create_app
from connector.console.users import create_user
from connector.database import transaction
from connector.sync.installation import keys_of
from connector.sync.push import push_outbox
from connector.sync.tables import ReviewFlag
from connector.worker import drains_for, run_worker
from tests.e2e.console.conftest import PASSWORD, Console, _tab, screenshot, sign_in
from tests.support.api import live_server
from tests.support.push import bill_customers, create_accounts


@pytest.fixture
def tab(browser, connected_console):
    """A browser page on the console connected to the sandbox (not the ``console`` fixture's app)."""
    yield from _tab(browser, "en-US")


@pytest.fixture
def connected_console(services, connected_settings):
    """Two customers billed for November 2026 and pushed to the sandbox, one of their pushes given
    up as a dead letter, one won deal waiting for review, and an admin."""
    accounts = create_accounts(services.salesforce(), 2)
    bill_customers(services.engine, accounts, lines=2)
    push_outbox(services, worker_id="w1")
    with transaction(services.engine) as session:
        row = session.exec(select(OutboxRow).where(OutboxRow.topic == "invoice.finalized")
                           .order_by(OutboxRow.id)).first()
        row.status, row.attempts, row.last_error = "dead", 8, "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access"
        session.add(row)
        session.add(ReviewFlag(object_name="Opportunity", record_id="006000000000001AAA", kind="changed",
                               reason="LIC quantity 10 -> 15", engine_id="sub-x",
                               created_at=datetime.now(UTC) - timedelta(hours=3),
                               summary="Edited after Closed Won (LIC quantity 10 → 15).",
                               target_object="Opportunity", target_id="006000000000001AAA"))
    app = create_app(connected_settings)
    create_user(services.engine, "admin@example.com", role="admin", password=PASSWORD, now=datetime.now(UTC),
                name="Ada Admin")
    with live_server(app) as url:
        yield Console(url, app)


def test_an_admin_retries_a_dead_letter_and_repairs_a_month_edited_in_salesforce(tab, connected_console,
                                                                                 services):
    page, console = tab, connected_console
    sign_in(page, console, "admin@example.com")
    page.click("nav.sections >> text=Sync")
    assert page.inner_text("#outbox-dead") == "1"
    assert "UNABLE_TO_LOCK_ROW" in page.inner_text("#dead-letters")
    screenshot(page, "sync")
    page.click("#dead-letters button:has-text('Retry')")
    assert "1 dead letters are back in the queue" in page.inner_text(".notice.success")
    assert page.inner_text("#outbox-dead") == "0"
    push_outbox(services, worker_id="w1")  # the worker's next pass sends it

    # Someone edits an invoice's balance in Salesforce.
    invoice_key = keys_of(services.engine).invoice(1)
    services.salesforce().upsert("Invoice__c", "Billsync_Invoice_Id__c", invoice_key, {"Balance__c": Decimal("1")})
    page.fill("#period", "2026-11")
    page.click("#reconcile-form button[type=submit]")
    assert "1 differences" in page.inner_text(".notice.error")
    assert page.inner_text("#run-verdict") == "Differs"
    mismatches = page.inner_text("#mismatches")
    assert "invoice INV-2026-000001" in mismatches and "Balance__c" in mismatches
    screenshot(page, "sync-reconcile-differs")

    page.click("#repair-run")
    assert "1 records are back in the outbox" in page.inner_text(".notice.success")
    assert "invoice INV-2026-000001" in page.inner_text("#repair-result")
    push_outbox(services, worker_id="w1")  # the push writes the invoice again

    page.fill("#period", "2026-11")
    page.click("#reconcile-form button[type=submit]")
    assert "2026-11: billsync and Salesforce agree." in page.inner_text(".notice.success")
    assert page.inner_text("#run-verdict") == "Agrees"
    runs = page.inner_text("#runs")
    assert runs.count("console:admin@example.com") == 3 and "1 differences" in runs
    screenshot(page, "sync-reconcile-agrees")
    [balance] = services.salesforce().query_all(
        f"SELECT Balance__c FROM Invoice__c WHERE Billsync_Invoice_Id__c = '{invoice_key}'")
    assert Decimal(str(balance["Balance__c"])) != Decimal("1")


def test_the_review_queue_a_bill_run_followed_on_its_page_and_the_mappings(tab, connected_console, services, org):
    page, console = tab, connected_console
    sign_in(page, console, "admin@example.com")
    page.click("nav.sections >> text=Review")
    flag = page.locator("article.flag").first
    assert "Edited after Closed Won (LIC quantity 10 → 15)." in flag.inner_text()
    screenshot(page, "review")
    flag.locator("select").select_option("keep")
    flag.locator("textarea").fill("The customer asked for 15 seats from next month.")
    flag.locator("button:has-text('Resolve')").click()
    assert re.search(r"Review \d+ is resolved", page.inner_text(".notice.success"))
    assert "No review flag is open." in page.inner_text("main")

    page.click("nav.sections >> text=Jobs")
    page.fill("#as_of", "2026-12-01")
    page.click("#start-bill-run")
    assert "Waiting for the worker" in page.inner_text("main")
    screenshot(page, "job-queued")
    worker = threading.Thread(target=lambda: run_worker(
        drains_for(services, worker_id="w-e2e", batch_size=100, lease=timedelta(minutes=5))[:1], once=True,
        poll_seconds=0.1, stop=threading.Event()))
    worker.start()
    worker.join(timeout=120)
    page.wait_for_selector("#job-result", timeout=20000)  # the page follows the job and shows its result
    result = page.inner_text("#job-result")
    # November's charges were billed already: December finds the two customers with nothing due.
    assert re.search(r"Customers billed\s+0", result, re.I) and re.search(r"Invoices created\s+0", result, re.I)
    assert page.inner_text("#job-progress") == "Customers: 2 / 2"
    screenshot(page, "job-done")
    page.click("nav.sections >> text=Jobs")
    screenshot(page, "jobs")

    page.click("nav.sections >> text=Mappings")
    page.click("#check")
    assert "match the org" in page.inner_text("#check-result")
    screenshot(page, "mappings")

    org.seed("small", 0)
    [won] = services.salesforce().query_all("SELECT Id FROM Opportunity WHERE IsWon = true ORDER BY CloseDate LIMIT 1")
    page.fill("#record_id", won["Id"])
    page.click("form[role=search] button[type=submit]")
    assert page.inner_text("#engine-command") == "start_subscription"
    assert "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100" in page.inner_text("#preview-lines")
    assert page.inner_text("#mrr-change") == "€2,645.00"
    screenshot(page, "mappings-preview")


def test_finance_finalizes_a_held_draft_from_the_review_queue(page, console, settings):
    """The March bill run run with HOLD_INVOICES_FOR_REVIEW leaves two drafts for finance."""
    from connector.billing_jobs import run_bill_run
    from connector.settings import load_settings
    from connector.wiring import build_services

    held = build_services(load_settings({"DATABASE_URL": settings.database_url, "LOG_LEVEL": "warning",
                                         "HOLD_INVOICES_FOR_REVIEW": "true"}))
    try:
        run_bill_run(held, date(2026, 3, 1))
    finally:
        held.engine.dispose()
    sign_in(page, console, "fin@example.com")
    page.click("nav.sections >> text=Review")
    assert page.inner_text("#held-count") == "2"
    rows = page.locator("#held tbody tr")
    assert "Customer cus-b" in rows.nth(0).inner_text() and "Held for review by the bill run." in rows.nth(0).inner_text()
    screenshot(page, "review-held")
    rows.nth(0).locator("button:has-text('Finalize')").click()
    assert "is finalized" in page.inner_text(".notice.success")
    page.click("nav.sections >> text=Review")
    assert page.inner_text("#held-count") == "1"
    row = page.locator("#held tbody tr").first
    row.locator("input[name=reason]").fill("Deal lost before the invoice went out")
    row.locator("button:has-text('Void')").click()
    assert "The invoice is void." in page.inner_text(".notice.success")
    page.click("nav.sections >> text=Review")
    assert "No draft is waiting for review." in page.inner_text("main")
