"""Is this notification from our org, and from someone holding our secret?

Salesforce does not sign Outbound Messages: billsync checks the OrganizationId
and, when configured, a secret token in the URL path and/or HTTP basic auth. CDC
events come through a relay (ours or an Apex callout) that signs them:
``X-Billsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Every secret is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime

from connector.webhooks.config import WebhookConfig
from connector.webhooks.errors import (
    UnauthenticatedError,
    UnknownEndpointError,
    WebhookUnavailableError,
    WrongOrganizationError,
)
from connector.webhooks.identifiers import is_salesforce_id

SIGNATURE_HEADER = "X-Billsync-Signature"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


def is_same_org(configured: str, received: str) -> bool:
    """15- and 18-character forms of one id match: the first 15 characters are the
    id (case-sensitive); the 3-character suffix only encodes their case."""
    return is_salesforce_id(configured) and is_salesforce_id(received) and configured[:15] == received[:15]


def check_organization(config: WebhookConfig, received: str) -> None:
    if not config.org_id:
        raise WebhookUnavailableError("billsync has no Salesforce org id configured (SF_ORG_ID); "
                                      "refusing Outbound Messages until it has")
    if not is_same_org(config.org_id, received):
        raise WrongOrganizationError("OrganizationId does not match the org billsync is connected to")


def _same_secret(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogatepass"))


def check_outbound_credentials(config: WebhookConfig, path_token: str | None, authorization: str | None) -> None:
    """Every configured credential must be presented: the path token and/or basic auth."""
    if config.outbound_token is None:
        if path_token is not None:
            raise UnknownEndpointError("no secret token is configured for this endpoint; "
                                       "post to /webhooks/salesforce/outbound-message")
    elif path_token is None:
        raise UnauthenticatedError("missing secret token: post to /webhooks/salesforce/outbound-message/<token>")
    elif not _same_secret(config.outbound_token, path_token):
        raise UnauthenticatedError("wrong secret token")
    if config.requires_basic_auth:
        user, password = _basic_credentials(authorization)
        same_user = _same_secret(config.basic_user or "", user)
        same_password = _same_secret(config.basic_password or "", password)
        if not (same_user and same_password):
            raise UnauthenticatedError("wrong basic auth user or password")


def _basic_credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization:
        raise UnauthenticatedError("missing HTTP basic auth")
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise UnauthenticatedError("HTTP basic auth expected")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise UnauthenticatedError("malformed HTTP basic auth") from exc
    user, colon, password = decoded.partition(":")
    if not colon:
        raise UnauthenticatedError("malformed HTTP basic auth")
    return user, password


def sign_cdc(secret: str, raw: bytes, timestamp: int) -> str:
    """The ``X-Billsync-Signature`` value a relay sends (used by tests and the benchmark)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_cdc_signature(config: WebhookConfig, header: str | None, raw: bytes, now: datetime) -> None:
    """Accept when one ``v1`` MAC matches the raw body and ``t`` is within the replay window."""
    if not config.cdc_secret:
        raise WebhookUnavailableError("billsync has no CDC secret configured (CDC_HMAC_SECRET); "
                                      "refusing change events until it has")
    if not header:
        raise UnauthenticatedError(f"missing {SIGNATURE_HEADER} header")
    timestamp: str | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp) or not macs:
        raise UnauthenticatedError(f"malformed {SIGNATURE_HEADER} header; expected t=<unix seconds>,v1=<hex>")
    expected = sign_cdc(config.cdc_secret, raw, int(timestamp)).partition(",v1=")[2].encode()
    matched = False
    for mac in macs:
        if _HEX_MAC.fullmatch(mac) and hmac.compare_digest(expected, mac.lower().encode()):
            matched = True
    if not matched:
        raise UnauthenticatedError("bad signature: the HMAC does not match the body")
    window = config.cdc_replay_window_seconds
    if abs(now.timestamp() - int(timestamp)) > window:
        raise UnauthenticatedError(f"signature timestamp outside the {window} s replay window")
