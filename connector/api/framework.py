"""The JSON API's framework: how a route under ``/api/v1`` is declared, authenticated,
validated, run in a transaction and documented (docs/api.md; docs/architecture.md §7
*A new API route*).

Routes are declared on an ``ApiBlueprint`` (flask-openapi3) with pydantic models for the
path, query and body, the response models, and the scope the API key needs::

    blueprint = ApiBlueprint("audit", __name__, tag="Audit log")

    @blueprint.get("/audit-log", scope="read", responses={200: AuditPage})
    def list_audit_log(query: AuditQuery):
        with reading() as session:
            ...
        return respond(AuditPage(...))

The same models validate the request (a mismatch is a 422 problem naming each field) and
generate the OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

Every POST is a write: it runs inside one transaction that the framework opens
(``write_session()`` gives its session), with ``Idempotency-Key`` handled around it
(``connector.api.idempotency``), and must record what it changed in the audit log with
``record_audit`` (a 2xx POST that recorded nothing is a bug and fails). A route raises
``ApiProblem`` (``connector.api.problems``) or lets the engine's errors through: one
handler turns them into problem documents.
"""

from __future__ import annotations

import copy
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, current_app, g, jsonify, request
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from pydantic import BaseModel
from sqlmodel import Session

from billing_engine.use_cases import audit as audit_log
from connector.api import idempotency
from connector.api.auth import SCOPES, ApiKey, authenticate, require_scope
from connector.api.problems import (
    API_PREFIX,
    PROBLEM_JSON,
    Problem,
    validation_problem,
)
from connector.database import READ_ONLY

log = logging.getLogger("billsync.api")

BEARER = "bearer"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
#: Where ``app.extensions`` keeps the API's per-process state.
API_STATE = "billsync.api"
#: How often a web process purges expired idempotency keys.
PURGE_EVERY_SECONDS = 3600

