"""Exchange rates: the stored rates (``1 EUR = rate currency``) by date; finance and admins
set one day's rate of a currency or import an ECB reference-rates CSV file (all its lines or none,
one message per bad line). The same use cases as ``PUT /api/v1/exchange-rates/{date}/{currency}``
and ``billsync rates set|import`` (``billing_engine.use_cases.exchange_rates``), audited with the
signed-in user."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from billing_engine.errors import BillingError, InvalidInputError
from billing_engine.exchange_rates import ExchangeRate
from billing_engine.use_cases import exchange_rates
from connector.console.formatting import parse_amount
from connector.console.framework import ConsoleBlueprint, Nav, acting, reading, record_audit, refusal, writing

blueprint = ConsoleBlueprint("console_rates", __name__, url_prefix="/exchange-rates",
                             nav=Nav(_l("Exchange rates"), "console_rates.list_rates", order=70))

PAGE_SIZE = 50
#: Largest file accepted (the ECB's full history since 1999 is about 1.5 MB).
MAX_FILE_BYTES = 5 * 1024 * 1024


class RateForm(FlaskForm):
    on = DateField(_l("Date"), validators=[DataRequired()])
    currency = StringField(_l("Currency"), validators=[DataRequired(), Length(min=3, max=3),
                                                       Regexp(r"^[A-Za-z]{3}$")])
    rate = StringField(_l("1 EUR ="), validators=[DataRequired(), Length(max=40)])


class ImportForm(FlaskForm):
    file = FileField(_l("ECB CSV file"), validators=[FileRequired()])


def _state(rate: ExchangeRate) -> dict:
    return {"date": rate.on.isoformat(), "currency": rate.quote, "rate": format(rate.rate, "f"),
            "source": rate.source, "entered_by": rate.entered_by}


def _page(*, status: int = 200, error: str | None = None, problems: list[str] | None = None,
          rate_form: RateForm | None = None, import_form: ImportForm | None = None):
    after_text = request.args.get("after") or ""
    after = None
    if "|" in after_text:
        day, _sep, code = after_text.partition("|")
        try:
            after = (date.fromisoformat(day), code)
        except ValueError:
            after = None
    currency = (request.args.get("currency") or "").upper() or None
    rows: list[ExchangeRate] = []
    try:
        with reading() as session:
            rows = exchange_rates.list_rates(session, limit=PAGE_SIZE + 1, after=after, currency=currency)
    except InvalidInputError as exc:
        error, status = error or refusal(exc), 422
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = url_for("console_rates.list_rates", currency=currency,
                           after=f"{rows[-1].on.isoformat()}|{rows[-1].quote}")
    return render_template("console/rates/list.html", rows=rows, currency=currency, error=error,
                           problems=problems or [], rate_form=rate_form or RateForm(formdata=None),
                           import_form=import_form or ImportForm(formdata=None), next_url=next_url,
                           first_url=url_for("console_rates.list_rates", currency=currency) if after else None), status


@blueprint.get("/")
def list_rates():
    return _page()


@blueprint.post("/")
@acting
def set_rate():
    form = RateForm()
    if not form.validate():
        return _page(status=422, error=_("Check the date, the currency (three letters) and the rate."),
                     rate_form=form)
    try:
        value = parse_amount(form.rate.data)
    except ValueError as exc:
        return _page(status=422, error=str(exc), rate_form=form)
    try:
        with writing() as session:
            change = exchange_rates.set_rate(session, form.on.data, form.currency.data.upper(), value,
                                             entered_by=current_user.actor, now=datetime.now(UTC))
            if change.changed:
                record_audit(session, "exchange_rate.set", "exchange_rate",
                             f"{change.rate.on.isoformat()}/{change.rate.quote}",
                             before=None if change.before is None else _state(change.before),
                             after=_state(change.rate))
    except BillingError as exc:
        return _page(status=422, error=refusal(exc), rate_form=form)
    flash(_("1 EUR = %(rate)s %(currency)s on %(day)s is stored.", rate=format(change.rate.rate, "f"),
            currency=change.rate.quote, day=change.rate.on.isoformat()), "success")
    return redirect(url_for("console_rates.list_rates"), 303)


@blueprint.post("/import")
@acting
def import_rates():
    form = ImportForm()
    if not form.validate():
        return _page(status=422, error=_("Choose an ECB CSV file to import."), import_form=form)
    upload = form.file.data
    data = upload.stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return _page(status=422, error=_("The file is larger than 5 MB."), import_form=form)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _page(status=422, error=_("The file is not a UTF-8 text file."), import_form=form)
    name = (upload.filename or "")[:200]
    try:
        with writing() as session:
            result = exchange_rates.import_ecb_rates(session, text, entered_by=current_user.actor,
                                                     now=datetime.now(UTC))
            record_audit(session, "exchange_rate.import", "exchange_rate_file", name or "upload", after={
                "file": name, "rates": result.rates, "days": result.days, "currencies": list(result.currencies),
                "first": None if result.first_on is None else result.first_on.isoformat(),
                "last": None if result.last_on is None else result.last_on.isoformat()})
    except exchange_rates.RateFileError as exc:
        lines = [_("Line %(line)s: %(detail)s", line=p.line, detail=p.detail) for p in exc.problems]
        return _page(status=422, error=_("Nothing was imported: %(count)s lines of %(file)s are wrong.",
                                         count=len(lines), file=name or _("the file")),
                     problems=lines, import_form=form)
    except BillingError as exc:
        return _page(status=422, error=refusal(exc), import_form=form)
    flash(_("%(rates)s rates of %(currencies)s currencies over %(days)s days imported.", rates=result.rates,
            currencies=len(result.currencies), days=result.days), "success")
    return redirect(url_for("console_rates.list_rates"), 303)
