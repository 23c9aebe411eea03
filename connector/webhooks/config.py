"""What the webhook endpoints need to know, built once by the wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.settings import Settings


@dataclass(frozen=True)
class WebhookConfig:
    """Webhook settings.

    - ``org_id``: the Salesforce org allowed to send Outbound Messages (15 or 18
      characters); ``None`` refuses every Outbound Message (503, nothing stored).
    - ``outbound_token``: when set, Outbound Messages must be posted to
      ``/webhooks/salesforce/outbound-message/<token>``.
    - ``basic_user``/``basic_password``: when set, Outbound Messages must carry
      HTTP basic auth with them.
    - ``cdc_secret``: the HMAC-SHA256 key of ``X-Billsync-Signature``; ``None``
      refuses every CDC post (503).
    - ``cdc_replay_window_seconds``: how far the signature timestamp may be from now.
    - ``max_body_bytes``: larger bodies get a 413 and are not read.
    """

    org_id: str | None = None
    outbound_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None
    cdc_secret: str | None = None
    cdc_replay_window_seconds: int = 300
    max_body_bytes: int = 1_048_576

    @property
    def requires_basic_auth(self) -> bool:
        return self.basic_user is not None or self.basic_password is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """Read the webhook fields of ``Settings`` (``SF_ORG_ID``, ``WEBHOOK_TOKEN``,
        ``WEBHOOK_BASIC_USER``, ``WEBHOOK_BASIC_PASSWORD``, ``CDC_HMAC_SECRET``,
        ``CDC_REPLAY_WINDOW_SECONDS``, ``WEBHOOK_MAX_BODY_BYTES``)."""
        return cls(
            org_id=settings.sf_org_id or None,
            outbound_token=settings.webhook_token or None,
            basic_user=settings.webhook_basic_user or None,
            basic_password=settings.webhook_basic_password or None,
            cdc_secret=settings.cdc_hmac_secret or None,
            cdc_replay_window_seconds=settings.cdc_replay_window_seconds,
            max_body_bytes=settings.webhook_max_body_bytes,
        )
