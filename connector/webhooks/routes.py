"""HTTP endpoints for Salesforce change notifications. Thin: read a bounded body,
call one use case in one transaction, answer only after the commit.

- ``POST /webhooks/salesforce/outbound-message[/<token>]``: SOAP in, Ack or SOAP Fault out.
- ``POST /webhooks/salesforce/cdc``: signed JSON change events in, JSON out.

Statuses: 400 malformed, 401 bad or missing secret/signature, 403 wrong org,
408 body incomplete (sent too slowly), 413 body too large, 415 wrong content type,
503 cannot store now (retry). Never 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ClientDisconnected

from connector.database import transaction
from connector.webhooks.config import WebhookConfig
from connector.webhooks.errors import (
    BodyTooLargeError,
    IncompleteBodyError,
    UnauthenticatedError,
    UnsupportedContentTypeError,
    WebhookError,
    WebhookUnavailableError,
)
from connector.webhooks.outbound_message import ACK, soap_fault
from connector.webhooks.receive import receive_cdc_events, receive_outbound_message

log = logging.getLogger("billsync.webhooks")

EXTENSION = "billsync.webhooks"
SOAP_TYPES = ("text/xml", "application/soap+xml")
JSON_TYPES = ("application/json",)
_READ_CHUNK = 64 * 1024

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks/salesforce")
#: The path segment after these prefixes is a secret (``WEBHOOK_TOKEN``): the request log hides it.
SECRET_PATH_PREFIXES = ("/webhooks/salesforce/outbound-message/",)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebhookRuntime:
    """What the endpoints read on every request: replaceable in tests (config, clock)."""

    config: WebhookConfig
    clock: Callable[[], datetime] = field(default=utc_now)


def install_webhooks(app: Flask, config: WebhookConfig, clock: Callable[[], datetime] = utc_now) -> None:
    app.extensions[EXTENSION] = WebhookRuntime(config, clock)
    app.register_blueprint(blueprint)


def _runtime() -> WebhookRuntime:
    return current_app.extensions[EXTENSION]


def _read_body(limit: int, accepted_types: tuple[str, ...]) -> bytes:
    """The raw body, refused before reading when it declares more than ``limit`` bytes
    and while reading when it turns out larger (chunked or lying Content-Length); 408
    when it stops short: the client went away, or was cut off for sending too slowly
    (the web worker's read deadline, ``connector.gunicorn_worker``)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLargeError(f"body of {declared} bytes exceeds the {limit}-byte limit")
    if request.mimetype not in accepted_types:
        shown = request.mimetype or "none"
        raise UnsupportedContentTypeError(f"content type {shown[:80]!r} not accepted; send "
                                          + " or ".join(accepted_types))
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = request.stream.read(min(_READ_CHUNK, limit + 1 - total))
        except (ClientDisconnected, OSError):
            chunk = None
        if not chunk:
            if chunk is None or (declared is not None and total < declared):
                raise IncompleteBodyError(f"the body stopped after {total} bytes: it did not arrive "
                                          "in full within the read timeout")
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise BodyTooLargeError(f"body exceeds the {limit}-byte limit")
    return b"".join(chunks)


def _log_refusal(kind: str, exc: WebhookError) -> None:
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    log.log(level, "%s refused: %s %s", kind, exc.status, exc.message,
            extra={"fields": {"request_id": g.get("request_id"), "status": exc.status, "reason": exc.message}})


def _storage_unavailable(kind: str) -> WebhookUnavailableError:
    log.exception("%s could not be stored", kind, extra={"fields": {"request_id": g.get("request_id")}})
    return WebhookUnavailableError("billsync could not store the notification; retry later")


@blueprint.post("/outbound-message", defaults={"token": None})
@blueprint.post("/outbound-message/<token>")
def outbound_message(token: str | None) -> Response:
    runtime = _runtime()
    config = runtime.config
    try:
        raw = _read_body(config.max_body_bytes, SOAP_TYPES)
        try:
            with transaction(current_app.extensions["billsync"].engine) as session:
                receive_outbound_message(session, raw, config, runtime.clock(), path_token=token,
                                         authorization=request.headers.get("Authorization"))
        except SQLAlchemyError:
            raise _storage_unavailable("outbound message") from None
    except WebhookError as exc:
        _log_refusal("outbound message", exc)
        response = Response(soap_fault(exc.message, server=exc.status >= 500), status=exc.status,
                            content_type="text/xml; charset=utf-8")
        if isinstance(exc, UnauthenticatedError) and config.requires_basic_auth:
            response.headers["WWW-Authenticate"] = 'Basic realm="billsync webhooks"'
        return response
    return Response(ACK, status=200, content_type="text/xml; charset=utf-8")


@blueprint.post("/cdc")
def cdc_events() -> Response:
    runtime = _runtime()
    config = runtime.config
    try:
        raw = _read_body(config.max_body_bytes, JSON_TYPES)
        try:
            with transaction(current_app.extensions["billsync"].engine) as session:
                receipt = receive_cdc_events(session, raw, request.headers,  # type: ignore[arg-type]  # a Mapping
                                             config, runtime.clock())
        except SQLAlchemyError:
            raise _storage_unavailable("change events") from None
    except WebhookError as exc:
        _log_refusal("change events", exc)
        response = jsonify(error=exc.code, message=exc.message, request_id=g.get("request_id"))
        response.status_code = exc.status
        return response
    return jsonify(stored=receipt.stored, duplicates=receipt.duplicates)
