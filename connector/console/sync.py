"""Sync: where the Salesforce sync stands, and finance's and admins' actions on it.

The page shows the pull's cursors, the outbox and inbox counts, the dead letters with their errors
(retried one by one or all at once by finance and admins), the Salesforce API budget, and the
month's reconciliation: admins run it (it reads Salesforce), read its mismatches, repair them (the
drifted records go back to the outbox for the next push) and see the runs before. Reads and actions
go through the same functions as ``connector/api/operations.py``; each action is audited with the
signed-in user.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.exceptions import abort
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, Optional, Regexp

from billing_engine.money import money_of
from connector.console.framework import (
    ConsoleBlueprint,
    Nav,
    acting,
    console_state,
    reading,
    record_audit,
    writing,
)

log = logging.getLogger("billsync.console")

blueprint = ConsoleBlueprint("console_sync", __name__, url_prefix="/sync",
                             nav=Nav(_l("Sync"), "console_sync.show", order=50))

PERIOD = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"
#: Dead letters and reconciliations listed at once (the API pages through all of them).
LIST_LIMIT = 100
ADMIN = "admin"


class RetryForm(FlaskForm):
    queue = HiddenField(validators=[Optional(), Regexp("^(outbox|inbox)$")])
    row_id = HiddenField(validators=[Optional(), Regexp(r"^[1-9][0-9]{0,9}$")])


class ReconcileForm(FlaskForm):
    period = StringField(_l("Month (YYYY-MM)"), validators=[DataRequired(), Regexp(PERIOD, message=_l(
        "Write the month as YYYY-MM, for example 2026-11."))])
    repair = BooleanField(_l("Repair what differs"))


def admin_only(func: Callable[..., Any]) -> Callable[..., Any]:
    """A route only admins may use: finance and viewers get 403."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        if getattr(current_user, "role", None) != ADMIN:
            abort(403)
        return func(*args, **kwargs)

    return run


def _salesforce() -> dict[str, Any]:
    from connector.salesforce.errors import SalesforceError

    services = current_app.extensions["billsync"]
    if services.settings.sf_auth == "none":
        return {"configured": False}
    try:
        status = services.salesforce().status()
    except SalesforceError as exc:
        log.warning("sync page: Salesforce API usage unknown: %s", exc)
        return {"configured": True, "known": False}
    return {"configured": True, "known": status.used is not None, "used": status.used, "max": status.max,
            "share": status.share, "paused_until": status.paused_until, "pause_reason": status.pause_reason}


def _totals(run: Any) -> list[dict[str, Any]]:
    return [{**t, "engine_money": money_of(Decimal(t["engine_sum"]), t["currency"]) if t["object"] != "account"
             else None, "salesforce_money": money_of(Decimal(t["salesforce_sum"]), t["currency"])
             if t["object"] != "account" else None} for t in run.result["totals"]]


def _page(*, status: int = 200, error: str | None = None, reconcile_form: ReconcileForm | None = None,
          run_id: int | None = None):
    from connector.sync import reconcile as reconciliation
    from connector.sync.outbox_claims import outbox_letters
    from connector.sync.status import sync_overview
    from connector.webhooks.processing import inbox_counts, inbox_letters

    with reading() as session:
        overview = sync_overview(console_state().reader, session)
        inbox = inbox_counts(session)
        letters = ([{"queue": "outbox", "id": x.id, "event": x.topic, "record": f"{x.aggregate_type} {x.aggregate_id}",
                     "attempts": x.attempts, "error": x.last_error, "at": x.created_at}
                    for x in outbox_letters(session, status="dead", limit=LIST_LIMIT)]
                   + [{"queue": "inbox", "id": x.id, "event": f"{x.source} {x.action}",
                       "record": f"{x.object_name} {x.record_id or ''}".strip(), "attempts": x.attempts,
                       "error": x.last_error, "at": x.received_at}
                      for x in inbox_letters(session, status="dead", limit=LIST_LIMIT)])
        runs = reconciliation.list_runs(session, limit=LIST_LIMIT)
        shown = None
        if run_id is not None:
            shown = reconciliation.find_run(session, run_id)
            if shown is None:
                abort(404)
        elif runs:
            shown = reconciliation.find_run(session, runs[0].id)
    form = reconcile_form or ReconcileForm(formdata=None, period=shown.period if shown else
                                           datetime.now(UTC).strftime("%Y-%m"))
    return render_template(
        "console/sync/show.html", overview=overview, inbox=inbox, letters=letters, runs=runs, shown=shown,
        totals=_totals(shown) if shown else [], salesforce=_salesforce(), retry_form=RetryForm(formdata=None),
        reconcile_form=form, can_act=current_user.can_act, is_admin=current_user.role == ADMIN, error=error), status


