"""Customers: the list with MRR, balance and status, and one customer with its balances and
its statement (the ledger the API's ``/customers/{id}/statement`` gives, with a running balance).

Reads only: ``billing_engine.use_cases.accounts`` (balances, statement),
``billing_engine.use_cases.revenue`` (MRR) and ``billing_engine.use_cases.churn`` (the churn risk
and its reasons, in the page's language; the customers by risk at ``/customers/churn-risk``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from flask import g, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms.validators import Optional

from billing_engine.errors import InvalidInputError
from billing_engine.money import Money
from billing_engine.use_cases import accounts, churn, revenue
from connector.console import timeline as customer_timeline
from connector.console.framework import (
    ConsoleBlueprint,
    Nav,
    acting,
    business_date,
    console_state,
    reading,
    refusal,
    writing,
)

blueprint = ConsoleBlueprint("console_customers", __name__, url_prefix="/customers",
                             nav=Nav(_l("Customers"), "console_customers.list_customers", order=30))

PAGE_SIZE = 50
STATUS_LABELS = {"active": _l("Active"), "inactive": _l("No subscription"), "overdue": _l("Overdue")}
ENTRY_LABELS = {"invoice": _l("Invoice"), "credit_note": _l("Credit note"), "payment": _l("Payment"),
                "refund": _l("Refund")}


class StatementForm(FlaskForm):
    class Meta:
        csrf = False

    starts_on = DateField(_l("From"), validators=[Optional()])
    through = DateField(_l("To"), validators=[Optional()])


def status_of(mrr: Decimal, balances: tuple[accounts.CurrencyBalance, ...]) -> str:
    if any(b.overdue_invoices for b in balances):
        return "overdue"
    return "active" if mrr > 0 else "inactive"


@blueprint.get("/")
def list_customers():
    after = request.args.get("after") or None
    today = business_date()
    error = None
    rows = []
    page = accounts.CustomerPage((), None)
    try:
        with reading() as session:
            page = accounts.list_customers(session, as_of=today, after=after, limit=PAGE_SIZE)
            mrr_of = revenue.customers_mrr(session, {item.customer_id: item.currency for item in page.items}, today)
            for item in page.items:
                mrr = mrr_of[item.customer_id]
                rows.append((item, Money(mrr, item.currency), status_of(mrr, item.balances)))
    except InvalidInputError as exc:
        error = refusal(exc)
    next_url = url_for("console_customers.list_customers", after=page.next) if page.next else None
    first_url = url_for("console_customers.list_customers") if after else None
    return render_template("console/customers/list.html", rows=rows, error=error, next_url=next_url,
                           first_url=first_url, status_labels=STATUS_LABELS), 422 if error else 200


def reasons_language() -> str:
    """The reasons are worded in English and French: French for a French page."""
    locale = get_locale()
    return "fr" if locale is not None and locale.language == "fr" else "en"


@blueprint.get("/churn-risk")
def list_churn_risks():
    """Scored customers from the riskiest, with their reasons (keyset pages: ``after=SCORE:ID``)."""
    raw = request.args.get("after") or None
    after, error, rows = None, None, []
    if raw is not None:
        score, _, cid = raw.partition(":")
        if not score.isdigit() or not cid or int(score) > 100:
            error = _l("This page link is not valid; start from the first page.")
        else:
            after = (int(score), cid)
    settings = console_state().settings
    with reading() as session:
        evaluation = churn.churn_evaluation(session, churn.ChurnRules(min_churned=settings.churn_min_churned))
        if error is None:
            rows = churn.churn_risks(session, limit=PAGE_SIZE + 1, after=after)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    next_url = url_for("console_customers.list_churn_risks", after=f"{rows[-1].score}:{rows[-1].customer_id}") \
        if more else None
    return render_template("console/customers/churn.html", rows=rows, error=error, next_url=next_url,
                           lang=reasons_language(), evaluation=evaluation, enabled=settings.churn_risk == "on",
                           min_churned=settings.churn_min_churned, first_url=url_for("console_customers.list_churn_risks") if raw else None), \
        422 if error else 200


@blueprint.get("/<customer_id>")
def show_customer(customer_id: str):
    today = business_date()
    form = StatementForm(request.args)
    error = None
    starts_on = date(today.year - 1, today.month, 1)
    through = today
    if form.validate():
        starts_on = form.starts_on.data or starts_on
        through = form.through.data or through
    else:
        error = _l("Check the statement's dates.")
    with reading() as session:
        customer = accounts.get_customer(session, customer_id, as_of=today)
        mrr = Money(revenue.customer_mrr(session, customer.customer_id, today), customer.currency)
        statement = None
        try:
            statement = accounts.customer_statement(session, customer.customer_id, starts_on=starts_on,
                                                    through=through)
        except InvalidInputError as exc:
            error = refusal(exc)
        events = customer_timeline.customer_timeline(session, customer.customer_id, through=today)
        risk = churn.customer_churn_risk(session, customer.customer_id)
    return render_template(
        "console/customers/show.html", customer=customer, mrr=mrr, statement=statement, form=form,
        starts_on=starts_on, through=through, error=error, entry_labels=ENTRY_LABELS, events=events,
        risk=risk, lang=reasons_language(),
        status=status_of(mrr.amount, customer.balances), status_labels=STATUS_LABELS), 422 if error else 200


@blueprint.post("/<customer_id>/portal-link")
@acting
def portal_link(customer_id: str):
    """A link that opens the customer's portal once (``PORTAL_LINK_MINUTES``), shown to copy and send."""
    from datetime import UTC, datetime

    from connector.portal.links import make_link

    with writing() as session:
        link = make_link(session, customer_id, actor=current_user.actor, settings=console_state().settings,
                         now=datetime.now(UTC), request_id=g.get("request_id"))
    return render_template("console/customers/portal_link.html", link=link)
