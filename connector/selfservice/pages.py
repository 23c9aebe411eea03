"""The pricing page and the checkout (docs/self-service.md#checkout).

``GET /buy`` lists the plans (the self-service products' recurring prices) with their pricing
explained; ``GET /buy/checkout`` is the order form; ``POST /buy/checkout`` checks it and shows the
engine's preview of the first invoice (nothing is kept), and ``POST /buy/quote`` the same figures
as JSON for the live price beside the form; ``POST /buy/order`` places the order
(CSRF-checked, rate limited, idempotent by the form's submission key) and ``GET /buy/done/<key>``
confirms it. A form with mistakes comes back with a message next to each field, never a 500.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from werkzeug.exceptions import HTTPException

from billing_engine.catalog import Price
from billing_engine.errors import BillingError, InvalidInputError, NotFoundError
from billing_engine.pricing import rate
from billing_engine.use_cases import self_service
from billing_engine.use_cases.customers import get_customer
from billing_engine.use_cases.subscriptions import get_subscription
from connector.console.formatting import money, number
from connector.console.framework import security_headers
from connector.database import READ_ONLY, is_unavailable
from connector.limits import limiter

log = logging.getLogger("billsync.selfservice")

LANGUAGES = {"en": "English", "fr": "Français"}
#: Orders a client may place per minute; previews it may ask for.
ORDER_LIMIT = "5 per minute"
PREVIEW_LIMIT = "30 per minute"
LIVE_QUOTE_LIMIT = "120 per minute"
MAX_QUANTITY = 10000
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")

blueprint = Blueprint("selfservice", __name__, url_prefix="/buy", template_folder="templates",
                      static_folder="static", static_url_path="/static")


@blueprint.before_request
def _guard() -> None:
    from connector.console import csrf

    if request.method == "POST":
        csrf.protect()


blueprint.after_request(security_headers)


@blueprint.context_processor
def _context() -> dict[str, Any]:
    return {"current_locale": lambda: str(get_locale()), "language_names": LANGUAGES}


@blueprint.app_template_filter("plan_money")
def _plan_money(amount: Decimal, currency: str) -> str:
    return money(_Money(amount, currency))


@dataclass(frozen=True)
class _Money:
    amount: Decimal
    currency: str


# ---------------------------------------------------------------- reading and writing


def _services() -> Any:
    return current_app.extensions["billsync"]


@contextmanager
def _session() -> Iterator[Session]:
    """A session that only reads (the plans, a quote, a confirmation page): on SQLite it never takes
    the write lock, so a buyer's live prices never queue behind the bill run."""
    with Session(_services().engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False) as s:
        try:
            yield s
        finally:
            s.rollback()


def _today_and_now() -> tuple[Any, datetime]:
    now = datetime.now(UTC)
    return now.astimezone(ZoneInfo(_services().settings.billsync_timezone)).date(), now


# ---------------------------------------------------------------- the plans


@dataclass(frozen=True)
class TierRow:
    first: Decimal
    last: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal


@dataclass(frozen=True)
class Plan:
    price: Price
    tiers: tuple[TierRow, ...]

    @property
    def price_id(self) -> str:
        return self.price.price_id

    @property
    def name(self) -> str:
        return self.price.product.name

    @property
    def model(self) -> str:
        return self.price.terms.model

    @property
    def currency(self) -> str:
        return self.price.currency

    @property
    def interval(self) -> str:
        return self.price.interval.value if self.price.interval else ""


def _plan(price: Price) -> Plan:
    rows, first = [], Decimal(1)
    for tier in price.terms.tiers:
        rows.append(TierRow(first, tier.up_to, tier.unit_price, tier.flat_fee))
        if tier.up_to is not None:
            first = tier.up_to + 1
    return Plan(price, tuple(rows))


def _plans() -> list[Plan]:
    with _session() as s:
        return [_plan(p) for p in self_service.self_service_plans(s)]


def interval_label(interval: str) -> str:
    return {"week": _("per week"), "month": _("per month"), "quarter": _("per quarter"),
            "year": _("per year")}.get(interval, "")


def model_explanation(plan: Plan) -> str:
    """How the plan's price is computed, for buyers."""
    terms = plan.price.terms
    if plan.model == "graduated":
        return _("Each seat is priced by the tier it falls in: the first seats at the first tier's price, "
                 "the next ones at the next tier's, and so on.")
    if plan.model == "volume":
        return _("Every seat is priced at the tier that your total number of seats reaches.")
    if plan.model == "per_unit" and terms.unit_price is not None:
        return _("%(price)s per seat.", price=money(_Money(terms.unit_price, plan.currency)))
    if plan.model == "flat" and terms.unit_price is not None:
        return _("A fixed price of %(price)s, whatever the number of users.",
                 price=money(_Money(terms.unit_price, plan.currency)))
    if plan.model == "package" and terms.unit_price is not None and terms.package_size is not None:
        return _("%(price)s per pack of %(size)s.", price=money(_Money(terms.unit_price, plan.currency)),
                 size=number(terms.package_size))
    return ""


