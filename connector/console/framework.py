"""How a console page is declared, protected, translated and run (docs/console.md *Add a page*).

A page module holds a ``ConsoleBlueprint``; its ``nav`` puts it in the navigation bar (in the
order of ``order``, for the roles in ``roles``)::

    blueprint = ConsoleBlueprint("dashboard", __name__, url_prefix="/dashboard",
                                 nav=Nav(_l("Dashboard"), "dashboard.show", order=10))

    @blueprint.get("/")
    def show():
        with reading() as session:
            ...
        return render_template("console/dashboard.html", ...)

Every route of a ``ConsoleBlueprint`` needs a signed-in user (``public=True`` for the sign-in
page), checks the CSRF token of every POST (Flask-WTF), and answers with the console's
security headers. ``@acting`` restricts a route to finance and admins (403 for viewers);
``writing()`` gives it one transaction and ``record_audit`` names the signed-in user in the
audit log. An engine error a user caused is shown on the page (``refusal``), never a 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlmodel import Session
from werkzeug.exceptions import HTTPException, abort

from billing_engine.errors import BillingError, ConflictError, InvalidInputError, NotFoundError
from billing_engine.use_cases import audit as audit_log
from connector.database import READ_ONLY, is_unavailable

log = logging.getLogger("billsync.console")

#: Where ``app.extensions`` keeps the console's state.
CONSOLE_STATE = "billsync.console"
#: The console's Content-Security-Policy: its own scripts, styles and images only; no inline script.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
HSTS = "max-age=31536000; includeSubDomains"


@dataclass(frozen=True)
class Nav:
    """A section of the navigation bar: its label, the endpoint it opens, its place, who sees it."""

    label: Any  # a lazy string (flask_babel.lazy_gettext), translated when the page is drawn
    endpoint: str
    order: int = 100
    roles: frozenset[str] | None = None  # None: every signed-in user

    def visible_to(self, user: Any) -> bool:
        return self.roles is None or getattr(user, "role", None) in self.roles


class ConsoleState:
    def __init__(self, app: Any):
        services = app.extensions["billsync"]
        self.engine = services.engine
        self.reader = services.engine.execution_options(**{READ_ONLY: True})
        self.settings = services.settings
        self.nav: list[Nav] = []


def console_state() -> ConsoleState:
    return current_app.extensions[CONSOLE_STATE]


class ConsoleBlueprint(Blueprint):
    """A group of console pages: sign-in required (unless ``public``), CSRF on every POST,
    the console's security headers and HTML error pages."""

    def __init__(self, name: str, import_name: str, *, url_prefix: str | None = None, nav: Nav | None = None,
                 public: bool = False, **options: Any):
        super().__init__(name, import_name, url_prefix=url_prefix, **options)
        self.nav = nav
        self.public = public
        self.before_request(self._guard)
        self.after_request(security_headers)
        self.register_error_handler(HTTPException, error_page)
        self.register_error_handler(BillingError, error_page)
        self.register_error_handler(Exception, unexpected_page)

    def _guard(self) -> Response | None:
        from connector.console import csrf, login_manager

        if request.method == "POST":
            csrf.protect()
        if not self.public and not current_user.is_authenticated:
            return login_manager.unauthorized()
        return None


def security_headers(response: Response) -> Response:
    """The headers of every console response; HSTS only over HTTPS (directly or behind a TLS proxy)."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if request.is_secure or forwarded == "https":
        response.headers["Strict-Transport-Security"] = HSTS
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(exc: Exception) -> tuple[str, int]:
    """An HTML page for an error on a console page: what happened, in the user's language."""
    if isinstance(exc, CSRFError):
        status, title, detail = 400, _("The form has expired"), _(
            "The page was open too long or came from elsewhere. Reload the page and try again.")
    elif isinstance(exc, NotFoundError):
        status, title, detail = 404, _("Not found"), _("There is no such record.")
    elif isinstance(exc, BillingError):
        status, title, detail = 422, _("Refused"), refusal(exc)
    elif isinstance(exc, HTTPException) and exc.code == 403:
        status, title, detail = 403, _("Not allowed"), _("Your role does not allow this action.")
    elif isinstance(exc, HTTPException) and exc.code == 404:
        status, title, detail = 404, _("Not found"), _("There is no such page.")
    elif isinstance(exc, HTTPException):
        status, title, detail = exc.code or 500, _("The request was refused"), exc.description or ""
    else:  # pragma: no cover - registered for HTTP and engine errors only
        raise exc
    return render_template("console/error.html", title=title, detail=detail, status=status), status


def unexpected_page(exc: Exception) -> Response:
    """An HTML page for what the user did not cause: the database is busy (503, retry), or a bug (500,
    logged with its traceback; the page gives only the request id)."""
    request_id = g.get("request_id") or ""
    if is_unavailable(exc):
        log.warning("database unavailable: %s", exc.__class__.__name__, extra={"fields": {"request_id": request_id}})
        status, title, detail = 503, _("The database is busy"), _("Try again in a few seconds.")
    else:
        log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
        status, title, detail = 500, _("Something went wrong"), _(
            "billsync hit an unexpected error. Its request id is %(id)s: give it to your administrator.",
            id=request_id)
    response = current_app.make_response(
        (render_template("console/error.html", title=title, detail=detail, status=status), status))
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def refusal(exc: BillingError) -> str:
    """What to tell the user about an engine error their input caused."""
    if isinstance(exc, InvalidInputError):
        return _("Invalid value for %(field)s: %(reason)s", field=exc.field, reason=exc.reason)
    if isinstance(exc, ConflictError):
        return _("Not possible now: %(reason)s", reason=exc.reason)
    if isinstance(exc, NotFoundError):
        return _("Not found: %(what)s", what=str(exc))
    return str(exc)


def acting(func: Callable[..., Any]) -> Callable[..., Any]:
    """A route only finance and admins may use: viewers get 403."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not getattr(current_user, "can_act", False):
            abort(403)
        return func(*args, **kwargs)

    return run


def business_date() -> date:
    """Today in the org's time zone (``BILLSYNC_TIMEZONE``): the date actions and balances use."""
    return datetime.now(ZoneInfo(console_state().settings.billsync_timezone)).date()


@contextmanager
def reading() -> Iterator[Session]:
    """A session for reading: it never takes SQLite's write lock, and it writes nothing."""
    with Session(console_state().reader, expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()


@contextmanager
def writing() -> Iterator[Session]:
    """One transaction for an action: committed when the block ends, rolled back on any error."""
    with Session(console_state().engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def record_audit(session: Session, action: str, target_type: str, target_id: str | int, *,
                 before: Any = None, after: Any = None) -> int:
    """Record an action in the audit log, in the action's transaction, by the signed-in user."""
    return audit_log.record_action(session, at=datetime.now(UTC), actor=current_user.actor, action=action,
                                   target_type=target_type, target_id=target_id, before=before, after=after,
                                   request_id=g.get("request_id"))
