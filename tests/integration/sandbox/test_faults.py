"""Fault injection through the admin API: latency, 500/503, UNABLE_TO_LOCK_ROW, the daily allocation."""

from __future__ import annotations

import time

import pytest
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)


@pytest.fixture
def admin(https, sandbox):
    def call(method, name, body=None):
        response = https.request(method, f"{sandbox.url}/_sandbox/{name}", json=body,
                                 headers={"X-Sandbox-Admin-Token": sandbox.admin_token})
        assert response.status_code == 200, response.text
        return response.json()
    return call


def test_allocation_spent_is_403_request_limit_exceeded(sf, admin):
    admin("PATCH", "faults", {"api_allocation": 3})
    for _ in range(3):
        sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT Id FROM Account")
    assert err.value.status == 403
    assert err.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert admin("GET", "stats")["api_calls"] == 3
    admin("POST", "api-usage/reset")
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_error_rate_answers_500_and_503_reproducibly(sf, admin):
    def run():
        admin("PATCH", "faults", {"error_rate_5xx": 0.5, "seed": 7})
        statuses = []
        for _ in range(20):
            try:
                sf.query("SELECT Id FROM Account")
                statuses.append(200)
            except SalesforceGeneralError as exc:
                assert exc.content[0]["errorCode"] in ("UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE")
                statuses.append(exc.status)
        return statuses
    first = run()
    assert {200, 500, 503} <= set(first)
    assert run() == first


def test_unable_to_lock_row_on_writes_only(sf, admin):
    admin("PATCH", "faults", {"unable_to_lock_rate": 1.0})
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": "A"})
    assert err.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    results = sf.restful("composite/sobjects", method="POST",
                         json={"records": [{"attributes": {"type": "Account"}, "Name": "B"}]})
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    admin("PATCH", "faults", {"unable_to_lock_rate": 0.0})
    assert sf.Account.create({"Name": "A"})["success"] is True


def test_latency_is_added_per_call(sf, admin):
    admin("PATCH", "faults", {"latency_ms": 150})
    started = time.monotonic()
    sf.query("SELECT Id FROM Account")
    assert time.monotonic() - started >= 0.15


def test_forced_token_expiry_through_the_admin_api(sf, admin):
    assert admin("POST", "tokens/expire")["expired"] >= 1
    from simple_salesforce.exceptions import SalesforceExpiredSession
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account")


def test_bad_fault_settings_are_refused(https, sandbox):
    response = https.patch(f"{sandbox.url}/_sandbox/faults", json={"error_rate_5xx": 2},
                           headers={"X-Sandbox-Admin-Token": sandbox.admin_token})
    assert response.status_code == 400
