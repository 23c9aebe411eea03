"""The web console of finance and admins (docs/console.md): server-rendered pages (Flask and
Jinja, one stylesheet, no build step) over the engine's use cases, in English and French.

``install_console(app)`` adds it to the web process's app (``connector.wiring.build_app``):
sign-in (Flask-Login, argon2 hashes, lock-out), CSRF on every console form (Flask-WTF; the
JSON API and the webhooks keep their own authentication and are not touched), translations
and locale-aware numbers, dates and money (Flask-Babel), and the pages of ``CONSOLE_MODULES``,
each a ``ConsoleBlueprint`` (``connector.console.framework``) whose ``nav`` puts it in the
navigation bar.
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response, current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_babel import Babel
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from connector.console.framework import CONSOLE_STATE, ConsoleBlueprint, ConsoleState, console_state

#: The page modules; each holds a ``blueprint`` (a ``ConsoleBlueprint``). Order does not matter:
#: the navigation bar follows each page's ``Nav.order``.
CONSOLE_MODULES: tuple[str, ...] = (
    "connector.console.auth",
    "connector.console.invoices",
    "connector.console.customers",
    "connector.console.dashboard",
    "connector.console.rates",
    "connector.console.review",
    "connector.console.sync",
    "connector.console.jobs",
    "connector.console.mappings",
    "connector.console.mail",
)
HERE = Path(__file__).parent
log = logging.getLogger("billsync.console")
LANGUAGES = ("en", "fr")
#: How long a console session lasts without being used again.
SESSION_HOURS = 12

csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()

core = ConsoleBlueprint("console", __name__, template_folder="templates", static_folder="static",
                        static_url_path="/console/static", public=True)


@core.get("/")
def home():
    """The first section of the navigation bar the user may open (the sign-in page when signed out)."""
    if not current_user.is_authenticated:
        return redirect(url_for("console_auth.sign_in"))
    for item in sorted(console_state().nav, key=lambda n: n.order):
        if item.visible_to(current_user):
            return redirect(url_for(item.endpoint))
    return redirect(url_for("console_auth.sign_in"))


#: Paths that are not the console's: no session cookie is read or written there, so the API, the
#: probes and the webhooks never touch the console's signing key.
NOT_CONSOLE = ("/api/", "/webhooks/", "/healthz", "/readyz")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for the console's pages only, with the signing key read from
    the database on first use when ``SECRET_KEY`` is not set, so that every web process signs
    with the same key. Elsewhere (and while the database cannot give the key) the session is
    the null session: nothing can be stored in it."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(NOT_CONSOLE):
            return None
        if not app.secret_key:
            from connector.console.users import signing_key

            try:
                app.secret_key = signing_key(app.extensions[CONSOLE_STATE].engine, now=datetime.now(UTC))
            except SQLAlchemyError as exc:
                log.warning("the console's signing key cannot be read: %s", exc.__class__.__name__)
                return None
        return super().open_session(app, request)


def is_console_page() -> bool:
    """A browser's request for a page outside the API, the webhooks and the probes."""
    return not request.path.startswith(NOT_CONSOLE) and request.accept_mimetypes.accept_html


def console_page_error(exc: HTTPException) -> Response:
    """An HTTP error outside any console route (an unknown page, a wrong method), as a console page."""
    from connector.console.framework import error_page, security_headers

    return security_headers(current_app.make_response(error_page(exc)))


def select_locale() -> str:
    """The signed-in user's language, else the one chosen before signing in, else the browser's."""
    chosen = getattr(current_user, "locale", None) if current_user else None
    chosen = chosen or session.get("locale")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or "en"


def _load_user(user_id: str) -> Any:
    from connector.console.users import find_user

    if not user_id.isdigit() or len(user_id) > 10:
        return None
    user = find_user(console_state().engine, int(user_id))
    return user if user is not None and user.is_active else None


def install_console(app: Flask, modules: tuple[str, ...] = CONSOLE_MODULES) -> None:
    """Add the console's pages, sign-in, CSRF and translations to ``app``."""
    state = ConsoleState(app)
    app.extensions[CONSOLE_STATE] = state
    settings = state.settings
    if settings.secret_key:
        app.secret_key = settings.secret_key
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="billsync_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # CSRF is checked by every ConsoleBlueprint on its POSTs; the JSON API (API keys) and the
        # Salesforce webhooks (tokens, signatures) are not forms and are not checked.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        BABEL_DEFAULT_LOCALE="en",
        BABEL_TRANSLATION_DIRECTORIES=str(HERE / "translations"),
    )
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=lambda: settings.billsync_timezone)
    login_manager.init_app(app)
    login_manager.login_view = "console_auth.sign_in"
    login_manager.login_message = _l("Sign in to open this page.")
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)
    app.register_blueprint(core)
    for name in modules:
        blueprint = importlib.import_module(name).blueprint
        app.register_blueprint(blueprint)
        if blueprint.nav is not None:
            state.nav.append(blueprint.nav)
    state.nav.sort(key=lambda n: n.order)

    from connector.console import formatting

    formatting.install(app)
