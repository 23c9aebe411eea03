"""Fixtures for the Salesforce client unit tests: mocked HTTP (responses), a fake clock, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses

from connector.salesforce.auth import AuthConfig, Authenticator
from connector.salesforce.client import SalesforceClient
from connector.salesforce.retry import retry_policy
from connector.salesforce.transport import SalesforceSession

LOGIN_URL = "https://acme.my.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
TOKEN_URL = f"{LOGIN_URL}/services/oauth2/token"
DATA = f"{INSTANCE}/services/data/v59.0"
ORG_ID = "00D5g000004XyzAEAS"


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """A client wired to mocked HTTP, a fake clock and a recording sleep."""

    LOGIN_URL = LOGIN_URL
    INSTANCE = INSTANCE
    TOKEN_URL = TOKEN_URL
    DATA = DATA
    ORG_ID = ORG_ID

    def __init__(self, mock: responses.RequestsMock, mode: str = "client_credentials", *,
                 share: str = "0.5", attempts: int = 5, **config: object):
        self.mock = mock
        self.clock = FakeClock()
        self.sleeps: list[float] = []
        self.session = SalesforceSession(timeout_seconds=30)
        self.config = AuthConfig(mode=mode, login_url=LOGIN_URL, client_id="cid", client_secret="csecret",
                                 **config)  # type: ignore[arg-type]
        self.client = SalesforceClient(
            Authenticator(self.config, self.session, clock=self.clock), self.session,
            policy=retry_policy(attempts, 30, sleep=self.sleeps.append, jitter=lambda: 1.0),
            budget_share=Decimal(share), limit_pause=timedelta(seconds=900), clock=self.clock)

    def token(self, access_token: str = "TOKEN-1", status: int = 200, **extra: object) -> None:
        body = {"access_token": access_token, "instance_url": INSTANCE, "token_type": "Bearer",
                "id": f"{LOGIN_URL}/id/{ORG_ID}/0055g00000AbcdeAAA", **extra}
        self.mock.add(responses.POST, TOKEN_URL, json=body, status=status)

    def calls_to(self, fragment: str) -> list[responses.Call]:
        return [c for c in self.mock.calls if fragment in c.request.url]

    @staticmethod
    def sf_error(code: str, message: str = "boom", fields: list[str] | None = None) -> str:
        """A Salesforce error body: always a JSON array."""
        return json.dumps([{"errorCode": code, "message": message, "fields": fields or []}])

    @staticmethod
    def usage(used: int, total: int) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={used}/{total}"}


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def make_harness(mock: responses.RequestsMock):
    def make(mode: str = "client_credentials", **kw: object) -> Harness:
        return Harness(mock, mode, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def harness(make_harness) -> Harness:
    h = make_harness()
    h.token()
    return h
