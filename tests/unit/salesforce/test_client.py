"""SalesforceClient against mocked HTTP: re-auth, retries, limits, budget, records, exact money."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import responses

from connector.salesforce.client import build_client
from connector.salesforce.errors import (
    SalesforceAuthError,
    SalesforceLimitError,
    SalesforceNotConfiguredError,
    SalesforceRecordError,
    SalesforceRequestError,
    SalesforceRetryableError,
)
from connector.settings import load_settings

ACCOUNT_ID = "0015g00000AbCdEAAZ"


# ---------------------------------------------------------------- queries


def test_query_all_follows_next_records_url_and_reads_money_as_decimal(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/query/",
               body='{"totalSize": 3, "done": false, "nextRecordsUrl": "/services/data/v59.0/query/01g-2",'
                    ' "records": [{"Id": "a", "Amount": 1234.50}, {"Id": "b", "Amount": 0.10}]}')
    h.mock.add(responses.GET, f"{h.DATA}/query/01g-2",
               body='{"totalSize": 3, "done": true, "records": [{"Id": "c", "Amount": 99999999.99}]}')

    records = list(h.client.query_all("SELECT Id, Amount FROM Opportunity"))

    assert [r["Id"] for r in records] == ["a", "b", "c"]
    assert [r["Amount"] for r in records] == [Decimal("1234.50"), Decimal("0.10"), Decimal("99999999.99")]
    assert h.calls_to("/query/")[0].request.params == {"q": "SELECT Id, Amount FROM Opportunity"}


def test_every_request_carries_an_explicit_timeout_and_the_bearer_token(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={"DailyApiRequests": {"Max": 100, "Remaining": 90}})
    h.client.limits()
    assert len(h.mock.calls) == 2  # token + limits
    for call in h.mock.calls:
        assert call.request.req_kwargs["timeout"] == (10, 30)
    assert h.mock.calls[1].request.headers["Authorization"] == "Bearer TOKEN-1"


# ---------------------------------------------------------------- re-authentication


def test_expired_session_reauthenticates_once_and_repeats_the_call(harness):
    h = harness
    h.token("TOKEN-2")
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", status=401,
               body=h.sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", json={"Id": ACCOUNT_ID, "Name": "Acme"})

    assert h.client.get("Account", ACCOUNT_ID)["Name"] == "Acme"

    gets = h.calls_to("/sobjects/Account/")
    assert [c.request.headers["Authorization"] for c in gets] == ["Bearer TOKEN-1", "Bearer TOKEN-2"]
    assert len(h.calls_to("/oauth2/token")) == 2
    assert h.client.reauthentications == 1
    assert h.sleeps == []


def test_persistent_401_fails_clearly_after_exactly_one_reauthentication(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", status=401,
               body=h.sf_error("INVALID_SESSION_ID", "Session expired or invalid"))

    with pytest.raises(SalesforceAuthError, match="rejected the session again right after re-authenticating"):
        h.client.get("Account", ACCOUNT_ID)

    # simple-salesforce's own refresh would recurse until RecursionError; ours stops at 2 + 2.
    assert len(h.calls_to("/oauth2/token")) == 2
    assert len(h.calls_to("/sobjects/Account/")) == 2


def test_preissued_session_cannot_reauthenticate_and_says_so(make_harness):
    h = make_harness("session", instance_url="https://acme.my.salesforce.com", access_token="PRE-ISSUED")
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", status=401,
               body=h.sf_error("INVALID_SESSION_ID", "Session expired or invalid"))

    with pytest.raises(SalesforceAuthError, match="SF_ACCESS_TOKEN expired or revoked") as err:
        h.client.get("Account", ACCOUNT_ID)

    assert err.value.code == "INVALID_SESSION_ID"
    assert len(h.mock.calls) == 1  # no token request at all
    assert h.mock.calls[0].request.headers["Authorization"] == "Bearer PRE-ISSUED"


# ---------------------------------------------------------------- retries


def test_503_is_retried_with_backoff_then_succeeds_and_each_retry_is_logged(harness, caplog):
    h = harness
    url = f"{h.DATA}/sobjects/Account/describe"
    h.mock.add(responses.GET, url, status=503, body="Service Unavailable")
    h.mock.add(responses.GET, url, status=503, body="Service Unavailable")
    h.mock.add(responses.GET, url, json={"name": "Account", "fields": []})

    with caplog.at_level(logging.WARNING, logger="billsync.salesforce"):
        assert h.client.describe("Account")["name"] == "Account"

    assert len(h.calls_to("/describe")) == 3
    assert h.sleeps == [1.0, 2.0]
    lines = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert lines == [
        "salesforce retry: GET sobjects/Account/describe attempt 1/5 failed with HTTP_503; sleeping 1.00s",
        "salesforce retry: GET sobjects/Account/describe attempt 2/5 failed with HTTP_503; sleeping 2.00s",
    ]


def test_timeout_is_retried_then_succeeds(harness):
    h = harness
    url = f"{h.DATA}/sobjects"
    h.mock.add(responses.GET, url, body=requests.exceptions.ReadTimeout("read timed out"))
    h.mock.add(responses.GET, url, json={"sobjects": [{"name": "Account"}]})

    assert h.client.describe_global()["sobjects"] == [{"name": "Account"}]
    assert h.sleeps == [1.0]


def test_unable_to_lock_row_is_retried_then_the_upsert_succeeds(harness):
    h = harness
    url = f"{h.DATA}/sobjects/Invoice__c/Invoice_Number__c/INV-1"
    h.mock.add(responses.PATCH, url, status=400,
               body=h.sf_error("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"))
    h.mock.add(responses.PATCH, url, status=201, json={"id": "a015g00000XyZaBAAV", "success": True,
                                                       "errors": [], "created": True})

    result = h.client.upsert("Invoice__c", "Invoice_Number__c", "INV-1", {"Total__c": Decimal("10.00")})

    assert (result.id, result.created) == ("a015g00000XyZaBAAV", True)
    assert len(h.calls_to("/Invoice__c/")) == 2


def test_retries_stop_after_the_configured_attempts_with_a_capped_schedule(make_harness):
    h = make_harness(attempts=7)
    h.token()
    h.mock.add(responses.GET, f"{h.DATA}/limits/", status=500, body=h.sf_error("UNKNOWN_EXCEPTION", "oops"))

    with pytest.raises(SalesforceRetryableError) as err:
        h.client.limits()

    assert err.value.code == "UNKNOWN_EXCEPTION"
    assert len(h.calls_to("/limits/")) == 7
    assert h.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_request_errors_are_not_retried(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/query/", status=400,
               body=h.sf_error("MALFORMED_QUERY", "unexpected token: 'From'"))

    with pytest.raises(SalesforceRequestError) as err:
        h.client.query_page("SELECT From Account")

    assert err.value.code == "MALFORMED_QUERY"
    assert len(h.calls_to("/query/")) == 1
    assert h.sleeps == []


# ---------------------------------------------------------------- limits


def test_request_limit_exceeded_pauses_without_a_hot_loop_then_resumes(harness):
    h = harness
    url = f"{h.DATA}/limits/"
    h.mock.add(responses.GET, url, status=403, body=h.sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
    h.mock.add(responses.GET, url, json={"DailyApiRequests": {"Max": 100, "Remaining": 1}})

    with pytest.raises(SalesforceLimitError) as first:
        h.client.limits()
    assert first.value.resume_after == h.clock.now + timedelta(seconds=900)
    calls_after_limit = h.client.calls_made

    # A caller that keeps trying (a scheduler tick, a retry loop) gets refused without any call.
    for _ in range(100):
        with pytest.raises(SalesforceLimitError) as again:
            h.client.limits()
        assert again.value.resume_after == first.value.resume_after
        h.clock.advance(5)
    assert h.client.calls_made == calls_after_limit
    assert h.sleeps == []
    assert h.client.status().paused_until == first.value.resume_after

    h.clock.advance(400)  # past resume_after
    assert h.client.limits()["DailyApiRequests"]["Max"] == 100
    assert h.client.calls_made == calls_after_limit + 1
    assert h.client.status().paused_until is None


def test_sync_stops_at_its_share_of_the_daily_allocation(harness):
    h = harness
    url = f"{h.DATA}/limits/"
    h.mock.add(responses.GET, url, json={}, headers=h.usage(4998, 10000))
    h.mock.add(responses.GET, url, json={}, headers=h.usage(5000, 10000))

    h.client.limits()
    h.client.limits()  # reaches 50%
    made = h.client.calls_made
    with pytest.raises(SalesforceLimitError, match="used 5,000 of the org's 10,000 daily API calls") as err:
        h.client.limits()

    assert err.value.code == "API_BUDGET_REACHED"
    assert h.client.calls_made == made
    status = h.client.status()
    assert (status.used, status.max, status.share) == (5000, 10000, Decimal("0.5"))
    assert status.paused_until == err.value.resume_after == h.clock.now + timedelta(seconds=900)
    assert status.describe() == ("API usage 5,000 of 10,000 daily calls (50%); billsync stops at 50%; "
                                 "paused (API_BUDGET_REACHED) until 2026-11-24T12:15:00+00:00")


def test_a_higher_share_lets_the_sync_go_on(make_harness):
    h = make_harness(share="0.8")
    h.token()
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={}, headers=h.usage(7000, 10000))
    for _ in range(3):
        h.client.limits()
    assert len(h.calls_to("/limits/")) == 3


def test_after_a_budget_pause_one_call_refreshes_the_usage(harness):
    h = harness
    url = f"{h.DATA}/limits/"
    h.mock.add(responses.GET, url, json={}, headers=h.usage(6000, 10000))
    h.client.limits()
    with pytest.raises(SalesforceLimitError):
        h.client.limits()

    h.clock.advance(901)
    h.mock.replace(responses.GET, url, json={}, headers=h.usage(3000, 10000))  # the rolling 24 h moved on
    h.client.limits()
    h.client.limits()
    assert len(h.calls_to("/limits/")) == 3
    assert h.client.status().used == 3000


# ---------------------------------------------------------------- record errors


def test_record_errors_carry_salesforces_code_message_and_fields_and_are_not_retried(harness):
    h = harness
    h.mock.add(responses.PATCH, f"{h.DATA}/sobjects/Invoice__c/Invoice_Number__c/INV-9", status=400,
               body=h.sf_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Total must be positive", ["Total__c"]))

    with pytest.raises(SalesforceRecordError) as err:
        h.client.upsert("Invoice__c", "Invoice_Number__c", "INV-9", {"Total__c": Decimal("-1")})

    assert (err.value.code, err.value.message, err.value.fields) == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Total must be positive", ("Total__c",))
    assert len(h.calls_to("/Invoice__c/")) == 1
    assert h.sleeps == []


def test_missing_record_is_a_record_error(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", status=404,
               body=h.sf_error("NOT_FOUND", "The requested resource does not exist"))
    with pytest.raises(SalesforceRecordError) as err:
        h.client.get("Account", ACCOUNT_ID)
    assert err.value.code == "NOT_FOUND"


# ---------------------------------------------------------------- writes


def test_upsert_escapes_the_external_id_and_sends_money_exactly(harness):
    h = harness
    url = f"{h.DATA}/sobjects/Invoice__c/Invoice_Number__c/INV%2F2026%20%231"
    h.mock.add(responses.PATCH, url, status=200,
               json={"id": "a015g00000XyZaBAAV", "success": True, "errors": [], "created": False})

    result = h.client.upsert("Invoice__c", "Invoice_Number__c", "INV/2026 #1",
                             {"Total__c": Decimal("1234567890.12"), "Tax__c": Decimal("0.10"),
                              "Issued_On__c": datetime(2026, 11, 24, tzinfo=UTC).date()})

    assert (result.id, result.created) == ("a015g00000XyZaBAAV", False)
    request = h.calls_to("/Invoice__c/")[0].request
    assert request.body == '{"Total__c":1234567890.12,"Tax__c":0.10,"Issued_On__c":"2026-11-24"}'
    assert request.headers["Content-Type"] == "application/json"


def test_collections_upsert_reports_each_record_and_checks_the_batch_size(harness):
    h = harness
    url = f"{h.DATA}/composite/sobjects/Invoice__c/Invoice_Number__c"
    h.mock.add(responses.PATCH, url, json=[
        {"id": "a015g00000XyZaBAAV", "success": True, "errors": [], "created": True},
        {"success": False, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "duplicate value found",
                                       "fields": ["Invoice_Number__c"]}]},
        {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]},
    ])
    records = [{"Invoice_Number__c": f"INV-{i}", "Total__c": Decimal("1.10")} for i in range(3)]

    results = h.client.collections_upsert("Invoice__c", "Invoice_Number__c", records)

    assert [r.success for r in results] == [True, False, False]
    assert results[0].created is True
    assert (results[1].errors[0].code, results[1].errors[0].fields) == ("DUPLICATE_VALUE", ("Invoice_Number__c",))
    assert [r.errors[0].is_transient for r in results[1:]] == [False, True]
    sent = json.loads(h.calls_to("/composite/")[0].request.body, parse_float=Decimal)
    assert sent["allOrNone"] is False
    assert sent["records"][0] == {"Invoice_Number__c": "INV-0", "Total__c": Decimal("1.10"),
                                  "attributes": {"type": "Invoice__c"}}
    assert len(h.calls_to("/composite/")) == 1  # per-record errors are never retried

    too_many = [{"Invoice_Number__c": f"INV-{i}"} for i in range(201)]
    with pytest.raises(ValueError, match="at most 200 records"):
        h.client.collections_upsert("Invoice__c", "Invoice_Number__c", too_many)
    with pytest.raises(ValueError, match="has no Invoice_Number__c"):
        h.client.collections_upsert("Invoice__c", "Invoice_Number__c", [{"Total__c": 1}])
    assert len(h.calls_to("/composite/")) == 1


def test_collections_update_needs_type_and_id(harness):
    h = harness
    h.mock.add(responses.PATCH, f"{h.DATA}/composite/sobjects",
               json=[{"id": ACCOUNT_ID, "success": True, "errors": []}])
    with pytest.raises(ValueError, match="needs attributes.type and Id"):
        h.client.collections_update([{"Id": ACCOUNT_ID, "Name": "x"}])
    results = h.client.collections_update([{"attributes": {"type": "Account"}, "Id": ACCOUNT_ID, "Name": "x"}],
                                          all_or_none=True)
    assert results[0].success and results[0].id == ACCOUNT_ID
    assert json.loads(h.calls_to("/composite/sobjects")[0].request.body)["allOrNone"] is True


def test_composite_checks_the_subrequest_count_and_maps_results(harness):
    h = harness
    h.mock.add(responses.POST, f"{h.DATA}/composite", json={"compositeResponse": [
        {"body": {"id": ACCOUNT_ID, "success": True, "errors": []}, "httpHeaders": {}, "httpStatusCode": 201,
         "referenceId": "acct"},
        {"body": [{"errorCode": "PROCESSING_HALTED", "message": "halted"}], "httpHeaders": {},
         "httpStatusCode": 400, "referenceId": "inv"}]})
    sub = {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Account/Ext__c/A-1", "referenceId": "acct",
           "body": {"Name": "Acme"}}

    with pytest.raises(ValueError, match="at most 25 subrequests"):
        h.client.composite([sub] * 26)
    results = h.client.composite([sub, {**sub, "referenceId": "inv"}], all_or_none=True)

    assert [(r.reference_id, r.status, r.success) for r in results] == [("acct", 201, True), ("inv", 400, False)]
    assert len(h.calls_to("/composite")) == 1


def test_update_sends_patch_by_id(harness):
    h = harness
    h.mock.add(responses.PATCH, f"{h.DATA}/sobjects/Account/{ACCOUNT_ID}", status=204)
    assert h.client.update("Account", ACCOUNT_ID, {"Balance__c": Decimal("12.30")}) is None
    assert h.mock.calls[-1].request.body == '{"Balance__c":12.30}'


def test_names_and_ids_are_checked_before_they_reach_a_url(harness):
    with pytest.raises(ValueError, match="not a Salesforce API name"):
        harness.client.describe("Account/../../limits")
    with pytest.raises(ValueError, match="not a Salesforce record id"):
        harness.client.get("Account", "001' OR 1=1")
    assert harness.client.calls_made == 0


# ---------------------------------------------------------------- updated / deleted


def test_updated_and_deleted_need_aware_datetimes_and_send_utc(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/updated/",
               json={"ids": [ACCOUNT_ID], "latestDateCovered": "2026-11-24T11:00:00.000+0000"})
    h.mock.add(responses.GET, f"{h.DATA}/sobjects/Account/deleted/",
               json={"deletedRecords": [], "earliestDateAvailable": "2026-11-10T00:00:00.000+0000",
                     "latestDateCovered": "2026-11-24T11:00:00.000+0000"})
    start = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    end = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)

    assert h.client.updated("Account", start, end)["ids"] == [ACCOUNT_ID]
    assert h.client.deleted("Account", start, end)["deletedRecords"] == []

    url = h.calls_to("/updated/")[0].request.url
    assert "start=2026-11-24T10%3A00%3A00%2B00%3A00&end=2026-11-24T11%3A00%3A00%2B00%3A00" in url
    with pytest.raises(ValueError, match="timezone-aware"):
        h.client.updated("Account", start.replace(tzinfo=None), end)
    with pytest.raises(ValueError, match="start must be before end"):
        h.client.deleted("Account", end, start)


# ---------------------------------------------------------------- factory


def test_build_client_refuses_clearly_when_salesforce_is_not_configured():
    with pytest.raises(SalesforceNotConfiguredError, match="Salesforce is not configured: set SF_AUTH"):
        build_client(load_settings({}))


def test_build_client_from_settings_connects_with_client_credentials(mock):
    settings = load_settings({"SF_AUTH": "client_credentials", "SF_LOGIN_URL": "https://acme.my.salesforce.com",
                              "SF_CLIENT_ID": "cid", "SF_CLIENT_SECRET": "sec", "SF_TIMEOUT_SECONDS": "12",
                              "SF_API_VERSION": "60.0"})
    mock.add(responses.POST, "https://acme.my.salesforce.com/services/oauth2/token",
             json={"access_token": "T", "instance_url": "https://acme.my.salesforce.com"})
    mock.add(responses.GET, "https://acme.my.salesforce.com/services/data/v60.0/limits/", json={"ok": 1},
             headers={"Sforce-Limit-Info": "api-usage=10018/100000"})

    client = build_client(settings)
    assert client.limits() == {"ok": 1}
    assert client.api_usage.used == 10018
    assert mock.calls[1].request.req_kwargs["timeout"] == (10, 12)


def test_refresh_status_reads_usage_with_one_call_and_none_while_paused(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={}, headers=h.usage(1234, 100000))
    status = h.client.refresh_status()
    assert status.describe() == "API usage 1,234 of 100,000 daily calls (1%); billsync stops at 50%"
    assert status.calls_made == 2  # token + limits

    h.client.paused_until = h.clock.now + timedelta(minutes=5)
    h.client.pause_reason = "REQUEST_LIMIT_EXCEEDED"
    assert "paused (REQUEST_LIMIT_EXCEEDED) until 2026-11-24T12:05:00+00:00" in h.client.refresh_status().describe()
    assert h.client.calls_made == 2
