"""Under gunicorn, a database locked for longer than any timeout leaves no request hanging.

Another connection holds ``ACCESS EXCLUSIVE`` locks on the webhook inbox and on the
table readiness reads (``alembic_version``) for 40 s: far longer than every bound
this proves (3 s lock timeout, 5 s statement timeout, 1 s readiness lock timeout,
10 s to answer). Every request answers within 10 s, 503 where it needs
the database, and 200 again once the lock is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from connector.webhooks.verification import sign_cdc
from tests.support.gunicorn import gunicorn
from tests.support.locks import locked
from tests.support.webhook_messages import ORG_15, SECRET, SOAP, cdc_body, change_event, opportunity_message

pytestmark = pytest.mark.postgres_only

TOKEN = "e2e-token"
LOCK_SECONDS = 40
ANSWER_WITHIN = 10


@pytest.fixture
def server(database_url, tmp_path) -> Iterator[str]:
    env = {"DATABASE_URL": database_url, "SF_ORG_ID": ORG_15, "WEBHOOK_TOKEN": TOKEN,
           "CDC_HMAC_SECRET": SECRET, "LOG_LEVEL": "warning"}
    with gunicorn(env, tmp_path / "gunicorn.log", ["--workers", "1"]) as base:
        yield base


def send_all(base: str, sequence: int) -> dict[str, tuple[int, float, str]]:
    """Every kind of web request at once: name -> (status, seconds, body)."""
    body = cdc_body([change_event(sequence=sequence)])
    calls = {
        "healthz": lambda: requests.get(f"{base}/healthz", timeout=30),
        "readyz": lambda: requests.get(f"{base}/readyz", timeout=30),
        "outbound message": lambda: requests.post(
            f"{base}/webhooks/salesforce/outbound-message/{TOKEN}", timeout=30,
            data=opportunity_message(1, start=sequence), headers={"Content-Type": SOAP}),
        "cdc event": lambda: requests.post(
            f"{base}/webhooks/salesforce/cdc", data=body, timeout=30,
            headers={"Content-Type": "application/json",
                     "X-Billsync-Signature": sign_cdc(SECRET, body, int(time.time()))}),
    }

    def timed(call):
        started = time.monotonic()
        response = call()
        return response.status_code, time.monotonic() - started, response.text

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(timed, call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_request_answers_within_10_s_while_the_database_is_locked(server, database_url):
    with locked(database_url, ["webhook_inbox", "alembic_version"], release_after=LOCK_SECONDS):
        started = time.monotonic()
        answers = send_all(server, 1)
        assert time.monotonic() - started < LOCK_SECONDS, "the lock was gone before every request answered"
    slow = {name: round(seconds, 1) for name, (_, seconds, _) in answers.items() if seconds >= ANSWER_WITHIN}
    assert slow == {}
    assert {name: status for name, (status, _, _) in answers.items()} == {
        "healthz": 200, "readyz": 503, "outbound message": 503, "cdc event": 503}
    assert "soapenv:Server" in answers["outbound message"][2]

    after = send_all(server, 2)
    assert {name: status for name, (status, _, _) in after.items()} == {
        "healthz": 200, "readyz": 200, "outbound message": 200, "cdc event": 200}
