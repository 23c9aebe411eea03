"""The one composition root: settings → database engine → Flask app / services.

Web, worker, clock and CLI all build their dependencies here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from flask import Flask, g, jsonify, request
from sqlalchemy import Engine
from werkzeug.exceptions import HTTPException

from connector.database import Timeouts, is_unavailable, make_engine
from connector.logs import configure_logging, redact_segments
from connector.settings import Settings, load_settings

log = logging.getLogger("billsync.http")

#: Request ids a caller may choose (``X-Request-Id``); any other value is replaced by a new id.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Where ``app.extensions`` keeps the URL prefixes whose next path segment is a secret.
SECRET_PATHS = "billsync.secret_paths"
#: Longest path the request log prints.
MAX_LOGGED_PATH = 300


@dataclass
class Services:
    """What a process needs, built once from settings."""

    settings: Settings
    engine: Engine
    _salesforce: object | None = None

    def salesforce(self):
        """The process's Salesforce client, built on first use (raises when SF_AUTH=none).

        Not thread-safe: a process uses it from one thread (worker and clock jobs run
        one at a time); tests may set their own with ``use_salesforce``.
        """
        if self._salesforce is None:
            from connector.salesforce import build_client

            self._salesforce = build_client(self.settings)
        return self._salesforce

    def use_salesforce(self, client: object) -> None:
        self._salesforce = client


def database_timeouts(settings: Settings, *, web: bool) -> Timeouts:
    """Every process's connect and pool timeouts; the web's statement and lock bounds too.
    The worker, clock and CLI run bill runs and syncs: their statements and lock waits
    take as long as they need."""
    if not web:
        return Timeouts(connect_seconds=settings.db_connect_timeout_seconds,
                        pool_seconds=settings.db_pool_timeout_seconds)
    return Timeouts(connect_seconds=settings.db_connect_timeout_seconds,
                    pool_seconds=settings.db_pool_timeout_seconds,
                    statement_seconds=settings.db_statement_timeout_seconds,
                    lock_seconds=settings.db_lock_timeout_seconds)


def build_services(settings: Settings | None = None, *, web: bool = False) -> Services:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    engine = make_engine(settings.database_url, timeouts=database_timeouts(settings, web=web))
    return Services(settings=settings, engine=engine)


def build_app(settings: Settings | None = None) -> Flask:
    """The web process's app: flask-openapi3's ``OpenAPI`` (a Flask subclass) serving the
    probes, the webhooks, the JSON API under ``/api/v1`` (``connector.api.routes``), the web
    console (``connector.console``) and the self-service pages (``connector.selfservice``)."""
    from connector.api.framework import install_api, make_app
    from connector.api.routes import API_MODULES

    services = build_services(settings, web=True)
    app = make_app("billsync")
    app.extensions["billsync"] = services
    from connector.limits import install_limits

    install_limits(app, services.settings.rate_limit_storage_uri, proxy_hops=services.settings.proxy_hops)

    from connector.api.health import blueprint as health

    app.register_blueprint(health)
    install_api(app, API_MODULES)
    from connector.webhooks.config import WebhookConfig
    from connector.webhooks.routes import SECRET_PATH_PREFIXES, install_webhooks

    install_webhooks(app, WebhookConfig.from_settings(services.settings))
    app.extensions[SECRET_PATHS] = list(SECRET_PATH_PREFIXES)
    from connector.console import install_console

    install_console(app)
    from connector.selfservice import install_selfservice

    install_selfservice(app)
    from connector.portal import install_portal

    install_portal(app)
    _install_request_log(app)
    _install_error_handlers(app)
    return app


def services_of(app: Flask) -> Services:
    return app.extensions["billsync"]


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is short and safe, else a new one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex[:16]


def logged_path(app: Flask, path: str) -> str:
    """The request path as the log shows it: secret segments hidden, length bounded.
    The query string is never logged (it may carry a secret)."""
    path = redact_segments(path, app.extensions.get(SECRET_PATHS, ()))
    return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "..."


def _install_request_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-Id"))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        if "request_id" not in g:  # a request refused before routing
            g.request_id = request_id_from(request.headers.get("X-Request-Id"))
        response.headers["X-Request-Id"] = g.request_id
        log.info(
            "%s %s %s",
            request.method,
            logged_path(app, request.path),
            response.status_code,
            extra={"fields": {"request_id": g.request_id, "status": response.status_code,
                              "ms": round(elapsed_ms, 1)}},
        )
        return response


def _install_error_handlers(app: Flask) -> None:
    """JSON errors everywhere; under ``/api/v1``, problem documents (``connector.api.problems``)."""
    from billing_engine.errors import BillingError
    from connector.api import problems

    @app.errorhandler(problems.ApiProblem)
    def _api_problem(exc: problems.ApiProblem):
        return problems.from_exception(exc)

    @app.errorhandler(BillingError)
    def _billing_error(exc: BillingError):
        if problems.is_api_request():
            return problems.billing_problem(exc)
        return _unexpected(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code is None:  # a response already made (abort(response))
            return exc
        if problems.is_api_request():
            return problems.http_problem(exc)
        from connector.console import console_page_error, is_console_page

        if is_console_page():
            return console_page_error(exc)
        response = jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description,
                           request_id=g.get("request_id"))
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if is_unavailable(exc):
            return _database_unavailable(exc)
        log.exception("unhandled error", extra={"fields": {"request_id": g.get("request_id")}})
        if problems.is_api_request():
            return problems.internal_problem()
        response = jsonify(error="internal_error",
                           message="billsync hit an unexpected error; the request id is in the logs",
                           request_id=g.get("request_id"))
        response.status_code = 500
        return response


#: Seconds a client is asked to wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5


def _database_unavailable(exc: Exception):
    """503 when the database is down, locked or too slow (a statement or lock timeout):
    the caller should retry; no driver detail leaves the process."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    log.warning("database unavailable: %s: %s", exc.__class__.__name__, detail[0] if detail else "",
                extra={"fields": {"request_id": g.get("request_id")}})
    from connector.api import problems

    if problems.is_api_request():
        return problems.unavailable_problem()
    response = jsonify(error="database_unavailable",
                       message="the database did not answer in time; retry later",
                       request_id=g.get("request_id"))
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
