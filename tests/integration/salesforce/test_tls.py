"""Real TLS on loopback: SF_CA_BUNDLE is honoured even when REQUESTS_CA_BUNDLE is set, and timeouts bite.

A tiny HTTPS server with a certificate from a private CA (trustme) stands in for
Salesforce; it answers the token endpoint and ``limits/`` only.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import trustme

from connector.salesforce.client import build_client
from connector.salesforce.errors import SalesforceRequestError, SalesforceRetryableError
from connector.settings import load_settings

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class Handler(BaseHTTPRequestHandler):
    delay = 0.0

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        host, port = self.server.server_address[:2]
        self._send(200, {"access_token": "T", "instance_url": f"https://{host}:{port}"})

    def do_GET(self) -> None:
        if "/sobjects/Slow/" in self.path:
            time.sleep(2)
        self._send(200, {"DailyApiRequests": {"Max": 15000, "Remaining": 14990}},
                   {"Sforce-Limit-Info": "api-usage=10/15000"})


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # refused handshakes are expected here
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = QuietServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_path
    server.shutdown()
    server.server_close()


def settings_for(url: str, **extra: str):
    return load_settings({"SF_AUTH": "client_credentials", "SF_LOGIN_URL": url, "SF_CLIENT_ID": "c",
                          "SF_CLIENT_SECRET": "s", "SF_RETRY_ATTEMPTS": "1", **extra})


def test_sf_ca_bundle_wins_over_requests_ca_bundle(tls_server, monkeypatch):
    url, ca_path = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    # The trap this guards against: a plain session's verify= loses to the environment (requests#3829).
    with pytest.raises(requests.exceptions.SSLError):
        plain = requests.Session()
        plain.verify = str(ca_path)
        plain.get(url + "/services/data/v59.0/limits/", timeout=5)

    client = build_client(settings_for(url, SF_CA_BUNDLE=str(ca_path)))

    assert client.limits()["DailyApiRequests"]["Max"] == 15000
    assert (client.api_usage.used, client.api_usage.max) == (10, 15000)
    assert client.instance_url == url


def test_an_untrusted_certificate_fails_once_with_the_fix_and_is_not_retried(tls_server, monkeypatch):
    url, _ = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    client = build_client(settings_for(url, SF_RETRY_ATTEMPTS="5"))

    with pytest.raises(SalesforceRequestError, match="set SF_CA_BUNDLE") as err:
        client.limits()

    assert err.value.code == "TLS_ERROR"
    assert client.calls_made == 1


def test_a_slow_answer_hits_the_read_timeout(tls_server):
    url, ca_path = tls_server
    client = build_client(settings_for(url, SF_CA_BUNDLE=str(ca_path), SF_TIMEOUT_SECONDS="1"))
    client.limits()  # connect and log in
    started = time.monotonic()
    with pytest.raises(SalesforceRetryableError) as err:
        client.describe("Slow")
    assert err.value.code == "TIMEOUT"
    assert time.monotonic() - started < 1.9
