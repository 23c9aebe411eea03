"""Signing in and out of the console, and choosing its language (docs/console.md *Sign-in*)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale, refresh
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import AnyOf, DataRequired, Length

from connector.console import framework, submissions, users
from connector.console.framework import ConsoleBlueprint, console_state

blueprint = ConsoleBlueprint("console_auth", __name__, public=True)

LANGUAGE_NAMES = {"en": "English", "fr": "Français"}


class SignInForm(FlaskForm):
    email = EmailField("email", validators=[DataRequired(), Length(max=users.EMAIL_LENGTH)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=users.MAX_PASSWORD_LENGTH)])
    next = HiddenField()


class LanguageForm(FlaskForm):
    locale = StringField("locale", validators=[AnyOf(tuple(LANGUAGE_NAMES))])
    next = HiddenField()


def safe_next(target: str | None) -> str:
    """A page of this site to go back to; anything else (another host, a scheme, a backslash or a
    control character, which browsers may read as another host) is the home page."""
    if target and not any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7f for c in target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("console.home")


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    form = SignInForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")))
        form.next.data = request.args.get("next", "")
        return render_template("console/sign_in.html", form=form)
    if not form.validate():
        return render_template("console/sign_in.html", form=form,
                               error=_("Enter your e-mail address and your password.")), 422
    settings = console_state().settings
    result = users.authenticate(console_state().engine, form.email.data, form.password.data,
                                now=datetime.now(UTC), attempts=settings.console_lockout_attempts,
                                lockout=timedelta(minutes=settings.console_lockout_minutes))
    if result.user is None:
        if result.refused == "locked":
            error = _("Too many wrong passwords: this account is locked for %(minutes)d minutes.",
                      minutes=settings.console_lockout_minutes)
        else:
            error = _("Wrong e-mail address or password.")
        form.password.data = ""
        return render_template("console/sign_in.html", form=form, error=error), 401
    session.clear()
    login_user(result.user)
    session.permanent = True
    refresh()
    return redirect(safe_next(form.next.data), 303)


@blueprint.post("/sign-out")
def sign_out():
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("console_auth.sign_in"), 303)


@blueprint.post("/language")
def choose_language():
    """The language of the console: kept on the user when signed in, in the session before."""
    form = LanguageForm()
    if not form.validate():
        return redirect(url_for("console.home"), 303)
    locale = form.locale.data
    if current_user.is_authenticated:
        users.set_locale(console_state().engine, current_user.id, locale)
    session["locale"] = locale
    refresh()
    return redirect(safe_next(form.next.data), 303)


ROLE_LABELS = {"admin": _l("Admin"), "finance": _l("Finance"), "viewer": _l("Viewer")}
TIMELINE_LABELS = {"started": _l("Subscription started"), "renewed": _l("Renewed"), "amended": _l("Amended"),
                   "cancelled": _l("Cancelled"), "ended": _l("Ended"), "mrr_changed": _l("MRR changed"),
                   "invoice": _l("Invoice issued"), "credit_note": _l("Credit note"), "payment": _l("Payment"),
                   "refund": _l("Refund")}


@blueprint.app_context_processor
def console_context() -> dict[str, Any]:
    """What every console template can use: the navigation bar, the language, labels of roles."""
    state = current_app.extensions.get(framework.CONSOLE_STATE)
    nav = state.nav if state is not None else []
    return {"nav_items": [n for n in nav if n.visible_to(current_user)], "language_names": LANGUAGE_NAMES,
            "current_locale": lambda: str(get_locale()),
            "role_label": lambda role: ROLE_LABELS.get(role, role),
            "timeline_label": lambda kind: TIMELINE_LABELS.get(kind, kind),
            "new_submission": submissions.new_key}
