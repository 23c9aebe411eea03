"""The sandbox's own tests: the run's one sandbox (tests/support/sandbox.py), its data, faults
and notification settings reset before and after every test, and its notifications retried
quickly (the delays Salesforce uses would make these tests wait)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce

from sfsandbox.notify import Backoff
from sfsandbox.server import SandboxServer
from tests.support.notifications import ACK, NACK, Listener
from tests.support.sandbox import API, client, trusting_session

FAST_BACKOFF = Backoff(initial=0.05, maximum=0.4, timeout=5)


@pytest.fixture(autouse=True)
def _fresh_org(sandbox: SandboxServer) -> Iterator[None]:
    kept = sandbox.outbound.backoff, sandbox.cdc.backoff
    sandbox.outbound.backoff = sandbox.cdc.backoff = FAST_BACKOFF
    sandbox.reset()
    yield
    sandbox.reset()
    sandbox.outbound.backoff, sandbox.cdc.backoff = kept


@pytest.fixture
def sf(sandbox: SandboxServer) -> Salesforce:
    return client(sandbox)


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
