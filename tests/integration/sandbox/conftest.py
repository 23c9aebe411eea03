"""One sandbox org per test session (HTTPS on a free loopback port, in memory); its
data, faults and notification settings are reset before every test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from simple_salesforce import Salesforce

from sfsandbox.notify import Backoff
from sfsandbox.server import SandboxServer

API = "59.0"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[SandboxServer]:
    server = SandboxServer(state_dir=tmp_path_factory.mktemp("sandbox-state"),
                           backoff=Backoff(initial=0.05, maximum=0.4, timeout=5))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_org(sandbox: SandboxServer) -> Iterator[None]:
    sandbox.reset()
    yield
    sandbox.reset()


def trusting_session(sandbox: SandboxServer) -> requests.Session:
    """trust_env off: REQUESTS_CA_BUNDLE (set on this machine) must not override verify."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    return session


def client(sandbox: SandboxServer, token: str | None = None, version: str = API) -> Salesforce:
    token = token or sandbox.issue_token()["access_token"]
    return Salesforce(instance_url=sandbox.url, session_id=token, session=trusting_session(sandbox),
                      version=version, parse_float=Decimal)


@pytest.fixture
def sf(sandbox: SandboxServer) -> Salesforce:
    return client(sandbox)


class Listener:
    """A plain-HTTP listener on loopback that records POSTs and answers from a script."""

    def __init__(self, answers: list[tuple[int, str]] | None = None, default: tuple[int, str] | None = None):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers = list(answers or [])
        self.default = default or (200, ACK)
        self.event = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, text = listener.answers.pop(0) if listener.answers else listener.default
                listener.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())
                listener.event.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ACK = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
       'envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
       '<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>')
NACK = ACK.replace("<Ack>true</Ack>", "<Ack>false</Ack>")


@pytest.fixture
def make_sf(sandbox: SandboxServer):
    """Build a simple-salesforce client: make_sf(token=None, version=API)."""
    return lambda token=None, version=API: client(sandbox, token, version)


@pytest.fixture
def https(sandbox: SandboxServer) -> requests.Session:
    return trusting_session(sandbox)


@pytest.fixture
def make_listener() -> Iterator:
    made: list[Listener] = []

    def make(answers: list[tuple[int, str]] | None = None, default: tuple[int, str] | None = None) -> Listener:
        made.append(Listener(answers, default))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def acks() -> tuple[str, str]:
    return ACK, NACK
