"""Salesforce failures, classified once, by what the caller should do.

    SalesforceError
    ├── SalesforceRetryableError   retry with backoff: timeouts, connection errors, 5xx, UNABLE_TO_LOCK_ROW
    ├── SalesforceLimitError       stop and resume after ``resume_after``: REQUEST_LIMIT_EXCEEDED, our budget
    ├── SalesforceAuthError        fix the credentials: login refused, a 401 that survives re-authentication
    │   └── SalesforceNotConfiguredError   SF_AUTH=none
    ├── SalesforceRecordError      record the error against the record (code, message, fields); never retry
    └── SalesforceRequestError     our request is wrong (malformed SOQL, unknown object, no access, TLS)

``classify()`` is the only place that turns simple-salesforce exceptions,
``requests`` exceptions and raw responses into this tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError

#: Error codes that mean "try the same request again in a moment".
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})
#: Salesforce's answer when the org's API allocation (or concurrency limit) is used up.
LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED"})
#: Codes that are about our request, never about one record, even on a record call.
REQUEST_CODES = frozenset({"MALFORMED_QUERY", "INVALID_TYPE", "NOT_FOUND_OBJECT", "API_DISABLED_FOR_ORG",
                           "INSUFFICIENT_ACCESS", "JSON_PARSER_ERROR", "METHOD_NOT_ALLOWED",
                           "INVALID_QUERY_LOCATOR", "API_CURRENTLY_DISABLED"})


class SalesforceError(Exception):
    """Base of every Salesforce failure; ``code`` is Salesforce's errorCode (or ours, upper case)."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None,
                 method: str = "", path: str = ""):
        self.message = message
        self.code = code
        self.status = status
        self.method = method
        self.path = path
        super().__init__(f"{code}: {message}" if code else message)


class SalesforceRetryableError(SalesforceError):
    """Transient: the retry policy tries again with backoff."""


