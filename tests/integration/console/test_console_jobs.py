"""Jobs started from the console: queued, run by the worker with their progress, shown with their
result; one of a kind at a time; who may start what."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from connector import jobs
from connector.console.users import create_user
from connector.wiring import build_services
from connector.worker import drains_for, run_worker
from tests.integration.console.conftest import PASSWORD, csrf_token, sign_in


def text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def run_the_worker(settings) -> int:
    services = build_services(settings)
    try:
        drains = drains_for(services, worker_id="w-test", batch_size=100, lease=timedelta(minutes=5))
        return run_worker(drains, once=True, poll_seconds=0.1, stop=threading.Event())
    finally:
        services.engine.dispose()


def start_bill_run(client, as_of: str = "2026-03-01"):
    return client.post("/jobs/bill-run", data={"csrf_token": csrf_token(client, "/jobs/"), "as_of": as_of})


def test_a_bill_run_is_queued_run_by_the_worker_and_its_page_shows_the_result(app, settings, finance):
    started = start_bill_run(finance)
    assert started.status_code == 303
    job_url = started.headers["Location"]
    waiting = text(finance.get(job_url))
    assert "Queued" in waiting and "Waiting for the worker" in waiting
    assert "jobs.js" in waiting and "data-job-status-url" in waiting
    status_url = job_url + "/status.json"
    assert finance.get(status_url).json == {"id": int(job_url.rsplit("/", 1)[1]), "status": "queued",
                                            "active": True, "done": None, "total": None, "percent": None}

    assert run_the_worker(settings) == 1
    status = finance.get(status_url).json
    assert (status["status"], status["active"], status["done"], status["total"], status["percent"]) == (
        "done", False, 3, 3, 100)
    page = text(finance.get(job_url))
    assert "Done" in page and "jobs.js" not in page  # a finished job's page no longer polls
    assert re.search(r'Customers: <span data-job-field="done">3</span> / <span data-job-field="total">3</span>', page)
    # March: sub-a's new quantity and sub-b's last half month, both finalized.
    assert re.search(r"Invoices created</dt><dd>2<", page) and re.search(r"Finalized</dt><dd>2<", page)
    listed = text(finance.get("/jobs/"))
    assert "Bill run · 2026-03-01" in listed and "console:fin@example.com" in listed
    invoices = text(finance.get("/invoices/?status=open"))
    assert "INV-2026-000003" in invoices and "INV-2026-000004" in invoices


def test_two_starts_make_one_job_and_the_second_opens_it(app, finance):
    first = start_bill_run(finance)
    second = start_bill_run(finance, "2026-04-01")
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    assert "already under way" in text(finance.get(second.headers["Location"]))
    with app.app_context():
        from sqlmodel import Session

        with Session(app.extensions["billsync"].engine) as session:
            assert [(j.kind, j.params, j.status) for j in jobs.recent_jobs(session)] == [
                ("bill_run", {"as_of": "2026-03-01"}, "queued")]


def test_the_kind_is_free_again_once_the_job_ended(app):
    engine = app.extensions["billsync"].engine
    now = datetime.now(UTC)
    first = jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-01"}, requested_by="console:a", now=now)
    with pytest.raises(jobs.JobBusyError) as busy:
        jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-02"}, requested_by="console:b", now=now)
    assert busy.value.job_id == first.id
    pull = jobs.enqueue(engine, "pull", {"full": "true"}, requested_by="console:a", now=now)  # another kind
    claimed = jobs.claim_job(engine, worker_id="w1", now=now)
    assert claimed is not None and (claimed.id, claimed.status) == (first.id, "running")
    assert jobs.claim_job(engine, worker_id="w2", now=now).id == pull.id
    assert jobs.claim_job(engine, worker_id="w3", now=now) is None  # both are held
    with pytest.raises(jobs.JobBusyError):  # running still counts
        jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-02"}, requested_by="console:b", now=now)
    jobs.finish_job(engine, first.id, now=now, error="RuntimeError: boom")
    again = jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-02"}, requested_by="console:b", now=now)
    assert again.id != first.id and again.status == "queued"


def test_a_job_whose_worker_died_is_claimed_again(app):
    engine = app.extensions["billsync"].engine
    now = datetime.now(UTC)
    job = jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-01"}, requested_by="console:a", now=now)
    assert jobs.claim_job(engine, worker_id="w1", now=now).id == job.id
    assert jobs.claim_job(engine, worker_id="w2", now=now + timedelta(minutes=5)) is None
    assert jobs.claim_job(engine, worker_id="w2", now=now + jobs.JOB_LEASE + timedelta(seconds=1)).id == job.id
    # The first worker, slow but not dead, can no longer settle the job the second one runs.
    late = now + jobs.JOB_LEASE + timedelta(seconds=2)
    jobs.finish_job(engine, job.id, now=late, result={"invoices_created": 1}, worker_id="w1")
    jobs.beat(engine, job.id, now=late, worker_id="w1")
    with Session(engine) as session:
        taken = jobs.find_job(session, job.id)
    assert (taken.status, taken.worker_id, taken.result) == ("running", "w2", None)
    with pytest.raises(jobs.JobBusyError):  # its kind is still taken
        jobs.enqueue(engine, "bill_run", {"as_of": "2026-03-01"}, requested_by="console:b", now=late)


def test_a_failed_job_shows_its_error(app, settings, finance, monkeypatch):
    def broken(services, job, progress):
        raise RuntimeError("the engine is on fire")

    monkeypatch.setitem(jobs.RUNNERS, "bill_run", broken)
    url = start_bill_run(finance).headers["Location"]
    run_the_worker(settings)
    page = text(finance.get(url))
    assert "Failed" in page and "RuntimeError: an unexpected error" in page
    assert "on fire" not in page  # an exception's own text stays in the worker's log
    assert start_bill_run(finance).headers["Location"] != url  # a new run may start


@pytest.mark.parametrize(("as_of", "message"), [
    ("", "Give the date to bill up to"), ("tomorrow", "Give the date to bill up to"),
    ("2099-01-01", "pass --allow-future"),
])
def test_a_bad_bill_run_date_is_a_message_and_queues_nothing(app, finance, as_of, message):
    response = start_bill_run(finance, as_of)
    assert response.status_code == 422 and message in text(response)
    assert "No job has been started" in text(response)


def test_a_viewer_sees_jobs_without_buttons_and_cannot_start_one(viewer):
    page = text(viewer.get("/jobs/"))
    assert "Start the bill run" not in page and "Start a full pull" not in page
    token = csrf_token(viewer, "/jobs/")
    assert viewer.post("/jobs/bill-run", data={"csrf_token": token, "as_of": "2026-03-01"}).status_code == 403
    assert viewer.post("/jobs/pull", data={"csrf_token": token}).status_code == 403


def test_only_admins_start_a_pull_and_it_needs_salesforce(app, client, finance):
    page = text(finance.get("/jobs/"))
    assert "Start the bill run" in page and "Full pull" not in page
    assert finance.post("/jobs/pull", data={"csrf_token": csrf_token(finance, "/jobs/")}).status_code == 403
    finance.post("/sign-out", data={"csrf_token": csrf_token(finance, "/jobs/")})
    create_user(app.extensions["billsync"].engine, "boss@example.com", role="admin", password=PASSWORD,
                now=datetime.now(UTC))
    assert sign_in(client, "boss@example.com").status_code == 303
    assert "Salesforce is not connected." in text(client.get("/jobs/"))
    refused = client.post("/jobs/pull", data={"csrf_token": csrf_token(client, "/jobs/")})
    assert refused.status_code == 422 and "nothing to pull" in text(refused)


def test_an_unknown_job_is_a_404(finance):
    assert finance.get("/jobs/999").status_code == 404
    assert finance.get("/jobs/999/status.json").status_code == 404


def test_a_long_job_keeps_its_lease_while_its_worker_lives(app, settings, monkeypatch):
    engine = app.extensions["billsync"].engine
    now = datetime.now(UTC)
    job = jobs.enqueue(engine, "pull", {"full": "true"}, requested_by="console:a", now=now)
    claimed = jobs.claim_job(engine, worker_id="w1", now=now - jobs.JOB_LEASE)  # claimed a lease ago
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    seen: list[object] = []

    def slow_pull(services, running, progress):
        threading.Event().wait(0.5)  # long enough for a few heartbeats
        seen.append(jobs.claim_job(engine, worker_id="w2", now=datetime.now(UTC)))  # still held by w1
        return {"objects": [], "failed_records": 0, "paused": None}

    monkeypatch.setitem(jobs.RUNNERS, "pull", slow_pull)
    services = build_services(settings)
    try:
        settled = jobs.run_job(services, claimed)
    finally:
        services.engine.dispose()
    assert seen == [None] and settled.id == job.id and settled.status == "done"
