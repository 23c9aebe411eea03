"""Invoices: the list (filters, search, keyset pages) and one invoice in full, with finance's
actions on it: finalize a draft, void, issue a credit note, record a payment.

Reads call ``billing_engine.use_cases.invoices`` and actions the same use cases as the JSON API
(``connector/api/invoices.py``, ``payments.py``); each action is recorded in the audit log with
the signed-in user (``console:<e-mail>``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import DateField, HiddenField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp, ValidationError

from billing_engine.errors import BillingError, InvalidInputError, NotFoundError
from billing_engine.use_cases import billing, documents, payments
from billing_engine.use_cases import invoices as invoice_queries
from connector.console import submissions
from connector.console.formatting import parse_amount, plain
from connector.console.framework import (
    ConsoleBlueprint,
    Nav,
    acting,
    business_date,
    console_state,
    reading,
    record_audit,
    refusal,
    writing,
)

blueprint = ConsoleBlueprint("console_invoices", __name__, url_prefix="/invoices",
                             nav=Nav(_l("Invoices"), "console_invoices.list_invoices", order=20))

PAGE_SIZE = 50
STATUSES = ("draft", "open", "paid", "void", "uncollectible")
STATUS_LABELS = {"draft": _l("Draft"), "open": _l("Open"), "paid": _l("Paid"), "void": _l("Void"),
                 "uncollectible": _l("Uncollectible"), "unpaid": _l("Unpaid"),
                 "partially_paid": _l("Partially paid"), "overdue": _l("Overdue"), "credited": _l("Credited")}
KIND_LABELS = {"recurring": _l("Recurring"), "proration_credit": _l("Proration credit"),
               "proration_charge": _l("Proration charge"), "usage": _l("Usage"), "one_time": _l("One-time"),
               "minimum_true_up": _l("Minimum commitment true-up")}
MANUAL_SOURCE = "manual"
TEXT = r"^[\x20-\x7e\u00a0-\uffff]*$"


class FilterForm(FlaskForm):
    class Meta:
        csrf = False  # a search (GET) changes nothing

    number = StringField(_l("Number"), validators=[Optional(), Length(max=40), Regexp(r"^[A-Za-z0-9._/-]+$")])
    customer = StringField(_l("Customer id"), validators=[Optional(), Length(max=64),
                                                          Regexp(r"^[A-Za-z0-9._:-]+$")])
    status = StringField(_l("Status"), validators=[Optional(), AnyOf(STATUSES)])
    currency = StringField(_l("Currency"), validators=[Optional(), Regexp(r"^[A-Za-z]{3}$")])
    issued_from = DateField(_l("Issued from"), validators=[Optional()])
    issued_to = DateField(_l("Issued to"), validators=[Optional()])


def _amount(form: FlaskForm, field: Any) -> None:
    if field.data in (None, ""):
        return
    try:
        field.amount = parse_amount(field.data)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if field.amount <= 0:
        raise ValidationError(_("The amount must be more than zero."))


class VoidForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=500), Regexp(TEXT)])


class CreditNoteForm(FlaskForm):
    submission = HiddenField(validators=[Optional(), Regexp(submissions.KEY_PATTERN)])
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=500), Regexp(TEXT)])
    amount = StringField(_l("Net amount (empty: all that is left)"), validators=[Optional(), Length(max=40),
                                                                                _amount])


class PaymentForm(FlaskForm):
    submission = HiddenField(validators=[Optional(), Regexp(submissions.KEY_PATTERN)])
    amount = StringField(_l("Amount received"), validators=[DataRequired(), Length(max=40), _amount])
    received_on = DateField(_l("Received on"), validators=[DataRequired()])
    reference = StringField(_l("Bank reference"), validators=[Optional(), Length(max=200),
                                                             Regexp(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")])


class FinalizeForm(FlaskForm):
    pass


# ---------------------------------------------------------------- the list


@blueprint.get("/")
def list_invoices():
    form = FilterForm(request.args)
    after_token = request.args.get("after", "")
    error = None
    page = invoice_queries.InvoicePage((), None)
    if form.validate():
        try:
            after = invoice_queries.InvoiceCursor.parse(after_token) if after_token else None
            filters = invoice_queries.InvoiceFilters(
                statuses=(form.status.data,) if form.status.data else (),
                customer_id=form.customer.data or None,
                currency=form.currency.data.upper() if form.currency.data else None,
                issued_from=form.issued_from.data,
                issued_before=form.issued_to.data + timedelta(days=1) if form.issued_to.data else None,
                number=form.number.data or None)
            with reading() as session:
                page = invoice_queries.list_invoices(session, as_of=business_date(), filters=filters, after=after,
                                                     limit=PAGE_SIZE)
        except InvalidInputError as exc:
            error = refusal(exc)
    else:
        error = _("Check the filters: %(fields)s.", fields=", ".join(str(form[name].label.text)
                                                                     for name in form.errors))
    kept = {k: v for k, v in request.args.items() if k != "after" and v}
    next_url = (url_for("console_invoices.list_invoices") + "?" + urlencode({**kept, "after": page.next.token()})
                if page.next else None)
    first_url = url_for("console_invoices.list_invoices") + ("?" + urlencode(kept) if kept else "") if after_token else None
    status = 422 if error else 200
    return render_template("console/invoices/list.html", form=form, page=page, error=error, next_url=next_url,
                           first_url=first_url, status_labels=STATUS_LABELS, statuses=STATUSES), status


# ---------------------------------------------------------------- one invoice


def salesforce_url(record_id: str | None) -> str | None:
    """The Salesforce record's page: the org's instance (SF_INSTANCE_URL, else a My Domain login
    URL) and the record's Id; None when billsync does not know the org's address."""
    if not record_id:
        return None
    settings = console_state().settings
    base = settings.sf_instance_url
    if not base and settings.sf_auth != "none":
        login = settings.sf_login_url.rstrip("/")
        if not login.endswith(("://login.salesforce.com", "://test.salesforce.com")):
            base = login
    return f"{base.rstrip('/')}/{record_id}" if base else None


def _invoice_page(invoice_id: int, *, status: int = 200, error: str | None = None,
                  forms: dict[str, FlaskForm] | None = None) -> tuple[str, int]:
    with reading() as session:
        inv = invoice_queries.get_invoice(session, invoice_id, as_of=business_date())
        try:
            document = documents.get_document(session, invoice_id=invoice_id)
        except NotFoundError:
            document = None
    forms = forms or {}
    payment = forms.get("payment") or PaymentForm(formdata=None, received_on=business_date())
    if "payment" not in forms and inv.amount_due.amount > 0:
        payment.amount.data = plain(inv.amount_due.amount)
    return render_template(
        "console/invoices/show.html", inv=inv, error=error, status_labels=STATUS_LABELS, kind_labels=KIND_LABELS,
        salesforce_url=salesforce_url(inv.salesforce_id), has_pdf=document is not None,
        can_act=current_user.can_act,
        finalize_form=forms.get("finalize") or FinalizeForm(formdata=None),
        void_form=forms.get("void") or VoidForm(formdata=None),
        credit_form=forms.get("credit") or CreditNoteForm(formdata=None),
        payment_form=payment), status


@blueprint.get("/<int:invoice_id>")
def show_invoice(invoice_id: int):
    return _invoice_page(invoice_id)


@blueprint.get("/<int:invoice_id>/pdf")
def invoice_pdf(invoice_id: int):
    with reading() as session:
        doc = documents.get_document(session, invoice_id=invoice_id)
    return Response(doc.pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{doc.number}.pdf"',
                             "Cache-Control": "private, max-age=86400"})


# ---------------------------------------------------------------- actions


def _state(inv: invoice_queries.InvoiceDetail) -> dict[str, Any]:
    return {"status": inv.status, "number": inv.number, "total": inv.total.amount,
            "amount_due": inv.amount_due.amount, "currency": inv.currency}


def _done(invoice_id: int, message: str) -> WerkzeugResponse:
    flash(message, "success")
    return redirect(url_for("console_invoices.show_invoice", invoice_id=invoice_id), 303)


@blueprint.post("/<int:invoice_id>/finalize")
@acting
def finalize_invoice(invoice_id: int):
    form = FinalizeForm()
    today = business_date()
    try:
        with writing() as session:
            before = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            billing.finalize_invoice(session, invoice_id, issued_on=today)
            after = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            record_audit(session, "invoice.finalize", "invoice", invoice_id, before=_state(before),
                         after=_state(after))
    except NotFoundError:
        raise
    except BillingError as exc:
        return _invoice_page(invoice_id, status=422, error=refusal(exc), forms={"finalize": form})
    return _done(invoice_id, _("Invoice %(number)s is finalized.", number=after.number))


@blueprint.post("/<int:invoice_id>/void")
@acting
def void_invoice(invoice_id: int):
    form = VoidForm()
    if not form.validate():
        return _invoice_page(invoice_id, status=422, error=_("Give the reason for voiding."), forms={"void": form})
    today = business_date()
    try:
        with writing() as session:
            before = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            note_id = billing.void_invoice(session, invoice_id, on=today, reason=form.reason.data)
            after = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            record_audit(session, "invoice.void", "invoice", invoice_id, before=_state(before),
                         after={**_state(after), "reason": form.reason.data, "credit_note_id": note_id})
    except NotFoundError:
        raise
    except BillingError as exc:
        return _invoice_page(invoice_id, status=422, error=refusal(exc), forms={"void": form})
    return _done(invoice_id, _("The invoice is void."))


@blueprint.post("/<int:invoice_id>/credit-notes")
@acting
def credit_invoice(invoice_id: int):
    form = CreditNoteForm()
    if not form.validate():
        return _invoice_page(invoice_id, status=422, error=_form_errors(form), forms={"credit": form})
    amount = getattr(form.amount, "amount", None) if form.amount.data else None
    today = business_date()
    try:
        with writing() as session:
            if not _first_submission(session, form, "invoice.credit"):
                return _done(invoice_id, _("This form was already sent: nothing changed."))
            before = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            note_id = billing.credit_invoice(session, invoice_id, reason=form.reason.data, on=today, lines=None,
                                             amount=amount, currency=before.currency if amount is not None else None)
            note = invoice_queries.get_credit_note(session, note_id)
            after = invoice_queries.get_invoice(session, invoice_id, as_of=today)
            record_audit(session, "invoice.credit", "invoice", invoice_id, before=_state(before),
                         after={**_state(after), "credit_note_id": note_id, "credit_note": note.number,
                                "credited_total": note.total.amount, "reason": form.reason.data})
    except NotFoundError:
        raise
    except BillingError as exc:
        return _invoice_page(invoice_id, status=422, error=refusal(exc), forms={"credit": form})
    return _done(invoice_id, _("Credit note %(number)s is issued.", number=note.number))


@blueprint.post("/<int:invoice_id>/payments")
@acting
def record_payment(invoice_id: int):
    form = PaymentForm()
    if not form.validate():
        return _invoice_page(invoice_id, status=422, error=_form_errors(form), forms={"payment": form})
    try:
        with writing() as session:
            if not _first_submission(session, form, "payment.record"):
                return _done(invoice_id, _("This form was already sent: nothing changed."))
            inv = invoice_queries.get_invoice(session, invoice_id, as_of=business_date())
            result = payments.record_payment(
                session, customer_id=inv.customer_id, amount=form.amount.amount, currency=inv.currency,
                received_on=form.received_on.data, method="bank_transfer", source=MANUAL_SOURCE,
                external_reference=form.reference.data or None, invoice_ids=[invoice_id])
            payment = payments.get_payment(session, result.payment_id)
            record_audit(session, "payment.record", "payment", payment.payment_id, before=None, after={
                "created": result.created, "customer_id": payment.customer_id, "amount": payment.amount.amount,
                "currency": inv.currency, "received_on": payment.received_on.isoformat(),
                "reference": payment.reference,
                "allocations": [{"invoice_id": a.invoice_id, "amount": a.amount.amount} for a in payment.allocations],
                "unapplied": payment.unapplied.amount})
    except NotFoundError:
        raise
    except BillingError as exc:
        return _invoice_page(invoice_id, status=422, error=refusal(exc), forms={"payment": form})
    if not result.created:
        return _done(invoice_id, _("This bank reference was already recorded: nothing changed."))
    return _done(invoice_id, _("The payment is recorded."))


def _first_submission(session: Any, form: FlaskForm, action: str) -> bool:
    """Claim the form's submission key with the effect (a form sent twice is carried out once)."""
    key = form.submission.data  # type: ignore[attr-defined]
    if not key:
        return True
    return submissions.claim(session, key, user_id=current_user.id, action=action, now=datetime.now(UTC))


def _form_errors(form: FlaskForm) -> str:
    return "; ".join(f"{form[name].label.text}: {' '.join(str(m) for m in messages)}"
                     for name, messages in form.errors.items())
