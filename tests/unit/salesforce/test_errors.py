"""Every Salesforce failure lands in exactly one class, chosen by what the caller should do."""

from __future__ import annotations

import json

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connector.salesforce.errors import (
    RecordResult,
    SalesforceAuthError,
    SalesforceLimitError,
    SalesforceRecordError,
    SalesforceRequestError,
    SalesforceRetryableError,
    SalesforceSessionExpiredError,
    classify,
)

URL = "https://acme.my.salesforce.com/services/data/v59.0/sobjects/Account/x"


def body(code, message="m", fields=None):
    return [{"errorCode": code, "message": message, "fields": fields or []}]


@pytest.mark.parametrize(("exc", "record", "expected", "code"), [
    (SalesforceGeneralError(URL, 503, "x", "Service Unavailable"), False, SalesforceRetryableError, "HTTP_503"),
    (SalesforceGeneralError(URL, 500, "x", body("UNKNOWN_EXCEPTION")), False, SalesforceRetryableError,
     "UNKNOWN_EXCEPTION"),
    (SalesforceMalformedRequest(URL, 400, "x", body("UNABLE_TO_LOCK_ROW")), True, SalesforceRetryableError,
     "UNABLE_TO_LOCK_ROW"),
    (SalesforceRefusedRequest(URL, 403, "x", body("REQUEST_LIMIT_EXCEEDED")), False, SalesforceLimitError,
     "REQUEST_LIMIT_EXCEEDED"),
    (SalesforceExpiredSession(URL, 401, "x", body("INVALID_SESSION_ID")), False, SalesforceSessionExpiredError,
     "INVALID_SESSION_ID"),
    (SalesforceMalformedRequest(URL, 400, "x", body("DUPLICATE_VALUE")), True, SalesforceRecordError,
     "DUPLICATE_VALUE"),
    (SalesforceMalformedRequest(URL, 400, "x", body("INVALID_FIELD")), True, SalesforceRecordError,
     "INVALID_FIELD"),
    (SalesforceMalformedRequest(URL, 400, "x", body("FIELD_CUSTOM_VALIDATION_EXCEPTION")), True,
     SalesforceRecordError, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    (SalesforceResourceNotFound(URL, 404, "x", body("NOT_FOUND")), True, SalesforceRecordError, "NOT_FOUND"),
    (SalesforceMoreThanOneRecord(URL, 300, "x", ["/a", "/b"]), True, SalesforceRecordError,
     "MULTIPLE_RECORDS_MATCH"),
    # The same codes on a query or describe are about our request, not a record.
    (SalesforceMalformedRequest(URL, 400, "x", body("INVALID_FIELD")), False, SalesforceRequestError,
     "INVALID_FIELD"),
    (SalesforceMalformedRequest(URL, 400, "x", body("MALFORMED_QUERY")), True, SalesforceRequestError,
     "MALFORMED_QUERY"),
    (SalesforceResourceNotFound(URL, 404, "x", body("NOT_FOUND")), False, SalesforceRequestError, "NOT_FOUND"),
    (SalesforceRefusedRequest(URL, 403, "x", body("INSUFFICIENT_ACCESS")), False, SalesforceRequestError,
     "INSUFFICIENT_ACCESS"),
    (SalesforceAuthenticationFailed("invalid_grant", "authentication failure"), False, SalesforceAuthError,
     "invalid_grant"),
    (requests.exceptions.ReadTimeout("read timed out"), False, SalesforceRetryableError, "TIMEOUT"),
    (requests.exceptions.ConnectionError("refused"), False, SalesforceRetryableError, "CONNECTION_ERROR"),
    (requests.exceptions.SSLError("certificate verify failed"), False, SalesforceRequestError, "TLS_ERROR"),
])
def test_classification(exc, record, expected, code):
    error = classify(exc, record=record, method="GET", path="/p")
    assert type(error) is expected
    assert error.code == code
    assert (error.method, error.path) == ("GET", "/p")


def test_record_errors_keep_salesforces_message_and_fields():
    error = classify(SalesforceMalformedRequest(URL, 400, "x", body("REQUIRED_FIELD_MISSING",
                                                                      "Required fields are missing: [Name]",
                                                                      ["Name"])), record=True)
    assert (error.message, error.fields, error.status) == ("Required fields are missing: [Name]", ("Name",), 400)


def test_a_tls_failure_tells_how_to_fix_it():
    error = classify(requests.exceptions.SSLError("certificate verify failed"))
    assert "set SF_CA_BUNDLE" in error.message


def test_a_raw_response_is_classified_the_same_way():
    response = requests.Response()
    response.status_code = 403
    response._content = json.dumps(body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")).encode()
    response.url = URL
    error = classify(response)
    assert isinstance(error, SalesforceLimitError)
    assert error.path == "/services/data/v59.0/sobjects/Account/x"


def test_collection_results_read_status_code_per_record():
    result = RecordResult.from_json({"success": False, "errors": [
        {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "rolled back", "fields": []}]})
    assert (result.id, result.success, result.errors[0].code) == (None, False, "ALL_OR_NONE_OPERATION_ROLLED_BACK")