class SalesforceLimitError(SalesforceError):
    """The org's API allocation is used up (or our share of it): stop, resume after ``resume_after``."""

    def __init__(self, message: str, *, resume_after: datetime | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.resume_after = resume_after


class SalesforceAuthError(SalesforceError):
    """Salesforce refused our credentials or session; a person has to fix the configuration."""


class SalesforceNotConfiguredError(SalesforceAuthError):
    """SF_AUTH=none: billsync has not been connected to a Salesforce org yet."""


class SalesforceSessionExpiredError(SalesforceAuthError):
    """A 401 INVALID_SESSION_ID: the client re-authenticates once, then gives up with SalesforceAuthError."""


class SalesforceRecordError(SalesforceError):
    """Salesforce rejected one record (validation, DUPLICATE_VALUE, INVALID_FIELD, ...). Not retried."""

    def __init__(self, message: str, *, fields: list[str] | tuple[str, ...] = (), **kw: Any):
        super().__init__(message, **kw)
        self.fields = tuple(fields)


class SalesforceRequestError(SalesforceError):
    """Our request is wrong (malformed SOQL, unknown object, no permission, TLS trust). Not retried."""


@dataclass(frozen=True)
class RecordError:
    """One error Salesforce reported for one record: its code, message and the fields involved."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    @property
    def is_transient(self) -> bool:
        """A lock conflict: the caller may queue the record again later (the client never retries it)."""
        return self.code in RETRYABLE_CODES


@dataclass(frozen=True)
class RecordResult:
    """The outcome for one record of an sObject Collections or upsert call, in request order."""

    id: str | None
    success: bool
    created: bool | None = None
    errors: tuple[RecordError, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> RecordResult:
        errors = tuple(
            RecordError(code=str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
                        message=str(e.get("message") or ""), fields=tuple(e.get("fields") or ()))
            for e in item.get("errors") or ()
        )
        return cls(id=item.get("id"), success=bool(item.get("success")), created=item.get("created"),
                   errors=errors)


# ---------------------------------------------------------------- classification


def classify(failure: BaseException | requests.Response, *, record: bool = False,
             method: str = "", path: str = "") -> SalesforceError:
    """Turn any Salesforce failure into one error of our tree (returned, not raised).

    ``failure`` is a simple-salesforce exception, a ``requests`` exception or a
    non-2xx ``requests.Response``. ``record=True`` when the call was about one
    record (get, update, upsert): a 400/404/300 there is that record's error.
    """
    if isinstance(failure, SalesforceError):
        return failure
    if isinstance(failure, requests.Response):
        return _classify_status(failure.status_code, _parse_body(failure.text), record=record,
                                method=method or (failure.request.method if failure.request else "") or "",
                                path=path or _path_of(failure.url))
    if isinstance(failure, SalesforceAuthenticationFailed):
        return SalesforceAuthError(f"Salesforce refused the login: {failure.message}",
                                   code=str(failure.code or "AUTHENTICATION_FAILED"), status=401,
                                   method=method, path=path)
    if isinstance(failure, SimpleSalesforceError):
        return _classify_status(failure.status, failure.content, record=record, method=method,
                                path=path or _path_of(failure.url))
    if isinstance(failure, requests.exceptions.SSLError):
        return SalesforceRequestError(
            f"TLS certificate check failed ({_first_line(failure)}); set SF_CA_BUNDLE to the CA that signed "
            "the server's certificate", code="TLS_ERROR", method=method, path=path)
    if isinstance(failure, requests.exceptions.Timeout):
        return SalesforceRetryableError(f"no answer in time ({_first_line(failure)})", code="TIMEOUT",
                                        method=method, path=path)
    if isinstance(failure, requests.exceptions.ConnectionError):
        return SalesforceRetryableError(f"cannot connect ({_first_line(failure)})", code="CONNECTION_ERROR",
                                        method=method, path=path)
    if isinstance(failure, requests.exceptions.RequestException):
        return SalesforceRequestError(_first_line(failure), code="HTTP_ERROR", method=method, path=path)
    raise TypeError(f"classify() does not know {type(failure).__name__}") from (
        failure if isinstance(failure, BaseException) else None)


def _classify_status(status: int, content: Any, *, record: bool, method: str, path: str) -> SalesforceError:
    code, message, fields = _first_error(content)
    kw: dict[str, Any] = {"code": code, "status": status, "method": method, "path": path}
    if code in LIMIT_CODES:
        return SalesforceLimitError(message or "API request limit exceeded", **kw)
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        kw["code"] = code or f"HTTP_{status}"
        return SalesforceRetryableError(message or f"Salesforce answered {status}", **kw)
    if status == 401:
        kw["code"] = code or "INVALID_SESSION_ID"
        if kw["code"] == "INVALID_SESSION_ID":
            return SalesforceSessionExpiredError(message or "Session expired or invalid", **kw)
        return SalesforceAuthError(message or "unauthorised", **kw)
    if status == 300:
        kw["code"] = "MULTIPLE_RECORDS_MATCH"
        matches = ", ".join(str(c) for c in content) if isinstance(content, list) else "several records"
        return SalesforceRecordError(f"the external id matches more than one record: {matches}", **kw)
    kw["code"] = code or f"HTTP_{status}"
    if record and status in (400, 404) and code not in REQUEST_CODES:
        return SalesforceRecordError(message or f"Salesforce answered {status}", fields=fields, **kw)
    return SalesforceRequestError(message or f"Salesforce answered {status}", **kw)


def _first_error(content: Any) -> tuple[str, str, tuple[str, ...]]:
    """Salesforce error bodies are a JSON array of {message, errorCode, fields}; be lenient."""
    item = content[0] if isinstance(content, list) and content else content
    if isinstance(item, dict):
        code = item.get("errorCode") or item.get("statusCode") or item.get("error") or ""
        message = item.get("message") or item.get("error_description") or ""
        return str(code), str(message), tuple(item.get("fields") or ())
    if isinstance(item, str):
        return "", item.strip()[:500], ()
    return "", "", ()


def _parse_body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _path_of(url: str | None) -> str:
    return urlsplit(url).path if url else ""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