#: The problem responses every operation may give, documented on each.
_PROBLEMS = {
    "400": "The request cannot be read (a body that is not JSON, a bad cursor or header).",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The API key lacks the route's scope.",
    "404": "No such record.",
    "409": "The request contradicts the current state, or reuses an Idempotency-Key.",
    "422": "Invalid input: each invalid field is named in `errors`.",
    "503": "The database did not answer in time; retry after `Retry-After` seconds.",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


class BillsyncApp(OpenAPI):
    """The web process's Flask app: flask-openapi3's ``OpenAPI`` (a Flask subclass), whose
    generated document also states the ``Idempotency-Key`` header of every POST and the
    problem responses of every operation."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        for path_item in self.spec_json.get("paths", {}).values():
            for method, operation in path_item.items():
                responses = operation.setdefault("responses", {})
                for status, description in _PROBLEMS.items():
                    responses[status] = _problem_response(description)
                if method == "post":
                    operation.setdefault("parameters", []).append({
                        "name": idempotency.HEADER, "in": "header", "required": False,
                        "description": "Makes a retry safe: the same key and request get the stored response "
                                       "(with `Idempotent-Replayed: true`); the same key with another request "
                                       "gets 409. Kept at least 24 hours.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.KEY_LENGTH,
                                   "pattern": "^[\\x21-\\x7e]+$"}})


def make_app(import_name: str) -> BillsyncApp:
    return BillsyncApp(
        import_name,
        info=Info(title="billsync API", version="1",
                  description="Finance actions, usage and metrics of billsync. Authentication: "
                              "`Authorization: Bearer <API key>`; errors are `application/problem+json`; "
                              "money is a decimal string with its currency."),
        security_schemes={BEARER: {"type": "http", "scheme": "bearer",
                                   "description": "An API key from `billsync api-key create`."}},
        doc_ui=False,
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=validation_problem,
    )


def _operation_id(*, bp_name: str = "", name: str = "", path: str = "", method: str = "") -> str:
    return name


class ApiBlueprint(APIBlueprint):
    """A group of ``/api/v1`` routes; each declares the scope its API key needs."""

    def __init__(self, name: str, import_name: str, *, tag: str, description: str | None = None):
        super().__init__(name, import_name, url_prefix=API_PREFIX, abp_tags=[Tag(name=tag, description=description)],
                         operation_id_callback=_operation_id)
        self.scopes: dict[str, str] = {}
        self.before_request(self._authenticate)

    def _authenticate(self) -> None:
        scope = self.scopes.get((request.endpoint or "").rpartition(".")[2])
        if scope is None or request.method == "OPTIONS":
            return
        state = api_state()
        key = authenticate(state.engine, request.headers.get("Authorization"))
        require_scope(key, scope)
        g.api_key = key

    def _declare(self, method: str, rule: str, scope: str, func: Callable[..., Any],
                 options: dict[str, Any]) -> Callable[..., Any]:
        if scope not in SCOPES:
            raise ValueError(f"{func.__name__}: unknown scope {scope!r}")
        options.setdefault("security", [{BEARER: [scope]}])
        self.scopes[func.__name__] = scope
        declare = getattr(super(), method)
        return declare(rule, **options)(func)

    def get(self, rule: str, *, scope: str, **options: Any) -> Callable[..., Any]:  # type: ignore[override]
        """A read route: ``scope`` is the API key's scope it needs (``read`` usually)."""
        return lambda func: self._declare("get", rule, scope, func, options)

    def post(self, rule: str, *, scope: str, audited: bool = True,  # type: ignore[override]
             **options: Any) -> Callable[..., Any]:
        """A write route: it runs in one transaction (``write_session()``), with Idempotency-Key,
        and records its audit entry (``record_audit``) unless ``audited=False``."""
        return lambda func: self._declare("post", rule, scope, _write(func, audited=audited), options)

    def put(self, rule: str, *, scope: str, audited: bool = True,  # type: ignore[override]
            **options: Any) -> Callable[..., Any]:
        """A write route that sets a resource at its URL: like ``post`` (one transaction,
        Idempotency-Key, its audit entry); setting the same value again changes nothing."""
        return lambda func: self._declare("put", rule, scope, _write(func, audited=audited), options)


# ---------------------------------------------------------------- per process


class ApiState:
    def __init__(self, app: Flask):
        services = app.extensions["billsync"]
        self.engine = services.engine
        self.reader = services.engine.execution_options(**{READ_ONLY: True})
        self.idempotency_hours = services.settings.api_idempotency_hours
        self.timezone = services.settings.billsync_timezone
        self.churn_min_churned = services.settings.churn_min_churned
        self._purged_at = 0.0
        self._lock = threading.Lock()

    def purge_if_due(self) -> None:
        """Drop expired idempotency keys, at most once per ``PURGE_EVERY_SECONDS`` per process."""
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY_SECONDS or not self._lock.acquire(blocking=False):
            return
        try:
            self._purged_at = now
            cutoff = datetime.now(UTC) - idempotency.retention(self.idempotency_hours)
            purged = idempotency.purge(self.engine, older_than=cutoff)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        finally:
            self._lock.release()


def api_state() -> ApiState:
    return current_app.extensions[API_STATE]


def business_date() -> date:
    """Today in the org's time zone (``BILLSYNC_TIMEZONE``): the default date of "as of" queries."""
    return datetime.now(ZoneInfo(api_state().timezone)).date()


def current_key() -> ApiKey:
    """The API key of the request (set once it is authenticated)."""
    return g.api_key


@contextmanager
def reading() -> Iterator[Session]:
    """A session for a read route: it never takes SQLite's write lock, and it writes nothing."""
    with Session(api_state().reader, expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()


def write_session() -> Session:
    """The session of the POST being served: its transaction commits when the route returns
    a 2xx or 3xx response, and rolls back when it raises or answers an error."""
    session = g.get("api_session")
    if session is None:
        raise RuntimeError("write_session() is only available inside a POST route of an ApiBlueprint")
    return session


def record_audit(action: str, target_type: str, target_id: str | int, *, before: Any = None,
                 after: Any = None) -> int:
    """Record the route's change in the audit log, in the route's transaction: the actor is
    the request's API key, with the request id."""
    entry = audit_log.record_action(write_session(), at=datetime.now(UTC), actor=current_key().actor,
                                    action=action, target_type=target_type, target_id=target_id,
                                    before=before, after=after, request_id=g.get("request_id"))
    g.audit_entries = g.get("audit_entries", 0) + 1
    return entry


def respond(body: BaseModel | list[Any] | dict[str, Any], status: int = 200,
            headers: dict[str, str] | None = None) -> Response:
    """A JSON response from a response model (money stays a decimal string)."""
    if isinstance(body, BaseModel):
        response = Response(body.model_dump_json(), status=status, mimetype="application/json")
    else:
        response = jsonify(body)
        response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class _Rollback(Exception):
    def __init__(self, response: Response):
        self.response = response


def _write(func: Callable[..., Any], *, audited: bool) -> Callable[..., Any]:
    @functools.wraps(func)
    def run(**kwargs: Any) -> Response:
        state = api_state()
        key = idempotency.key_of(request)
        request_hash = idempotency.fingerprint(request) if key else ""
        state.purge_if_due()
        g.audit_entries = 0
        try:
            with Session(state.engine, expire_on_commit=False) as session:
                g.api_session = session
                try:
                    if key:
                        stored = idempotency.claim(session, current_key().id, key, request_hash,
                                                   datetime.now(UTC))
                        if stored is not None:
                            session.rollback()
                            return idempotency.replay(stored, request_hash)
                    response = current_app.make_response(func(**kwargs))
                    if response.status_code >= 400:
                        raise _Rollback(response)
                    if audited and not g.audit_entries:
                        raise RuntimeError(f"{func.__name__} changed nothing in the audit log: a POST route "
                                           "records its change with record_audit()")
                    if key:
                        idempotency.store(session, current_key().id, key, response)
                    session.commit()
                    return response
                except BaseException:
                    session.rollback()
                    raise
        except _Rollback as rollback:
            return rollback.response
        finally:
            g.pop("api_session", None)

    return run


# ---------------------------------------------------------------- installation


def install_api(app: BillsyncApp, modules: tuple[str, ...]) -> None:
    """Register the API's blueprints (each module's ``blueprint``) and its document."""
    app.extensions[API_STATE] = ApiState(app)
    for name in modules:
        app.register_api(importlib.import_module(name).blueprint)

    document: dict[str, Any] = {}

    def openapi_document() -> Response:
        if not document:
            document.update(copy.deepcopy(app.api_doc))
        return jsonify(document)

    app.add_url_rule(OPENAPI_PATH, "openapi_document", openapi_document)
