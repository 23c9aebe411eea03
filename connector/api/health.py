"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from connector.database import check_ready

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    services = current_app.extensions["billsync"]
    problem = check_ready(services.engine)
    if problem:
        response = jsonify(status="unavailable", reason=problem)
        response.status_code = 503
        return response
    return jsonify(status="ready")
