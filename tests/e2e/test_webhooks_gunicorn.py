"""The webhook endpoints under gunicorn, configured from the environment, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import func, select
from sqlmodel import Session

from connector.webhooks.inbox import WebhookInbox
from connector.webhooks.outbound_message import ACK
from connector.webhooks.verification import sign_cdc
from tests.support.gunicorn import gunicorn
from tests.support.webhook_messages import ORG_15, SECRET, cdc_body, change_event, opportunity_message

TOKEN = "e2e-token"


@pytest.fixture
def server(database_url, tmp_path) -> Iterator[str]:
    env = {"DATABASE_URL": database_url, "SF_ORG_ID": ORG_15, "WEBHOOK_TOKEN": TOKEN,
           "CDC_HMAC_SECRET": SECRET, "LOG_LEVEL": "warning"}
    with gunicorn(env, tmp_path / "gunicorn.log", ["--workers", "1", "--threads", "2"]) as base:
        yield base


def stored(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(WebhookInbox)).scalar_one()


def test_outbound_messages_and_cdc_events_are_stored_once_and_acknowledged(server, engine):
    url = f"{server}/webhooks/salesforce/outbound-message/{TOKEN}"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    with requests.Session() as http:
        for _ in range(2):  # at least once: the same message twice
            response = http.post(url, data=opportunity_message(10), headers=headers, timeout=10)
            assert response.status_code == 200 and response.text == ACK
        body = cdc_body([change_event(sequence=1), change_event(sequence=2)])
        signed = {"Content-Type": "application/json",
                  "X-Billsync-Signature": sign_cdc(SECRET, body, int(time.time()))}
        response = http.post(f"{server}/webhooks/salesforce/cdc", data=body, headers=signed, timeout=10)
        assert response.status_code == 200 and response.json() == {"stored": 2, "duplicates": 0}
    assert stored(engine) == 12


def test_oversized_bodies_are_413_whether_declared_or_streamed(server, engine):
    url = f"{server}/webhooks/salesforce/outbound-message/{TOKEN}"
    big = opportunity_message(1).replace(b"Closed Won", b"x" * 10_000_000)
    headers = {"Content-Type": "text/xml"}
    declared = requests.post(url, data=big, headers=headers, timeout=30)
    assert declared.status_code == 413 and "soapenv:Client" in declared.text

    def chunks():  # chunked transfer encoding: no Content-Length to refuse up front
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    streamed = requests.post(url, data=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413 and "exceeds the 1048576-byte limit" in streamed.text
    assert stored(engine) == 0
