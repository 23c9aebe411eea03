"""Errors in Salesforce's shapes: a request-level list body, or one record's DML error."""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of the sandbox's own errors."""


class ApiError(SandboxError):
    """Answers the whole request: HTTP ``status`` with ``[{"message","errorCode","fields"}]``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None,
                 body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self._body = body
        self.headers = headers or {}

    def body(self) -> Any:
        if self._body is not None:
            return self._body
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


class RecordError(SandboxError):
    """A DML error for one record. Single-record calls answer it with ``status``; sObject
    Collections report it in that record's result as ``statusCode``."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = fields or []
        self.status = status

    def as_api_error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message, self.fields)

    def as_result(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")
