"""The portal's pages (``/portal``). Every page but the link request and the link itself needs a
portal session, opened by a link and bounded by ``PORTAL_SESSION_MINUTES``; every object in a URL
is the session's customer's, named by an id signed for that customer (a subscription, an invoice,
a credit note) or by a random id (a previewed change); anything else is not found. Every POST
carries the form's CSRF token. Every change is recorded in the audit log as ``portal:<customer>``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session
from werkzeug.exceptions import HTTPException

from billing_engine.errors import BillingError, ConflictError, InvalidInputError, NotFoundError
from billing_engine.money import Money
from billing_engine.use_cases import accounts, documents, invoices
from billing_engine.use_cases import audit as audit_log
from billing_engine.use_cases import collections as collections_uc
from billing_engine.use_cases import customers as customers_uc
from billing_engine.use_cases import subscriptions as subscriptions_uc
from connector.console import submissions
from connector.console.framework import refusal, security_headers
from connector.database import READ_ONLY, is_unavailable, transaction
from connector.limits import limiter
from connector.portal import changes, links
from connector.portal.mail import link_message
from connector.portal.mail import send as send_mail
from connector.settings import Settings

log = logging.getLogger("billsync.portal")

blueprint = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates")

#: Pages open without a portal session.
PUBLIC = frozenset({"portal.request_link", "portal.open_link", "portal.use_link", "portal.signed_out"})
SESSION_CUSTOMER, SESSION_UNTIL = "portal_customer", "portal_until"
SALT = "billsync.portal.ids"
REASON_LABELS = {"too_expensive": _l("Too expensive"), "missing_features": _l("Missing features"),
                 "not_using": _l("Not using it enough"), "switching": _l("Switching to another service"),
                 "temporary": _l("Only needed it for a while"), "other": _l("Another reason")}
STATUS_LABELS = {"pending": _l("Starts later"), "active": _l("Active"),
                 "cancelled": _l("Cancelled: runs until its end"), "ended": _l("Ended")}
LINK_REFUSALS = {links.UNKNOWN: _l("This link is not valid."),
                 links.EXPIRED: _l("This link has expired."),
                 links.USED: _l("This link was already used: a link opens the portal once.")}
CHANGE_REFUSALS = {changes.EXPIRED: _l("This preview has expired: preview the change again."),
                   changes.STALE: _l("The subscription changed since this preview: preview the change again."),
                   changes.REPRICED: _l("Prices changed since the preview: preview the change again."),
                   changes.CONFIRMED: _l("This change was already confirmed.")}


def _settings() -> Settings:
    return current_app.extensions["billsync"].settings


def _engine():
    return current_app.extensions["billsync"].engine


def _reader():
    return _engine().execution_options(**{READ_ONLY: True})


@contextmanager
def reading() -> Iterator[Session]:
    """A session that reads only (no write lock on SQLite) and writes nothing; the rows read stay
    readable after it (closing rolls back without expiring them)."""
    with Session(_reader(), expire_on_commit=False) as tx:
        yield tx


def _now() -> datetime:
    return datetime.now(UTC)


def _today() -> date:
    return changes.business_today(_settings(), _now())


def customer_id() -> str:
    return g.portal_customer


# ---------------------------------------------------------------- opaque ids


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt=SALT)


def public_id(kind: str, value: str | int) -> str:
    """An id for a URL: the record's, signed for the session's customer (another customer's session
    cannot use it, and no id can be made up)."""
    return _serializer().dumps([customer_id(), kind, value])


def record_id(kind: str, text: str) -> Any:
    try:
        owner, found_kind, value = _serializer().loads(text)
    except (BadSignature, ValueError, TypeError):
        abort(404)
    if owner != customer_id() or found_kind != kind:
        abort(404)
    return value


# ---------------------------------------------------------------- guard, errors


@blueprint.before_request
def _guard() -> Response | None:
    from connector.console import csrf

    if request.method == "POST":
        csrf.protect()
    customer = session.get(SESSION_CUSTOMER)
    until = session.get(SESSION_UNTIL, 0)
    if customer and isinstance(until, int | float) and until > time.time():
        g.portal_customer = customer
        return None
    if customer:
        session.pop(SESSION_CUSTOMER, None)
        session.pop(SESSION_UNTIL, None)
    if request.endpoint in PUBLIC:
        return None
    return Response(render_template("portal/signed_out.html", expired=bool(customer)), 401)


blueprint.after_request(security_headers)


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    if isinstance(exc, CSRFError):
        return _error_page(400, _("The form has expired"),
                           _("The page was open too long or came from elsewhere. Reload the page and try again."))
    if exc.code == 404:
        return _error_page(404, _("Not found"), _("There is no such page."))
    if exc.code == 429:
        return _error_page(429, _("Too many requests"), _("Wait a minute and try again."))
    return _error_page(exc.code or 500, _("The request was refused"), exc.description or "")


@blueprint.errorhandler(BillingError)
def _billing_error(exc: BillingError):
    if isinstance(exc, NotFoundError):
        return _error_page(404, _("Not found"), _("There is no such page."))
    return _error_page(422, _("Refused"), refusal(exc))


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception):
    request_id = g.get("request_id") or ""
    if is_unavailable(exc):
        return _error_page(503, _("The database is busy"), _("Try again in a few seconds."))
    log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
    return _error_page(500, _("Something went wrong"),
                       _("Something went wrong on our side. Its reference is %(id)s.", id=request_id))


def _error_page(status: int, title: str, detail: str):
    return render_template("portal/error.html", title=title, detail=detail, status=status), status


@blueprint.app_context_processor
def _portal_context() -> dict[str, Any]:
    return {"portal_signed_in": bool(g.get("portal_customer")), "reason_labels": REASON_LABELS,
            "status_label": lambda status: STATUS_LABELS.get(status, status)}


def _audit(conn_session, action: str, target_type: str, target_id: str | int, *, before: Any = None,
           after: Any = None) -> None:
    audit_log.record_action(conn_session, at=_now(), actor=f"portal:{customer_id()}", action=action,
                            target_type=target_type, target_id=target_id, before=before, after=after,
                            request_id=g.get("request_id"))


# ---------------------------------------------------------------- links and the session


@blueprint.route("/request", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
def request_link():
    """Ask for a link by e-mail: the same answer whether or not the address is a billing contact, given
    as fast: the mail goes out once the link is stored and the answer written (a mail server's delay
    does not tell a known address from an unknown one)."""
    if request.method == "GET":
        return render_template("portal/request.html", sent=False)
    email = (request.form.get("email") or "").strip()[:254]
    if not email or "@" not in email:
        return render_template("portal/request.html", sent=False, error=_("Enter your billing e-mail address."),
                               email=email), 422
    settings = _settings()
    now = _now()
    messages = []
    with transaction(_engine()) as tx:
        for cid in collections_uc.customers_with_billing_email(tx, email):
            link = links.make_link(tx, cid, actor="portal:e-mail request", settings=settings, now=now,
                                   request_id=g.get("request_id"), sent_to=email)
            messages.append(link_message(settings, tx, link, now=now))
    response = make_response(render_template("portal/request.html", sent=True))

    def send_after_the_answer() -> None:  # the links are stored: a slow mail server holds no transaction
        for message in messages:
            if message is None:
                continue
            try:  # one message failing never keeps the others from going out
                send_mail(settings, message)
            except Exception:
                log.exception("portal link not sent")

    response.call_on_close(send_after_the_answer)
    return response


@blueprint.get("/open/<token>")
def open_link(token: str):
    """The page a link opens: one button, so that a mail scanner fetching the link does not use it."""
    if not links.is_token(token):
        abort(404)
    return render_template("portal/open.html", token=token)


@blueprint.post("/open/<token>")
@limiter.limit("20 per minute")
def use_link(token: str):
    if not links.is_token(token):
        abort(404)
    now = _now()
    try:
        with transaction(_engine()) as tx:
            cid = links.use_link(tx, token, now=now)
            audit_log.record_action(tx, at=now, actor=f"portal:{cid}", action="portal.link_used",
                                    target_type="customer", target_id=cid, request_id=g.get("request_id"))
    except links.LinkRefusedError as refused:
        status = 404 if refused.reason == links.UNKNOWN else 410
        return render_template("portal/signed_out.html", refused=LINK_REFUSALS[refused.reason]), status
    locale = session.get("locale")
    session.clear()  # a fresh session: nothing of an earlier one (another customer's) is kept
    if locale:
        session["locale"] = locale
    session[SESSION_CUSTOMER] = cid
    session[SESSION_UNTIL] = time.time() + _settings().portal_session_minutes * 60
    return redirect(url_for("portal.home"), 303)


@blueprint.post("/sign-out")
def sign_out():
    session.pop(SESSION_CUSTOMER, None)
    session.pop(SESSION_UNTIL, None)
    return redirect(url_for("portal.signed_out"), 303)


@blueprint.get("/signed-out")
def signed_out():
    return render_template("portal/signed_out.html")


# ---------------------------------------------------------------- subscriptions


@blueprint.get("/")
def home():
    today = _today()
    with reading() as tx:
        customer = accounts.get_customer(tx, customer_id(), as_of=today)
        overviews = [subscriptions_uc.subscription_overview(s, today)
                     for s in subscriptions_uc.subscriptions_of_customer(tx, customer_id())]
    rows = [(public_id("subscription", o.subscription.subscription_id), o, Money(o.mrr, o.subscription.currency))
            for o in overviews]
    return render_template("portal/home.html", customer=customer, rows=rows)


def _subscription_page(sid: str, *, status: int = 200, error: str | None = None, form: dict | None = None):
    subscription_id = record_id("subscription", sid)
    today = _today()
    with reading() as tx:
        subscription = changes.owned_subscription(tx, customer_id(), subscription_id)
        changeable = {item.item_id: changes.plan_options(tx, subscription, item)
                      for item in changes.changeable_items(subscription, today)}
        usage = usage_so_far(tx, subscription, today)
    overview = subscriptions_uc.subscription_overview(subscription, today)
    items = [(o, o.item.item_id in changeable,
              None if o.monthly_amount is None else Money(o.monthly_amount, subscription.currency),
              changeable.get(o.item.item_id, []))
             for o in overview.items]
    upcoming = sorted((a for a in subscription.amendments if a.effective_on > today), key=lambda a: a.effective_on)
    ending = {}  # the plan of each item a change to come removes
    for a in upcoming:
        version = subscription.version_on(a.effective_on - timedelta(days=1)) if a.item_id else None
        if version is not None and a.item_id in version.items:
            ending[a.item_id] = version.items[a.item_id].price.product.name
    return render_template("portal/subscription.html", sid=sid, overview=overview, items=items, upcoming=upcoming,
                           subscription=subscription, mrr=Money(overview.mrr, subscription.currency), error=error,
                           ending=ending,
                           form=form or {}, reasons=changes.CANCEL_REASONS, today=today, usage=usage), status


def usage_so_far(tx: Session, subscription: Any, today: date) -> dict[str, tuple[Any, Any, Any]]:
    """Per usage item: the usage recorded in its current period so far, what the plan includes (an
    allowance's units, else None) and the period."""
    from billing_engine.catalog import ChargeType
    from billing_engine.charges import usage_windows
    from billing_engine.use_cases.usage import usage_quantities

    version = subscription.version_on(today)
    if version is None:
        return {}
    out = {}
    for item_id, window in usage_windows(subscription, today):
        item = version.items.get(item_id)
        if item is None or item.price.charge_type is not ChargeType.USAGE or not window.contains(today):
            continue
        totals = usage_quantities(tx, subscription.subscription_id, [item_id], window.starts_on,
                                  today + timedelta(days=1), lambda _item, on: on)
        out[item_id] = (sum(totals.values(), Decimal(0)), item.price.terms.included_units, window)
    return out


@blueprint.get("/subscriptions/<sid>")
def subscription(sid: str):
    return _subscription_page(sid)


def _refused_change(sid: str, exc: BillingError):
    """The subscription's page again, saying why the change cannot be previewed (a subscription that
    is not the customer's stays not found)."""
    return _subscription_page(sid, status=409 if isinstance(exc, ConflictError) else 422, error=refusal(exc),
                              form=dict(request.form))


@blueprint.post("/subscriptions/<sid>/quantity")
def preview_quantity(sid: str):
    subscription_id = record_id("subscription", sid)
    try:
        row = changes.preview_quantity(_engine(), _settings(), customer_id=customer_id(),
                                       subscription_id=subscription_id, item_id=request.form.get("item", ""),
                                       quantity_text=request.form.get("quantity", ""), now=_now())
    except BillingError as exc:
        return _refused_change(sid, exc)
    return redirect(url_for("portal.change", change_id=row.public_id), 303)


@blueprint.post("/subscriptions/<sid>/plan")
def preview_plan(sid: str):
    subscription_id = record_id("subscription", sid)
    try:
        row = changes.preview_plan_switch(_engine(), _settings(), customer_id=customer_id(),
                                          subscription_id=subscription_id, item_id=request.form.get("item", ""),
                                          price_id=request.form.get("plan", ""), now=_now())
    except BillingError as exc:
        return _refused_change(sid, exc)
    return redirect(url_for("portal.change", change_id=row.public_id), 303)


@blueprint.post("/subscriptions/<sid>/cancel")
def preview_cancel(sid: str):
    subscription_id = record_id("subscription", sid)
    try:
        row = changes.preview_cancellation(_engine(), _settings(), customer_id=customer_id(),
                                           subscription_id=subscription_id,
                                           reason_code=request.form.get("reason", ""),
                                           reason_text=request.form.get("details", ""), now=_now())
    except BillingError as exc:
        return _refused_change(sid, exc)
    return redirect(url_for("portal.change", change_id=row.public_id), 303)


def _figures(row) -> dict[str, Any]:
    from decimal import Decimal

    figures = changes.figures_of(row)
    currency = figures["currency"]
    for part in ("today", "next"):
        invoice = figures[part]
        invoice["on"] = date.fromisoformat(invoice["on"])
        for line in (*invoice["lines"], *invoice["credit_lines"]):
            line["amount"] = Money(Decimal(line["amount"]), currency)
            line["unit_price"] = Money(Decimal(line["unit_price"]), currency)
            line["quantity"] = Decimal(line["quantity"])
        for key in ("subtotal", "tax", "total", "credit_note_total"):
            if invoice[key] is not None:
                invoice[key] = Money(Decimal(invoice[key]), currency)
    figures["mrr_before"] = Money(Decimal(figures["mrr_before"]), currency)
    figures["mrr_after"] = Money(Decimal(figures["mrr_after"]), currency)
    figures["ends_before"] = date.fromisoformat(figures["ends_before"]) if figures["ends_before"] else None
    return figures


def _change_page(change_id: str, *, status: int = 200, error: str | None = None):
    with reading() as tx:
        row = changes.find_change(tx, customer_id(), change_id)
    sid = public_id("subscription", row.subscription_id)
    return render_template("portal/change.html", row=row, sid=sid, figures=_figures(row), error=error,
                           expired=row.expires_at <= _now()), status


@blueprint.get("/changes/<change_id>")
def change(change_id: str):
    return _change_page(change_id)


@blueprint.post("/changes/<change_id>/confirm")
def confirm(change_id: str):
    try:
        row, _changed = changes.confirm_change(_engine(), _settings(), customer_id=customer_id(),
                                               public_id=change_id, now=_now(), request_id=g.get("request_id"))
    except changes.ChangeRefusedError as refused:
        return _change_page(change_id, status=409, error=str(CHANGE_REFUSALS[refused.reason]))
    except BillingError as exc:
        if isinstance(exc, NotFoundError):
            raise
        return _change_page(change_id, status=422, error=refusal(exc))
    flash(_("Your subscription is cancelled: it ends at the end of the period.") if row.kind == changes.CANCEL
          else _("Your change is recorded."), "success")
    return redirect(url_for("portal.subscription", sid=public_id("subscription", row.subscription_id)), 303)


# ---------------------------------------------------------------- invoices and credit notes


@blueprint.get("/documents")
def documents_page():
    today = _today()
    with reading() as tx:
        statement = accounts.customer_statement(tx, customer_id(), starts_on=date(1900, 1, 1), through=today)
    entries = [(e, public_id(e.kind, e.record_id)) for s in statement.currencies for e in s.entries
               if e.kind in ("invoice", "credit_note")]
    entries.sort(key=lambda pair: (pair[0].on, pair[0].record_id), reverse=True)
    return render_template("portal/documents.html", entries=entries)


def _pdf(doc) -> Response:
    return Response(doc.pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{doc.number}.pdf"'})


@blueprint.get("/invoices/<iid>/pdf")
def invoice_pdf(iid: str):
    invoice_id = int(record_id("invoice", iid))
    with reading() as tx:
        if invoices.get_invoice(tx, invoice_id, as_of=_today()).customer_id != customer_id():
            abort(404)
        doc = documents.get_document(tx, invoice_id=invoice_id)
    return _pdf(doc)


@blueprint.get("/credit-notes/<cid>/pdf")
def credit_note_pdf(cid: str):
    credit_note_id = int(record_id("credit_note", cid))
    with reading() as tx:
        note = invoices.get_credit_note(tx, credit_note_id)
        if note.invoice_id is None or invoices.get_invoice(tx, note.invoice_id, as_of=_today()).customer_id \
                != customer_id():
            abort(404)
        doc = documents.get_document(tx, credit_note_id=credit_note_id)
    return _pdf(doc)


# ---------------------------------------------------------------- talk to sales


@blueprint.route("/contact", methods=["GET", "POST"])
@limiter.limit("10 per hour", methods=["POST"])
def contact():
    """A message to the customer's sales rep: a task for the owner of the customer's Account. The
    form's submission key is the message's id, so a form sent twice is one task."""
    if request.method == "GET":
        return render_template("portal/contact.html", message="", submission=submissions.new_key())
    message = request.form.get("message", "")
    now = _now()
    submission = request.form.get("submission", "")
    message_id = submission if re.fullmatch(submissions.KEY_PATTERN, submission) else submissions.new_key()
    try:
        with transaction(_engine()) as tx:
            customers_uc.request_sales_contact(tx, customer_id(), message_id=message_id, message=message, now=now)
            _audit(tx, "portal.sales_requested", "customer", customer_id(),
                   after={"message_id": message_id, "message": message.strip()})
    except InvalidInputError as exc:
        return render_template("portal/contact.html", message=message, submission=message_id,
                               error=refusal(exc)), 422
    flash(_("Your message is on its way to your account manager."), "success")
    return redirect(url_for("portal.home"), 303)


# ---------------------------------------------------------------- billing details

DETAIL_FIELDS = ("line1", "line2", "postal_code", "city", "country", "vat_id")
DETAIL_LENGTHS = {"line1": 255, "line2": 255, "postal_code": 20, "city": 40, "country": 2, "vat_id": 32}


def _details_page(values: dict[str, str], *, status: int = 200, error: str | None = None):
    return render_template("portal/billing_details.html", values=values, error=error), status


@blueprint.route("/billing-details", methods=["GET", "POST"])
def billing_details():
    """The billing address and VAT number invoices carry, as the customer edits them (the VAT number
    checked with python-stdnum for an EU one)."""
    from billing_engine.customers import Address
    from connector.sync.apply import ApplyError, country_code, vat_number

    if request.method == "GET":
        with reading() as tx:
            customer = customers_uc.get_customer(tx, customer_id())
        a = customer.billing_address
        return _details_page({"line1": a.line1, "line2": a.line2, "postal_code": a.postal_code, "city": a.city,
                              "country": a.country, "vat_id": customer.vat_id or ""})
    values = {name: (request.form.get(name) or "").strip() for name in DETAIL_FIELDS}
    too_long = [name for name, value in values.items() if len(value) > DETAIL_LENGTHS[name]
                or any(ord(c) < 32 for c in value)]
    if too_long or not values["country"]:
        return _details_page(values, status=422, error=_("Check the fields: %(fields)s.", fields=", ".join(
            too_long or ["country"])))
    try:
        country = country_code(values["country"])
        address = Address(values["line1"], values["line2"], values["city"], values["postal_code"], "", country)
        vat_id = vat_number(values["vat_id"], country)
    except (ApplyError, InvalidInputError) as exc:
        return _details_page(values, status=422, error=str(exc) if isinstance(exc, ApplyError) else refusal(exc))
    now = _now()
    with transaction(_engine()) as tx:
        previous = customers_uc.get_customer(tx, customer_id()).billing_address
        if previous.country == address.country:  # the page does not show the region: it stays as it was
            address = replace(address, region=previous.region)
        before, after = customers_uc.change_billing_details(tx, customer_id(), address=address, vat_id=vat_id,
                                                            now=now)
        _audit(tx, "portal.billing_details_changed", "customer", customer_id(),
               before={"billing_address": before.billing_address, "vat_id": before.vat_id},
               after={"billing_address": after.billing_address, "vat_id": after.vat_id})
    flash(_("Your billing details are saved: your next invoices carry them."), "success")
    return redirect(url_for("portal.billing_details"), 303)