@blueprint.context_processor
def _helpers() -> dict[str, Any]:
    return {"interval_label": interval_label, "model_explanation": model_explanation}


@blueprint.get("")
@blueprint.get("/")
def pricing():
    return render_template("selfservice/pricing.html", plans=_plans())


@blueprint.get("/language/<code>")
def choose_language(code: str):
    """The visible language switch: the choice is kept in the session (the console's too)."""
    if code in LANGUAGES:
        session["locale"] = code
    target = request.args.get("next") or ""
    if not target.startswith("/buy") or "//" in target or "\\" in target:
        target = url_for("selfservice.pricing")
    return redirect(target)


# ---------------------------------------------------------------- the order form


@dataclass
class OrderForm:
    key: str = ""
    company_name: str = ""
    contact_email: str = ""
    country: str = ""
    vat_id: str = ""
    plan: str = ""
    quantity: str = "1"
    errors: dict[str, str] = field(default_factory=dict)
    vat_compact: str | None = None
    quantity_value: Decimal | None = None

    @classmethod
    def from_request(cls) -> OrderForm:
        f = request.form
        return cls(key=f.get("key", "").strip(), company_name=f.get("company_name", "").strip()[:255],
                   contact_email=f.get("contact_email", "").strip()[:254], country=f.get("country", "").strip(),
                   vat_id=f.get("vat_id", "").strip()[:40], plan=f.get("plan", "").strip()[:64],
                   quantity=f.get("quantity", "").strip()[:12])

    def check(self, plans: list[Plan]) -> None:
        """A message per field that is wrong (in the buyer's language)."""
        from connector.sync.apply import ApplyError, vat_number

        if not re.fullmatch(r"[a-f0-9]{32}", self.key):
            self.errors["form"] = _("The form has expired. Reload the page and try again.")
        if not self.company_name:
            self.errors["company_name"] = _("Enter your company's name.")
        if not _EMAIL.fullmatch(self.contact_email):
            self.errors["contact_email"] = _("Enter an e-mail address such as billing@example.com.")
        if self.country not in countries():
            self.errors["country"] = _("Choose the country of your billing address.")
        if self.vat_id:
            try:
                self.vat_compact = vat_number(self.vat_id, self.country)
            except ApplyError:
                self.errors["vat_id"] = _("%(number)s is not a valid VAT number: check its country prefix and "
                                          "its digits.", number=self.vat_id)
        if self.plan not in {p.price_id for p in plans}:
            self.errors["plan"] = _("Choose a plan.")
        try:
            quantity = Decimal(self.quantity.replace("\u202f", "").replace("\xa0", "").replace(" ", ""))
        except InvalidOperation:
            quantity = None
        if quantity is None or not quantity.is_finite() or quantity != quantity.to_integral_value() \
                or not 1 <= quantity <= MAX_QUANTITY:
            self.errors["quantity"] = _("Enter a whole number of seats from 1 to %(most)s.",
                                        most=number(MAX_QUANTITY))
        else:
            self.quantity_value = quantity

    def order(self) -> self_service.Order:
        assert self.quantity_value is not None
        return self_service.Order(key=self.key, company_name=self.company_name, contact_email=self.contact_email,
                                  country=self.country, price_id=self.plan, quantity=self.quantity_value,
                                  vat_id=self.vat_compact, language=str(get_locale())[:2],
                                  timezone=_services().settings.billsync_timezone)


def countries() -> dict[str, str]:
    """ISO 3166 codes and their names in the buyer's language, by name."""
    territories = get_locale().territories
    found = {code: name for code, name in territories.items() if len(code) == 2 and code.isalpha()}
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def _form_page(form: OrderForm, plans: list[Plan], status: int = 200):
    return render_template("selfservice/checkout.html", form=form, plans=plans, countries=countries()), status


@blueprint.get("/checkout")
def checkout():
    plans = _plans()
    form = OrderForm(key=uuid.uuid4().hex, plan=request.args.get("plan", "")[:64])
    if form.plan not in {p.price_id for p in plans} and plans:
        form.plan = plans[0].price_id
    return _form_page(form, plans)


def _submitted() -> tuple[list[Plan], OrderForm]:
    """The plans on sale and the submitted form, checked (its ``errors`` say what is wrong)."""
    plans = _plans()
    form = OrderForm.from_request()
    form.check(plans)
    return plans, form


