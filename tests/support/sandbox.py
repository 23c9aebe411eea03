"""The one local Salesforce sandbox of a test run (a pytest plugin, loaded by tests/conftest.py).

One server for the whole session (HTTPS on a free loopback port, in memory). ``org`` hands
it to a test emptied, with no faults, no notification settings and a fresh API allocation;
suites that need more (the sandbox's own tests) reset it the same way around each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from simple_salesforce import Salesforce

from sfsandbox.server import SandboxServer

API = "59.0"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[SandboxServer]:
    """The run's sandbox org. Tests get it through ``org`` (or a suite fixture that resets it)."""
    server = SandboxServer(port=0, data="none", state_dir=tmp_path_factory.mktemp("sandbox")).start()
    yield server
    server.stop()


@pytest.fixture
def org(sandbox: SandboxServer) -> SandboxServer:
    """The sandbox, emptied, with no faults and a fresh API allocation for this test."""
    sandbox.reset()
    return sandbox


def sandbox_environment(server: SandboxServer, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a billsync process connected to ``server`` (as scripts/run sets it).

    BILLING_STARTS_ON is 2000-01-01, before every deal the tests create: they are billed from
    their start. A test of the cut-over sets its own (``BILLING_STARTS_ON=""`` unsets it)."""
    env = {key: str(value) for key, value in server.env().items()}
    env.update(DATABASE_URL=database_url, LOG_LEVEL="warning", SF_TIMEOUT_SECONDS="10",
               BILLING_STARTS_ON="2000-01-01")
    env.update(extra)
    return env


def trusting_session(sandbox: SandboxServer) -> requests.Session:
    """trust_env off: REQUESTS_CA_BUNDLE (set on this machine) must not override verify."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    return session


def client(sandbox: SandboxServer, token: str | None = None, version: str = API) -> Salesforce:
    """A simple-salesforce client of the sandbox, with a token issued without an HTTP round trip."""
    token = token or sandbox.issue_token()["access_token"]
    return Salesforce(instance_url=sandbox.url, session_id=token, session=trusting_session(sandbox),
                      version=version, parse_float=Decimal)
