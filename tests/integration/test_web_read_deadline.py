"""The web worker's read deadline ends a blocked read; a webhook whose body stops short gets 408."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from connector import create_app
from connector.gunicorn_worker import ReadDeadlines
from tests.support.webhook_messages import OM_URL, ORG_18, SOAP, opportunity_message


def test_a_read_blocked_past_its_deadline_returns_at_once_and_a_disarmed_one_is_left_alone():
    deadlines = ReadDeadlines(0.5)
    server, client = socket.socketpair()
    spared_server, spared_client = socket.socketpair()
    got: list[bytes] = []
    with server, client, spared_server, spared_client:
        deadlines.arm(server.fileno())
        deadlines.arm(spared_server.fileno())
        deadlines.disarm(spared_server.fileno())
        stop = threading.Event()
        watchdog = threading.Thread(target=deadlines.watch, args=(stop,), daemon=True)
        watchdog.start()
        started = time.monotonic()
        reader = threading.Thread(target=lambda: got.append(server.recv(10)))
        reader.start()
        reader.join(5)
        stop.set()
        assert got == [b""] and time.monotonic() - started < 1.5
        spared_client.sendall(b"ok")
        assert spared_server.recv(10) == b"ok"  # still open both ways


@pytest.mark.parametrize("terminated", [True, False])  # gunicorn's input, or werkzeug's length-limited one
def test_a_webhook_body_that_stops_short_is_408_not_malformed(settings, terminated):
    client = create_app(settings.replace(sf_org_id=ORG_18)).test_client()
    body = opportunity_message(1)
    response = client.post(OM_URL, headers={"Content-Type": SOAP}, environ_overrides={
        "wsgi.input": io.BytesIO(body[:200]), "CONTENT_LENGTH": str(len(body)), "wsgi.input_terminated": terminated})
    assert response.status_code == 408, response.text
    assert "soapenv:Client" in response.text and "stopped after 200 bytes" in response.text
