"""Jobs: long work started from the console and done by the worker, with its progress.

Finance and admins start a bill run as of a date; admins start a full pull from Salesforce.
Each is queued in ``console_jobs`` (``connector.jobs``) and run by the worker process; its page
shows the status, the customers done out of all, and the result, and refreshes itself
(``static/jobs.js`` reads ``/jobs/<id>/status.json``). A second start while one of the same kind
is queued or running opens the one under way instead of starting another.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms.validators import DataRequired

from connector import jobs
from connector.console.framework import (
    ConsoleBlueprint,
    Nav,
    acting,
    business_date,
    console_state,
    reading,
    record_audit,
    writing,
)
from connector.console.sync import ADMIN, admin_only

blueprint = ConsoleBlueprint("console_jobs", __name__, url_prefix="/jobs",
                             nav=Nav(_l("Jobs"), "console_jobs.list_jobs", order=55))

KIND_LABELS = {"bill_run": _l("Bill run"), "pull": _l("Full pull from Salesforce")}
STATUS_LABELS = {"queued": _l("Queued"), "running": _l("Running"), "done": _l("Done"), "failed": _l("Failed")}
#: Badge classes of the stylesheet for each status.
STATUS_BADGES = {"queued": "draft", "running": "open", "done": "paid", "failed": "overdue"}


class BillRunForm(FlaskForm):
    as_of = DateField(_l("Bill everything due up to"), validators=[DataRequired()])


class PullForm(FlaskForm):
    pass


def _labels() -> dict[str, object]:
    return {"kind_labels": KIND_LABELS, "status_labels": STATUS_LABELS, "status_badges": STATUS_BADGES}


def _list(*, status: int = 200, error: str | None = None, bill_form: BillRunForm | None = None):
    with reading() as session:
        recent = jobs.recent_jobs(session, limit=30)
    return render_template("console/jobs/list.html", recent=recent, error=error,
                           bill_form=bill_form or BillRunForm(formdata=None, as_of=business_date()),
                           pull_form=PullForm(formdata=None), can_act=current_user.can_act,
                           is_admin=current_user.role == ADMIN,
                           connected=console_state().settings.sf_auth != "none", **_labels()), status


@blueprint.get("/")
def list_jobs():
    return _list()


def _find(job_id: int) -> jobs.Job:
    with reading() as session:
        job = jobs.find_job(session, job_id)
    if job is None:
        abort(404)
    return job


@blueprint.get("/<int:job_id>")
def show_job(job_id: int):
    return render_template("console/jobs/show.html", job=_find(job_id), **_labels())


@blueprint.get("/<int:job_id>/status.json")
def job_status(job_id: int):
    job = _find(job_id)
    return jsonify({"id": job.id, "status": job.status, "active": job.active, "done": job.done_count,
                    "total": job.total_count, "percent": job.percent})


def _start(kind: str, params: dict[str, str]):
    try:
        job = jobs.enqueue(console_state().engine, kind, params, requested_by=current_user.actor,
                           now=datetime.now(UTC))
    except jobs.JobBusyError as exc:
        flash(_("A job of this kind is already under way: here it is."), "info")
        if exc.job_id is None:
            return redirect(url_for("console_jobs.list_jobs"), 303)
        return redirect(url_for("console_jobs.show_job", job_id=exc.job_id), 303)
    with writing() as session:
        record_audit(session, "job.start", "console_job", job.id, before=None, after={"kind": kind, **params})
    flash(_("The job is queued: the worker starts it within seconds."), "success")
    return redirect(url_for("console_jobs.show_job", job_id=job.id), 303)


@blueprint.post("/bill-run")
@acting
def start_bill_run():
    from connector.billing_jobs import bill_run_date_problem, cut_over_problem

    form = BillRunForm()
    if not form.validate():
        return _list(status=422, error=_("Give the date to bill up to (YYYY-MM-DD)."), bill_form=form)
    services = current_app.extensions["billsync"]
    problem = bill_run_date_problem(services, form.as_of.data) or cut_over_problem(services.settings)
    if problem:
        return _list(status=422, error=_("The bill run cannot start: %(problem)s", problem=problem), bill_form=form)
    return _start("bill_run", {"as_of": form.as_of.data.isoformat()})


@blueprint.post("/pull")
@admin_only
def start_pull():
    PullForm()
    if console_state().settings.sf_auth == "none":
        return _list(status=422, error=_("Salesforce is not configured (SF_AUTH=none): there is nothing to pull."))
    return _start("pull", {"full": "true"})