@blueprint.post("/checkout")
@limiter.limit(PREVIEW_LIMIT)
def preview():
    """The engine's preview of the order: first invoice, tax per line, what follows. Nothing is kept."""
    plans, form = _submitted()
    if form.errors:
        return _form_page(form, plans, 422)
    today, _ = _today_and_now()
    settings = _services().settings
    try:
        with _session() as s:
            quote = self_service.quote_order(s, form.order(), on=today,
                                             default_tax_percent=settings.default_tax_rate,
                                             seller_country=settings.seller_country)
    except InvalidInputError as exc:
        if exc.field == "key":  # placed already: show what was ordered
            return redirect(url_for("selfservice.done", key=form.key))
        form.errors[exc.field if exc.field in ("company_name", "quantity", "country") else "form"] = str(exc)
        return _form_page(form, plans, 422)
    plan = next(p for p in plans if p.price_id == form.plan)
    lines = [{"line": line, "tax": (line.amount * line.tax_percent / 100).quantize(Decimal("0.01"))}
             for line in quote.preview.lines]
    return render_template("selfservice/preview.html", form=form, plan=plan, quote=quote, lines=lines,
                           country_name=countries().get(form.country, form.country))


@blueprint.post("/quote")
@limiter.limit(LIVE_QUOTE_LIMIT)
def live_quote():
    """The live price beside the form (JSON): the first invoice's subtotal, tax and total, and what
    each period costs, as soon as the plan, seats and country are known (the name and e-mail may
    still be empty). ``{"ok": false, "errors": {...}}`` with 422 while the form cannot be priced."""
    plans = _plans()
    form = OrderForm.from_request()
    form.company_name = form.company_name or "—"
    form.contact_email = form.contact_email or "quote@example.com"
    form.check(plans)
    if form.errors:
        return {"ok": False, "errors": form.errors}, 422
    today, _ = _today_and_now()
    settings = _services().settings
    try:
        with _session() as s:
            quote = self_service.quote_order(s, form.order(), on=today,
                                             default_tax_percent=settings.default_tax_rate,
                                             seller_country=settings.seller_country)
    except InvalidInputError as exc:
        return {"ok": False, "errors": {exc.field: str(exc)}}, 422
    p = quote.preview
    return {"ok": True, "subtotal": _plan_money(p.subtotal, p.currency), "tax": _plan_money(p.tax, p.currency),
            "total": _plan_money(p.total, p.currency),
            "recurring": f"{_plan_money(quote.recurring, p.currency)} {interval_label(quote.interval)}"}


@blueprint.post("/order")
@limiter.limit(ORDER_LIMIT)
def order():
    """Place the order: the customer and the subscription exist at once; Salesforce hears of it
    through the outbox (the same submission twice places one order)."""
    plans, form = _submitted()
    if form.errors:
        return _form_page(form, plans, 422)
    today, now = _today_and_now()
    placed = None
    for _attempt in range(2):  # a concurrent double submit loses the race on the unique ids: read it back
        with Session(_services().engine, expire_on_commit=False) as s:
            try:
                placed = self_service.place_order(s, form.order(), on=today, now=now,
                                                  request_id=g.get("request_id"))
                s.commit()
                break
            except IntegrityError:
                s.rollback()
            except InvalidInputError as exc:
                s.rollback()
                form.errors["form"] = str(exc)
                return _form_page(form, plans, 422)
    if placed is None:
        form.errors["form"] = _("The order could not be placed. Try again.")
        return _form_page(form, plans, 409)
    if not placed.replayed:
        log.info("self-service order %s placed for customer %s", placed.subscription_id, placed.customer_id)
    return redirect(url_for("selfservice.done", key=form.key), code=303)


@blueprint.get("/done/<key>")
def done(key: str):
    try:
        customer_id, subscription_id = self_service.ids_of(key)
        with _session() as s:
            subscription = get_subscription(s, subscription_id)
            customer = get_customer(s, customer_id)
    except (InvalidInputError, NotFoundError):
        return render_template("selfservice/error.html", title=_("No such order"),
                               detail=_("There is no order at this address.")), 404
    item = subscription.items[0] if subscription.items else None
    recurring = rate(item.price.terms, item.quantity).amount if item is not None else Decimal(0)
    return render_template("selfservice/done.html", subscription=subscription, customer=customer, item=item,
                           recurring=recurring.quantize(Decimal("0.01")))


# ---------------------------------------------------------------- errors


@blueprint.errorhandler(CSRFError)
def _expired(exc: CSRFError):
    return render_template("selfservice/error.html", title=_("The form has expired"),
                           detail=_("The page was open too long or came from elsewhere. Reload the page and try "
                                    "again.")), 400


@blueprint.errorhandler(429)
def _too_many(exc: HTTPException):
    return render_template("selfservice/error.html", title=_("Too many attempts"),
                           detail=_("Wait a minute before you try again.")), 429


@blueprint.errorhandler(BillingError)
def _refused(exc: BillingError):
    return render_template("selfservice/error.html", title=_("Refused"), detail=str(exc)), 422


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return render_template("selfservice/error.html", title=exc.name, detail=exc.description or ""), exc.code
    if is_unavailable(exc):
        return render_template("selfservice/error.html", title=_("Busy"),
                               detail=_("The service is busy. Try again in a moment.")), 503
    log.exception("self-service page failed")
    return render_template("selfservice/error.html", title=_("Something went wrong"),
                           detail=_("Try again in a moment.")), 500
