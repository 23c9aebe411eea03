"""Liveness and readiness probes (docs/operations.md, *Probes*).

Both are unauthenticated, so they say what is wrong without any detail of the
infrastructure: the database's host, port, role or driver message go to the log
only, under the request's id.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify

from connector.database import check_ready

blueprint = Blueprint("health", __name__)
log = logging.getLogger("billsync.health")

UNREACHABLE = "database unreachable"
NOT_MIGRATED = "not migrated: run billsync db upgrade"


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    services = current_app.extensions["billsync"]
    problem = check_ready(services.engine)
    if problem:
        log.warning("not ready: %s", problem, extra={"fields": {"request_id": g.get("request_id")}})
        reason = NOT_MIGRATED if "upgrade" in problem else UNREACHABLE
        response = jsonify(status="unavailable", reason=reason)
        response.status_code = 503
        return response
    return jsonify(status="ready")
