"""Clients built from settings against the run's sandbox (tests/support/sandbox.py).

Every test starts from an empty org with no faults and a fresh API allocation. Fault
injection goes through the sandbox's admin API over HTTPS (``AdminClient``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from connector.salesforce.client import SalesforceClient, build_client
from connector.salesforce.retry import retry_policy
from connector.settings import load_settings
from sfsandbox.server import AdminClient


@pytest.fixture
def admin(sandbox) -> AdminClient:
    """The sandbox's admin API over HTTPS; every test starts from an empty org, no faults, no usage."""
    client = AdminClient(sandbox.url, sandbox.admin_token, sandbox.ca_path)
    client.reset()
    return client


def sandbox_env(sandbox: Any, mode: str = "client_credentials", **extra: str) -> dict[str, str]:
    creds = sandbox.credentials
    env = {"SF_AUTH": mode, "SF_LOGIN_URL": sandbox.url, "SF_CA_BUNDLE": str(sandbox.ca_path),
           "SF_TIMEOUT_SECONDS": "5"}
    if mode in ("client_credentials", "password"):
        env.update(SF_CLIENT_ID=creds.client_id, SF_CLIENT_SECRET=creds.client_secret)
    if mode == "password":
        env.update(SF_USERNAME=creds.username, SF_PASSWORD=creds.password, SF_SECURITY_TOKEN=creds.security_token)
    if mode == "jwt":
        env.update(SF_CLIENT_ID=creds.client_id, SF_USERNAME=creds.username,
                   SF_PRIVATE_KEY_FILE=str(sandbox.jwt_private_key_path))
    env.update(extra)
    return env


@pytest.fixture
def connect(sandbox, admin, monkeypatch) -> Callable[..., tuple[SalesforceClient, list[float]]]:
    """Build a client from settings; its retry policy records sleeps instead of sleeping
    and calls ``on_sleep`` (to lift a fault between attempts)."""
    # This machine (and CI) may set REQUESTS_CA_BUNDLE: the client must still trust the sandbox CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    def make(mode: str = "client_credentials", *, on_sleep: Callable[[float], None] | None = None,
             attempts: int = 5, clock: Callable[[], datetime] | None = None,
             **extra: str) -> tuple[SalesforceClient, list[float]]:
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if on_sleep:
                on_sleep(seconds)

        settings = load_settings(sandbox_env(sandbox, mode, **extra))
        policy = retry_policy(attempts, settings.sf_retry_max_seconds, sleep=sleep, jitter=lambda: 1.0)
        return build_client(settings, policy=policy, clock=clock), sleeps

    return make
