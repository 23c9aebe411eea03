"""Errors of the JSON API as ``application/problem+json`` (RFC 9457), docs/api.md *Errors*.

Every 4xx and 5xx under ``/api/v1`` is a problem document: ``type`` (a URN naming the kind
of problem, or ``about:blank`` for a plain HTTP status), ``title``, ``status``, ``detail``,
``instance`` (the request's path) and the request id. Invalid input carries ``errors``, one
per problem: ``pointer`` (a JSON pointer into the body, RFC 6901), ``parameter`` (a query or
path parameter) or ``header``, with its ``detail``.

The statuses:

- 400: the request cannot be read (a body that is not JSON, a tampered cursor, a bad
  ``Idempotency-Key`` header);
- 401: no API key, or an unknown or revoked one (with ``WWW-Authenticate: Bearer``);
- 403: the key lacks the route's scope;
- 404: no such route or record (the engine's ``NotFoundError``);
- 409: the request contradicts the current state (the engine's ``ConflictError``), or an
  ``Idempotency-Key`` reused with another request;
- 422: well-formed input with invalid values, from the request models or the engine's
  ``InvalidInputError`` (one status for both, so a client handles one);
- 503: the database did not answer in time (with ``Retry-After``); 500: a bug, with the
  request id and nothing else.

No problem carries a secret, a driver message or a traceback: input values are never
echoed back (the validation messages name the rule, not the value).
"""

from __future__ import annotations

import json
import logging
from typing import Any, get_type_hints

from flask import Response, current_app, g, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from billing_engine.errors import BillingError, ConflictError, InvalidInputError, NotFoundError

log = logging.getLogger("billsync.api")

API_PREFIX = "/api/v1"
PROBLEM_JSON = "application/problem+json"

#: The ``type`` of each kind of problem billsync names (docs/api.md lists them).
INVALID_INPUT = "urn:billsync:problem:invalid-input"
MALFORMED_REQUEST = "urn:billsync:problem:malformed-request"
UNAUTHENTICATED = "urn:billsync:problem:unauthenticated"
INSUFFICIENT_SCOPE = "urn:billsync:problem:insufficient-scope"
NOT_FOUND = "urn:billsync:problem:not-found"
CONFLICT = "urn:billsync:problem:conflict"
IDEMPOTENCY_KEY_REUSED = "urn:billsync:problem:idempotency-key-reused"
UNAVAILABLE = "urn:billsync:problem:database-unavailable"
INTERNAL = "urn:billsync:problem:internal-error"

#: Seconds a client is asked to wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5


class FieldProblem(BaseModel):
    """One invalid input: where (exactly one of ``pointer``, ``parameter``, ``header``) and why."""

    pointer: str | None = Field(None, description="JSON pointer (RFC 6901) into the request body.")
    parameter: str | None = Field(None, description="Name of the query or path parameter.")
    header: str | None = Field(None, description="Name of the request header.")
    detail: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    model_config = ConfigDict(title="Problem")

    type: str = Field("about:blank", description="What kind of problem (a URN, or about:blank).")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    instance: str | None = Field(None, description="The request's path.")
    request_id: str | None = Field(None, description="The request's id (X-Request-Id), as logged.")
    errors: list[FieldProblem] | None = Field(None, description="Each invalid input, for 400 and 422.")


