"""What the webhook endpoints need to know, built once by the wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    def from_settings(cls, settings: Any) -> WebhookConfig:
        """Read the webhook fields of ``Settings`` (``SF_ORG_ID``, ``WEBHOOK_TOKEN``,
        ``WEBHOOK_BASIC_USER``, ``WEBHOOK_BASIC_PASSWORD``, ``CDC_HMAC_SECRET``,
        ``CDC_REPLAY_WINDOW_SECONDS``, ``WEBHOOK_MAX_BODY_BYTES``); absent fields take
        the defaults above."""
        defaults = cls()

        def read(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None or value == "" else value

        return cls(
            org_id=read("sf_org_id", None),
            outbound_token=read("webhook_token", None),
            basic_user=read("webhook_basic_user", None),
            basic_password=read("webhook_basic_password", None),
            cdc_secret=read("cdc_hmac_secret", None),
            cdc_replay_window_seconds=int(read("cdc_replay_window_seconds", defaults.cdc_replay_window_seconds)),
            max_body_bytes=int(read("webhook_max_body_bytes", defaults.max_body_bytes)),
        )
