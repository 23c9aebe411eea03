"""Why a notification was refused, classified by what the sender should do.

``WebhookRejectedError`` (4xx): the request itself is wrong; resending it unchanged
will fail again. ``WebhookUnavailableError`` (503): billsync cannot take it now
(storage down, not configured); the sender should retry later. Either way,
nothing was stored.
"""

from __future__ import annotations


class WebhookError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class WebhookRejectedError(WebhookError):
    """The request is wrong: the client must change it."""


class MalformedNotificationError(WebhookRejectedError):
    status = 400
    code = "malformed"


class UnauthenticatedError(WebhookRejectedError):
    status = 401
    code = "unauthenticated"


class WrongOrganizationError(WebhookRejectedError):
    status = 403
    code = "wrong_organization"


class UnknownEndpointError(WebhookRejectedError):
    status = 404
    code = "not_found"


class IncompleteBodyError(WebhookRejectedError):
    """The body did not arrive in full: sent too slowly (``WEB_READ_TIMEOUT_SECONDS``) or cut."""

    status = 408
    code = "request_timeout"


class BodyTooLargeError(WebhookRejectedError):
    status = 413
    code = "payload_too_large"


class UnsupportedContentTypeError(WebhookRejectedError):
    status = 415
    code = "unsupported_media_type"


class WebhookUnavailableError(WebhookError):
    """billsync cannot store the notification now: retry later."""

    status = 503
    code = "unavailable"
