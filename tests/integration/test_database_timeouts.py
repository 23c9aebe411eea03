"""A locked or slow database makes a web request answer 503 quickly, never hang.

The web process's engine bounds every lock wait (PostgreSQL ``lock_timeout``, SQLite's
busy timeout) and every statement (PostgreSQL ``statement_timeout``); the app turns the
resulting errors into a JSON 503 (the webhooks into their own 503), and readiness fails
faster still. The worker, clock and CLI keep unbounded statements for their bill runs.
The locks below are released after 8 s at the latest: code that waits for them instead of
giving up answers late, with a 200, and fails these tests rather than hanging them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from connector import create_app
from connector.database import transaction
from connector.webhooks.inbox import WebhookInbox
from connector.webhooks.routes import EXTENSION
from connector.webhooks.verification import sign_cdc
from connector.wiring import build_services
from tests.support.locks import locked
from tests.support.webhook_messages import (
    CDC_URL,
    NOW,
    OM_URL,
    ORG_18,
    SECRET,
    SOAP,
    cdc_body,
    change_event,
    opportunity_message,
)

RELEASE_AFTER = 8.0


@pytest.fixture
def web_settings(settings):
    return settings.replace(sf_org_id=ORG_18, cdc_hmac_secret=SECRET, db_lock_timeout_seconds=1,
                            db_statement_timeout_seconds=1)


def make_app(settings):
    app = create_app(settings)
    app.extensions[EXTENSION].clock = lambda: datetime.fromtimestamp(NOW, UTC)

    @app.get("/test/inbox-count")
    def inbox_count():  # what a JSON API route reading the database does
        with transaction(app.extensions["billsync"].engine) as session:
            return {"count": session.execute(select(func.count()).select_from(WebhookInbox)).scalar_one()}

    @app.get("/test/slow")
    def slow():
        with transaction(app.extensions["billsync"].engine) as session:
            session.execute(text("SELECT pg_sleep(3)"))
        return {"slept": True}

    return app


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_route_that_finds_the_database_locked_answers_a_json_503_within_the_lock_timeout(web_settings, database_url):
    client = make_app(web_settings).test_client()
    with locked(database_url, ["webhook_inbox"], release_after=RELEASE_AFTER):
        response, elapsed = timed(lambda: client.get("/test/inbox-count", headers={"X-Request-Id": "locked-1"}))
    assert response.status_code == 503, response.text
    assert response.json == {"error": "database_unavailable", "message": "the database did not answer in time; "
                             "retry later", "request_id": "locked-1"}
    assert response.headers["Retry-After"] == "5"
    assert elapsed < 3
    assert client.get("/test/inbox-count").json == {"count": 0}


def test_webhooks_that_cannot_store_for_a_lock_answer_503_within_the_lock_timeout(web_settings, database_url):
    client = make_app(web_settings).test_client()
    body = cdc_body([change_event()])
    signed = {"Content-Type": "application/json", "X-Billsync-Signature": sign_cdc(SECRET, body, NOW)}
    with locked(database_url, ["webhook_inbox"], release_after=RELEASE_AFTER):
        message, om_elapsed = timed(lambda: client.post(OM_URL, data=opportunity_message(1),
                                                        headers={"Content-Type": SOAP}))
        events, cdc_elapsed = timed(lambda: client.post(CDC_URL, data=body, headers=signed))
    assert message.status_code == 503 and "soapenv:Server" in message.text
    assert events.status_code == 503 and events.json["error"] == "unavailable"
    assert om_elapsed < 3 and cdc_elapsed < 3
    assert client.post(OM_URL, data=opportunity_message(1), headers={"Content-Type": SOAP}).status_code == 200
    assert client.post(CDC_URL, data=body, headers=signed).status_code == 200


def test_readiness_fails_fast_on_postgresql_and_never_waits_for_the_sqlite_write_lock(web_settings, database_url):
    client = make_app(web_settings.replace(db_lock_timeout_seconds=5)).test_client()
    with locked(database_url, ["alembic_version"], release_after=RELEASE_AFTER):
        response, elapsed = timed(lambda: client.get("/readyz"))
    if web_settings.is_sqlite:  # a reader: WAL lets it read while another process writes
        assert response.status_code == 200, response.json
        assert elapsed < 1
    else:  # its own lock timeout (1 s), shorter than the requests' (5 s here)
        assert response.status_code == 503 and response.json["reason"] == "database unreachable"
        assert elapsed < 2.5
    assert client.get("/readyz").status_code == 200


@pytest.mark.postgres_only
def test_a_slow_statement_of_a_web_request_is_cancelled_and_answered_503(web_settings):
    client = make_app(web_settings).test_client()
    response, elapsed = timed(lambda: client.get("/test/slow"))
    assert response.status_code == 503 and response.json["error"] == "database_unavailable"
    assert elapsed < 2.5


@pytest.mark.postgres_only
def test_only_the_web_process_bounds_statements_and_lock_waits(settings):
    def bounds(engine):
        with engine.connect() as connection:
            return (connection.execute(text("SHOW statement_timeout")).scalar_one(),
                    connection.execute(text("SHOW lock_timeout")).scalar_one())

    web = create_app(settings).extensions["billsync"].engine
    jobs = build_services(settings).engine  # the worker's, the clock's and the CLI's
    try:
        assert bounds(web) == ("5s", "3s")
        assert bounds(jobs) == ("0", "0")
    finally:
        web.dispose()
        jobs.dispose()
