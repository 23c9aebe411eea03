"""The review queue: what billsync will not decide alone, for finance to settle.

Two kinds of items wait here. Drafts a bill run held back instead of finalizing (every invoice
with ``HOLD_INVOICES_FOR_REVIEW``, or one covering more periods than ``BILL_RUN_MAX_PERIODS``):
finance finalizes or voids them, through the invoice actions (``connector/console/invoices.py``).
And the open review flags of the sync (a won deal edited after Closed Won, a deleted deal, a record
billsync cannot apply): finance resolves each with keep, cancel from a date, or reapply, and a note,
through the same use cases as ``POST /api/v1/review-flags/<id>/resolve``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

from billing_engine.use_cases import invoices as invoice_queries
from connector.console.framework import (
    ConsoleBlueprint,
    Nav,
    acting,
    business_date,
    reading,
    record_audit,
    writing,
)
from connector.console.invoices import STATUS_LABELS, TEXT, FinalizeForm, VoidForm

blueprint = ConsoleBlueprint("console_review", __name__, url_prefix="/review",
                             nav=Nav(_l("Review"), "console_review.show", order=40))

#: Most held drafts the page lists (the invoice list shows every draft).
HELD_LIMIT = 200
ACTION_LABELS = {"keep": _l("Keep billing as it is"), "cancel": _l("Cancel the subscription from a date"),
                 "reapply": _l("Re-apply the deal from Salesforce")}
KIND_LABELS = {"changed": _l("Edited after Closed Won"), "deleted": _l("Deleted in Salesforce"),
               "reverted": _l("Moved back from Closed Won"), "refused": _l("Cannot be applied")}


class ResolveForm(FlaskForm):
    action = SelectField(_l("Decision"), choices=[SelectChoice(k, v) for k, v in ACTION_LABELS.items()],
                         validate_choice=True)
    on = DateField(_l("First day not billed (cancel only)"), validators=[Optional()])
    note = TextAreaField(_l("Note"), validators=[DataRequired(), Length(max=2000), Regexp(TEXT)])


def held_reason(inv: invoice_queries.InvoiceDetail, *, hold_all: bool, max_periods: int) -> str:
    """Why a bill run's draft waits for review: the anomaly guard's findings when it held it, else
    what its lines and the settings it ran with say."""
    findings = [a.reason for a in inv.anomalies if a.released_at is None]
    if findings:
        return _("Held by the anomaly guard: %(reasons)s", reasons=" ".join(findings))
    periods = Counter(line.product_code for line in {(ln.product_code, ln.starts_on): ln for ln in inv.lines
                                                     if ln.kind == "recurring"}.values())
    most = max(periods.values(), default=0)
    if most > max_periods:
        return _("Back-billing: covers %(count)s periods of one subscription (more than %(max)s).",
                 count=most, max=max_periods)
    if hold_all:
        return _("Every invoice is held for review (HOLD_INVOICES_FOR_REVIEW).")
    return _("Held for review by the bill run.")


def _held_drafts() -> list[dict[str, Any]]:
    settings = current_app.extensions["billsync"].settings
    today = business_date()
    with reading() as session:
        page = invoice_queries.list_invoices(session, as_of=today, filters=invoice_queries.InvoiceFilters(
            statuses=("draft",)), limit=HELD_LIMIT)
        out = []
        for item in page.items:
            inv = invoice_queries.get_invoice(session, item.invoice_id, as_of=today)
            if inv.bill_run_on is None:
                continue  # a draft made by hand is not held by anyone
            out.append({"inv": inv, "reason": held_reason(inv, hold_all=settings.hold_invoices_for_review,
                                                          max_periods=settings.bill_run_max_periods)})
    return out


def _page(*, status: int = 200, error: str | None = None, forms: dict[int, ResolveForm] | None = None):
    from connector.sync import review as reviews

    with reading() as session:
        flags = reviews.open_reviews(session)
    forms = forms or {}
    resolve_forms = {f.id: forms.get(f.id) or ResolveForm(formdata=None, prefix=f"r{f.id}") for f in flags}
    return render_template("console/review/show.html", held=_held_drafts(), flags=flags, resolve_forms=resolve_forms,
                           finalize_form=FinalizeForm(formdata=None), void_form=VoidForm(formdata=None),
                           can_act=current_user.can_act, status_labels=STATUS_LABELS, kind_labels=KIND_LABELS,
                           error=error), status


@blueprint.get("/")
def show():
    return _page()


@blueprint.post("/flags/<int:review_id>/resolve")
@acting
def resolve(review_id: int):
    from connector.salesforce.errors import SalesforceError
    from connector.sync import review as reviews

    form = ResolveForm(prefix=f"r{review_id}")
    if not form.validate():
        problems = "; ".join(f"{form[name].label.text}: {' '.join(str(m) for m in messages)}"
                             for name, messages in form.errors.items())
        return _page(status=422, error=problems, forms={review_id: form})
    action, on, note = form.action.data, form.on.data, form.note.data.strip()
    if action == "cancel" and on is None:
        return _page(status=422, error=_("A cancellation needs the first day not billed."), forms={review_id: form})
    if action != "cancel" and on is not None:
        return _page(status=422, error=_("Only a cancellation takes a date."), forms={review_id: form})
    services = current_app.extensions["billsync"]
    now = datetime.now(UTC)
    try:
        with writing() as session:
            flag = reviews.open_review(session, review_id)
            before = {"open": True, "object": flag.object_name, "record_id": flag.record_id, "kind": flag.kind,
                      "engine_id": flag.engine_id}
            if action == "reapply":
                if services.settings.sf_auth == "none":
                    return _page(status=422, error=_("Salesforce is not configured: there is no deal to read "
                                                     "again. Keep or cancel instead."), forms={review_id: form})
            else:
                result = reviews.settle_review(session, review_id, action, on=on, note=note, now=now)
                record_audit(session, "review.resolve", "review_flag", review_id, before=before, after={
                    "open": False, "action": action, "on": on.isoformat() if on else None, "note": note})
        if action == "reapply":
            result = reviews.resolve_review(services, review_id, "reapply", note=note, now=now)
            with writing() as session:
                record_audit(session, "review.resolve", "review_flag", review_id, before=before,
                             after={"open": False, "action": "reapply", "on": None, "note": note})
    except reviews.ReviewNotFoundError:
        return _page(status=404, error=_("There is no open review %(id)s.", id=review_id))
    except reviews.ReviewError as exc:
        return _page(status=422, error="; ".join(exc.lines), forms={review_id: form})
    except SalesforceError:
        return _page(status=503, error=_("Salesforce could not be read to re-apply the deal; try again later."),
                     forms={review_id: form})
    flash(_("Review %(id)s is resolved: %(message)s", id=review_id, message=result.message), "success")
    return redirect(url_for("console_review.show"), 303)