class ApiProblem(Exception):
    """Raise it from a route to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, type: str = "about:blank",
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors = errors
        self.headers = headers or {}


def is_api_request() -> bool:
    path = request.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def problem_response(status: int, title: str, detail: str | None = None, *, type: str = "about:blank",
                     errors: list[dict[str, str]] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_exception(exc: ApiProblem) -> Response:
    return problem_response(exc.status, exc.title, exc.detail, type=exc.type, errors=exc.errors,
                            headers=exc.headers)


def invalid(errors: list[dict[str, str]], detail: str = "the request has invalid values") -> ApiProblem:
    """A 422 naming each invalid input (``{"pointer"|"parameter"|"header": ..., "detail": ...}``)."""
    return ApiProblem(422, "Invalid input", detail, type=INVALID_INPUT, errors=errors)


def malformed(detail: str, errors: list[dict[str, str]] | None = None) -> ApiProblem:
    """A 400: the request cannot be read at all."""
    return ApiProblem(400, "Malformed request", detail, type=MALFORMED_REQUEST, errors=errors)


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, "Not found", detail, type=NOT_FOUND)


def conflict(detail: str, *, type: str = CONFLICT) -> ApiProblem:
    return ApiProblem(409, "Conflict", detail, type=type)


def json_pointer(path: tuple[Any, ...] | list[Any]) -> str:
    """``("lines", 0, "amount")`` -> ``/lines/0/amount`` (RFC 6901 escaping)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def field_pointer(field: str) -> str:
    """An engine field name (``lines[2].amount``) as a JSON pointer (``/lines/2/amount``)."""
    parts = [p for p in field.replace("[", ".").replace("]", "").split(".") if p]
    return json_pointer(parts)


def billing_problem(exc: BillingError) -> Response:
    """The engine's errors, in one place: invalid input 422, not found 404, conflict 409."""
    if isinstance(exc, InvalidInputError):
        return from_exception(invalid([{"pointer": field_pointer(exc.field), "detail": exc.reason}],
                                      detail=str(exc)))
    if isinstance(exc, NotFoundError):
        return from_exception(not_found(str(exc)))
    if isinstance(exc, ConflictError):
        return from_exception(conflict(str(exc)))
    return from_exception(conflict(str(exc)))


def http_problem(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (404 no such route, 405, 413, ...) as a problem."""
    status = exc.code or 500
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    if status == 400:
        return from_exception(malformed(exc.description or "the request cannot be read"))
    detail = "no such route" if status == 404 else exc.description
    return problem_response(status, exc.name, detail, type=NOT_FOUND if status == 404 else "about:blank",
                            headers=headers)


def unavailable_problem() -> Response:
    return problem_response(503, "Service Unavailable", "the database did not answer in time; retry later",
                            type=UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def internal_problem() -> Response:
    return problem_response(500, "Internal Server Error",
                            "billsync hit an unexpected error; the request id is in the logs", type=INTERNAL)


# ---------------------------------------------------------------- request validation


_LOCATIONS = {"query": "parameter", "path": "parameter", "header": "header", "cookie": "parameter"}


def _location_of(error: ValidationError) -> str:
    """Which part of the request a model's validation error is about (the view's annotations
    name the model of each part: ``query``, ``path``, ``header``, ``body``)."""
    view = current_app.view_functions.get(request.endpoint or "")
    func = getattr(view, "__wrapped__", view)
    try:
        hints = get_type_hints(func) if func is not None else {}
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: assume the body
        hints = {}
    for part, model in hints.items():
        if getattr(model, "__name__", None) == error.title:
            return part
    return "body"


def validation_problem(error: ValidationError) -> Response:
    """flask-openapi3's callback for a request that does not match its models: 422 with one
    entry per invalid input (400 when the body is not JSON at all)."""
    part = _location_of(error)
    if part == "body" and request.get_json(silent=True) is None:
        if request.get_data():
            return from_exception(malformed("the body is not valid JSON",
                                            [{"pointer": "", "detail": "not valid JSON"}]))
        return from_exception(invalid([{"pointer": "", "detail": "a JSON body is required"}],
                                      detail="the request has no body"))
    errors = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = item.get("loc", ())
        if part == "body":
            errors.append({"pointer": json_pointer(loc), "detail": item["msg"]})
        else:
            name = str(loc[0]) if loc else ""
            if part == "header":
                name = name.replace("_", "-").title()
            errors.append({_LOCATIONS.get(part, "parameter"): name, "detail": item["msg"]})
    return from_exception(invalid(errors))