@blueprint.get("/")
def show():
    return _page()


@blueprint.get("/reconciliations/<int:run_id>")
def show_run(run_id: int):
    return _page(run_id=run_id)


@blueprint.post("/dead-letters/retry")
@acting
def retry():
    from connector.sync.outbox_claims import retry_dead_letters
    from connector.webhooks.processing import retry_inbox_letters

    form = RetryForm()
    if not form.validate() or bool(form.queue.data) != bool(form.row_id.data):
        return _page(status=422, error=_("This dead letter cannot be retried: reload the page."))
    everything = not form.row_id.data
    ids = [int(form.row_id.data)] if form.row_id.data else None
    with writing() as session:
        outbox = retry_dead_letters(session, ids) if everything or form.queue.data == "outbox" else 0
        inbox = (retry_inbox_letters(session, now=datetime.now(UTC), ids=ids)
                 if everything or form.queue.data == "inbox" else 0)
        record_audit(session, "sync.retry", "sync_queue", "all" if everything else "rows",
                     before={"outbox_ids": ids if form.queue.data == "outbox" else None,
                             "inbox_ids": ids if form.queue.data == "inbox" else None},
                     after={"outbox_requeued": outbox, "inbox_requeued": inbox})
    if outbox + inbox == 0:
        flash(_("Nothing to retry: it is already back in the queue."), "info")
    else:
        flash(_("%(count)s dead letters are back in the queue; the next push sends them.", count=outbox + inbox),
              "success")
    return redirect(url_for("console_sync.show"), 303)


@blueprint.post("/reconciliations")
@admin_only
def reconcile():
    from connector.salesforce.errors import SalesforceError, SalesforceNotConfiguredError
    from connector.sync import reconcile as reconciliation
    from connector.sync.installation import ensure_installation, find_installation

    form = ReconcileForm()
    if request.form.get("run_id"):  # the repair button of a run shown: the same month again, repaired
        form.repair.data = True
    if not form.validate():
        return _page(status=422, error="; ".join(str(m) for messages in form.errors.values() for m in messages),
                     reconcile_form=form)
    services = current_app.extensions["billsync"]
    if services.settings.sf_auth == "none":
        return _page(status=422, error=_("Salesforce is not configured (SF_AUTH=none): there is nothing to "
                                         "reconcile with."), reconcile_form=form)
    now = datetime.now(UTC)
    installation = find_installation(console_state().reader)
    if installation is None:
        with writing() as session:
            keys = ensure_installation(session, now=now).keys
    else:
        keys = installation.keys
    try:
        report = reconciliation.reconcile_period(services, form.period.data, keys=keys)
    except (SalesforceNotConfiguredError, SalesforceError) as exc:
        log.warning("reconcile %s: Salesforce could not be read: %s", form.period.data, exc)
        return _page(status=503, error=_("Salesforce could not be read for the reconciliation; try again later."),
                     reconcile_form=form)
    with writing() as session:
        repair = None
        if form.repair.data and not report.agrees:
            repair = reconciliation.requeue_drift(services, report, session=session, keys=keys, now=now)
        elif form.repair.data:
            repair = reconciliation.RepairResult()
        run = reconciliation.save_run(session, report, requested_by=current_user.actor, requested_at=now,
                                      repair=repair)
        record_audit(session, "reconcile.run", "reconciliation", run.id, before=None,
                     after={"period": run.period, "agrees": run.agrees, "mismatches": len(report.mismatches),
                            "repair": bool(form.repair.data), "requeued": len(repair.requeued) if repair else 0})
    if run.agrees:
        flash(_("%(period)s: billsync and Salesforce agree.", period=run.period), "success")
    elif repair is not None:
        flash(_("%(period)s: %(count)s records are back in the outbox; the next push writes them again.",
                period=run.period, count=len(repair.requeued)), "success")
    else:
        flash(_("%(period)s: %(count)s differences.", period=run.period, count=len(report.mismatches)), "error")
    return redirect(url_for("console_sync.show_run", run_id=run.id), 303)
