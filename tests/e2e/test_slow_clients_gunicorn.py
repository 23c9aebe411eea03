"""Slow senders cannot starve the web process under gunicorn with the shipped configuration.

One worker with two threads (the fewest, so that two slow clients would hold every
thread of a plain gthread worker) serves while slow clients trickle for 40 s: one its
headers, one a declared body, one a chunked body, one connects and sends nothing, each
reconnecting when cut off. Meanwhile ``/healthz`` is probed every 0.5 s and must answer
within 1 s each time; the slow clients are cut off at every read deadline (5 s here)
and come back.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.gunicorn import gunicorn
from tests.support.webhook_messages import ORG_15, SOAP, opportunity_message

TOKEN = "e2e-token"
READ_TIMEOUT = 5
SLOW_FOR = 40.0
PROBE_EVERY = 0.5
PROBE_WITHIN = 1.0


@pytest.fixture
def server(database_url, tmp_path) -> Iterator[str]:
    env = {"DATABASE_URL": database_url, "SF_ORG_ID": ORG_15, "WEBHOOK_TOKEN": TOKEN, "LOG_LEVEL": "warning",
           "WEB_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT)}
    with gunicorn(env, tmp_path / "gunicorn.log", ["--workers", "1", "--threads", "2"]) as base:
        yield base


def _headers_trickle(sock: socket.socket, stop: float) -> None:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: billsync\r\n")
    n = 0
    while time.monotonic() < stop:
        sock.sendall(b"X-Slow-%d: 1\r\n" % n)
        n += 1
        time.sleep(0.3)


def _body_trickle(sock: socket.socket, stop: float) -> None:
    sock.sendall(f"POST /webhooks/salesforce/outbound-message/{TOKEN} HTTP/1.1\r\nHost: billsync\r\n"
                 "Content-Type: text/xml\r\nContent-Length: 100000\r\n\r\n".encode())
    while time.monotonic() < stop:
        sock.sendall(b"<")
        time.sleep(0.3)


def _chunked_trickle(sock: socket.socket, stop: float) -> None:
    sock.sendall(b"POST /webhooks/salesforce/cdc HTTP/1.1\r\nHost: billsync\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    while time.monotonic() < stop:
        sock.sendall(b"1\r\n{\r\n")
        time.sleep(0.3)


def _silent(sock: socket.socket, stop: float) -> None:
    while time.monotonic() < stop:
        if sock.recv(1) == b"":
            raise ConnectionResetError("closed by the server")


SLOW_CLIENTS = {"headers": _headers_trickle, "body": _body_trickle, "chunked body": _chunked_trickle,
                "silent": _silent}


def slow_client(port: int, send, stop: float, cut_after: list[float]) -> None:
    """Trickle until ``stop``, on loopback only, reconnecting whenever the server cuts us off."""
    while time.monotonic() < stop:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=SLOW_FOR) as sock:
            try:
                send(sock, stop)
            except OSError:
                cut_after.append(time.monotonic() - started)


def test_slow_clients_never_delay_the_health_probe(server):
    port = int(server.rsplit(":", 1)[1])
    stop = time.monotonic() + SLOW_FOR
    cut_after: dict[str, list[float]] = {name: [] for name in SLOW_CLIENTS}
    threads = [threading.Thread(target=slow_client, args=(port, send, stop, cut_after[name]), daemon=True)
               for name, send in SLOW_CLIENTS.items()]
    for thread in threads:
        thread.start()
    probes: list[float] = []
    with requests.Session() as http:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                status = http.get(f"{server}/healthz", timeout=5).status_code
            except requests.RequestException as exc:
                status = exc.__class__.__name__
            probes.append(round(time.monotonic() - started, 3))
            assert status == 200
            time.sleep(PROBE_EVERY)
    for thread in threads:
        thread.join(SLOW_FOR)
    assert len(probes) >= SLOW_FOR / (PROBE_EVERY + PROBE_WITHIN)
    assert max(probes) < PROBE_WITHIN, probes
    # Each slow sender was cut off at the read deadline, over and over (the silent one too).
    for name in SLOW_CLIENTS:
        assert cut_after[name], f"the {name} trickle was never cut off"
        assert max(cut_after[name]) < READ_TIMEOUT + 2, (name, cut_after[name])
    response = requests.post(f"{server}/webhooks/salesforce/outbound-message/{TOKEN}", data=opportunity_message(2),
                             headers={"Content-Type": SOAP}, timeout=10)
    assert response.status_code == 200


def test_a_request_sent_in_pieces_within_the_deadline_is_served(server):
    """Gathering a request in the event loop changes nothing for clients that are merely not instant."""
    port = int(server.rsplit(":", 1)[1])
    body = opportunity_message(1)
    head = (f"POST /webhooks/salesforce/outbound-message/{TOKEN} HTTP/1.1\r\nHost: billsync\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in (head[:20], head[20:], body[:100], body[100:]):
            sock.sendall(piece)
            time.sleep(0.2)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        # the same connection serves the next request (keep-alive)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: billsync\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
