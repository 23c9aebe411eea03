"""The Salesforce client against the local sandbox over HTTPS: logins, retries, limits and errors.

Faults are set in-process (``sandbox.configure_faults``); the org reset, token expiry
and stats go through the admin API over HTTPS.

REQUESTS_CA_BUNDLE is set to the system bundle in every test (see ``connect``):
the client must still trust the sandbox's own CA through SF_CA_BUNDLE.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connector.salesforce.errors import SalesforceAuthError, SalesforceLimitError
from connector.salesforce.soql import build_soql

HOSTILE = "O'Brien\\' OR Name != '"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------- auth modes


@pytest.mark.parametrize("mode", ["client_credentials", "jwt", "password"])
def test_each_oauth_mode_logs_in_and_reads_the_org(connect, admin, sandbox, mode):
    client, _ = connect(mode, SF_ORG_ID=sandbox.org_id)
    limits = client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100_000
    assert client.instance_url == sandbox.url
    assert client.api_usage.used == 1


def test_a_preissued_session_works_and_fails_clearly_once_expired(connect, admin, sandbox):
    token = sandbox.issue_token()["access_token"]
    client, _ = connect("session", SF_INSTANCE_URL=sandbox.url, SF_ACCESS_TOKEN=token)
    assert client.limits()["DailyApiRequests"]["Max"] == 100_000

    admin.expire_tokens()
    with pytest.raises(SalesforceAuthError, match="SF_ACCESS_TOKEN expired or revoked"):
        client.limits()
    assert client.calls_made == 2  # no login attempted, no retry


def test_wrong_credentials_are_reported_without_retrying(connect, admin):
    client, sleeps = connect(SF_CLIENT_SECRET="not-the-secret")
    with pytest.raises(SalesforceAuthError, match="refused the client_credentials login: invalid_client"):
        client.limits()
    assert (client.calls_made, sleeps) == (1, [])


def test_forced_token_expiry_reauthenticates_exactly_once(connect, admin):
    client, _ = connect()
    client.limits()
    assert client.calls_made == 2  # token + limits

    admin.expire_tokens()
    assert client.limits()["DailyApiRequests"]["Max"] == 100_000

    assert client.reauthentications == 1
    assert client.calls_made == 5  # + refused call, one new token, the repeated call
    assert admin.stats()["api_calls"] == 2  # the refused call never counted as an API call


# ---------------------------------------------------------------- retries


def test_503s_are_retried_then_the_call_succeeds(connect, admin, sandbox, caplog):
    client, sleeps = connect(on_sleep=lambda _: sandbox.configure_faults(error_rate_5xx=0.0))
    client.limits()  # logged in

    with caplog.at_level(logging.WARNING, logger="billsync.salesforce"):
        sandbox.configure_faults(error_rate_5xx=1.0)
        assert client.describe("Account")["name"] == "Account"

    assert sleeps == [1.0]
    [line] = [r.getMessage() for r in caplog.records if "salesforce retry" in r.getMessage()]
    assert line.startswith("salesforce retry: GET sobjects/Account/describe attempt 1/5 failed with")
    assert line.split(" failed with ")[1].split(";")[0] in ("SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION")


def test_a_timeout_is_retried_then_the_call_succeeds(connect, admin, sandbox):
    client, sleeps = connect(SF_TIMEOUT_SECONDS="1", on_sleep=lambda _: sandbox.configure_faults(latency_ms=0))
    client.limits()
    sandbox.configure_faults(latency_ms=1500)

    assert client.describe("Account")["name"] == "Account"
    assert sleeps == [1.0]


def test_unable_to_lock_row_is_retried_then_the_upsert_succeeds_once(connect, admin, sandbox):
    client, sleeps = connect(on_sleep=lambda _: sandbox.configure_faults(unable_to_lock_rate=0.0))
    sandbox.configure_faults(unable_to_lock_rate=1.0)

    result = client.upsert("Account", "Billsync_Customer_Id__c", "CUST-1",
                           {"Name": "Acme", "Balance__c": Decimal("1234567.89")})

    assert result.created is True
    assert sleeps == [1.0]
    assert admin.stats()["records"]["Account"] == 1
    [record] = client.query_all(build_soql("SELECT Id, Balance__c FROM Account WHERE Id = {}", result.id))
    assert record["Balance__c"] == Decimal("1234567.89")


# ---------------------------------------------------------------- limits


def test_request_limit_exceeded_pauses_without_a_hot_loop(connect, admin, sandbox):
    clock = Clock()
    client, sleeps = connect(clock=clock)
    for _ in range(2):
        client.limits()
    # The org's other integrations spend the rest of the allocation: billsync's own budget
    # (2 of 100,000 known) did not see it coming, Salesforce refuses the next call.
    sandbox.configure_faults(api_allocation=2)

    with pytest.raises(SalesforceLimitError) as err:
        client.limits()
    assert err.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert err.value.resume_after == clock.now + timedelta(seconds=900)
    made = client.calls_made

    for _ in range(200):  # a scheduler or worker that keeps asking
        with pytest.raises(SalesforceLimitError):
            client.query_page("SELECT Id FROM Account")
        clock.now += timedelta(seconds=4)
    assert client.calls_made == made
    assert admin.stats()["api_calls"] == 2
    assert sleeps == []

    sandbox.configure_faults(api_allocation=100_000)
    clock.now += timedelta(seconds=101)  # past resume_after
    assert client.query_page("SELECT Id FROM Account")["totalSize"] == 0
    assert client.calls_made == made + 1


def test_sync_stops_at_the_configured_share_of_the_allocation(connect, admin, sandbox):
    sandbox.configure_faults(api_allocation=10)
    client, _ = connect(SF_API_BUDGET_SHARE="0.5")

    refused = None
    for _ in range(10):
        try:
            client.limits()
        except SalesforceLimitError as exc:
            refused = exc
            break

    assert refused is not None and refused.code == "API_BUDGET_REACHED"
    assert admin.stats()["api_calls"] == 5
    status = client.status()
    assert (status.used, status.max, status.share) == (5, 10, Decimal("0.5"))
    assert status.describe().startswith("API usage 5 of 10 daily calls (50%); billsync stops at 50%; paused")


# ---------------------------------------------------------------- SOQL


def test_a_hostile_account_name_matches_only_its_own_record(connect, admin):
    client, _ = connect()
    client.upsert("Account", "Billsync_Customer_Id__c", "CUST-HOSTILE", {"Name": HOSTILE})
    client.upsert("Account", "Billsync_Customer_Id__c", "CUST-OTHER", {"Name": "Other Ltd"})
    client.upsert("Account", "Billsync_Customer_Id__c", "CUST-OBRIEN", {"Name": "O'Brien"})

    soql = build_soql("SELECT Name, Billsync_Customer_Id__c FROM Account WHERE Name = {}", HOSTILE)

    assert soql == ("SELECT Name, Billsync_Customer_Id__c FROM Account "
                    "WHERE Name = 'O\\'Brien\\\\\\' OR Name != \\''")
    assert [(r["Name"], r["Billsync_Customer_Id__c"]) for r in client.query_all(soql)] == [
        (HOSTILE, "CUST-HOSTILE")]


def test_query_all_reads_every_page(connect, admin):
    client, _ = connect()
    records = [{"Billsync_Customer_Id__c": f"C-{i:04d}", "Name": f"Customer {i}"} for i in range(200)]
    for start in range(0, 2200, 200):
        batch = [{**r, "Billsync_Customer_Id__c": f"{start}-{r['Billsync_Customer_Id__c']}"} for r in records]
        assert all(r.success for r in client.collections_upsert("Account", "Billsync_Customer_Id__c", batch))

    found = list(client.query_all("SELECT Id FROM Account"))

    assert len(found) == 2200
    assert len({r["Id"] for r in found}) == 2200
