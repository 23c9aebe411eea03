"""Mappings (admins): the mapping files in force, checked against the org, and a deal's preview.

The page lists the files the pull and the push use (the shipped defaults, and the overrides and
additions of ``MAPPINGS_DIR``) with their YAML and line numbers; "Check against the org" runs
``billsync mappings check`` (it reads the org's describe) and points each problem to its line; the
preview form runs ``billsync mappings preview`` on a record Id (an Opportunity) and shows the engine
command, the first invoice with each line's explanation, and the MRR change, writing nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from billing_engine.money import money_of
from connector.console.framework import ConsoleBlueprint, Nav
from connector.console.sync import ADMIN, admin_only

log = logging.getLogger("billsync.console")

blueprint = ConsoleBlueprint("console_mappings", __name__, url_prefix="/mappings",
                             nav=Nav(_l("Mappings"), "console_mappings.show", order=60, roles=frozenset({ADMIN})))

#: The longest mapping file shown in full.
MAX_FILE_CHARS = 200_000


def _files(specs: Any) -> list[dict[str, Any]]:
    from mappings.spec import DEFAULTS_DIR

    out = []
    for name in specs.files:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")[:MAX_FILE_CHARS]
        except OSError as exc:
            text = ""
            log.warning("mappings page: %s cannot be read: %s", path.name, exc.__class__.__name__)
        out.append({"path": str(path), "name": path.name, "anchor": path.name.replace(".", "-"),
                    "default": path.resolve().parent == DEFAULTS_DIR, "lines": text.splitlines()})
    return out


def _money(amount: Any, currency: str | None) -> Any:
    if amount is None or currency is None:
        return amount
    return money_of(amount, currency)


def _view(preview: Any) -> dict[str, Any]:
    command = preview.command or {}
    data = dict(command.get("data") or {})
    items = data.pop("items", None)
    currency = preview.currency
    return {"p": preview, "command": command.get("command"), "key": command.get("key"),
            "fields": _flatten(data), "items": items or [],
            "lines": [{"line": ln, "amount": _money(ln.amount, currency), "unit_price": _money(ln.unit_price, currency)}
                      for ln in preview.invoice_lines],
            "totals": {k: _money(v, currency) if k in ("subtotal", "discount", "tax", "total", "credit_note") else v
                       for k, v in preview.invoice_totals.items()},
            "mrr_before": _money(preview.mrr_before, currency), "mrr_after": _money(preview.mrr_after, currency),
            "mrr_delta": _money(preview.mrr_after - preview.mrr_before, currency)
            if preview.mrr_before is not None and preview.mrr_after is not None else None}


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


@blueprint.get("/")
@admin_only
def show() -> tuple[str, int]:
    from connector.salesforce.errors import SalesforceError
    from connector.sync.pull import PullError, check_mappings, preview_record
    from mappings.spec import load_specs

    services = current_app.extensions["billsync"]
    settings = services.settings
    specs = load_specs(settings.mappings_dir)
    connected = settings.sf_auth != "none"
    errors: list[str] = []
    problems = list(specs.problems)
    checked = False
    if request.args.get("check") and connected:
        try:
            specs, problems = check_mappings(services)
            checked = True
        except SalesforceError as exc:
            errors.append(_("The org could not be read: %(reason)s", reason=exc.message))
    elif request.args.get("check"):
        errors.append(_("Salesforce is not configured (SF_AUTH=none): the files cannot be checked against an org."))
    record_id = (request.args.get("record_id") or "").strip()[:40]
    previews: list[dict[str, Any]] = []
    if record_id and not connected:
        errors.append(_("Salesforce is not configured (SF_AUTH=none): there is no record to preview."))
    elif record_id:
        try:
            previews = [_view(p) for p in preview_record(services, record_id)]
        except PullError as exc:
            errors.extend(exc.lines)
        except SalesforceError as exc:
            errors.append(_("The org could not be read: %(reason)s", reason=exc.message))
    status = 422 if errors else 200
    return render_template("console/mappings/show.html", files=_files(specs), problems=problems, checked=checked,
                           connected=connected, record_id=record_id, previews=previews,
                           error="; ".join(errors) or None, specs=specs), status
