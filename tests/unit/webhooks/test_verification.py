"""Org id, path token, basic auth and CDC signature checks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from connector.settings import load_settings
from connector.webhooks.config import WebhookConfig
from connector.webhooks.errors import (
    UnauthenticatedError,
    UnknownEndpointError,
    WebhookUnavailableError,
    WrongOrganizationError,
)
from connector.webhooks.verification import (
    check_organization,
    check_outbound_credentials,
    is_same_org,
    sign_cdc,
    verify_cdc_signature,
)
from tests.support.webhook_messages import NOW, ORG_15, ORG_18, OTHER_ORG, SECRET

BODY = b'{"ChangeEventHeader": {}}'
AT_NOW = datetime.fromtimestamp(NOW, UTC)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("configured, received", [(ORG_18, ORG_18), (ORG_15, ORG_18), (ORG_18, ORG_15),
                                                  (ORG_15, ORG_15)])
def test_the_15_and_18_character_forms_of_our_org_match(configured, received):
    assert is_same_org(configured, received)
    check_organization(WebhookConfig(org_id=configured), received)


@pytest.mark.parametrize("received", [OTHER_ORG, ORG_18.lower(), ORG_15[:14], "", ORG_18 + "X"])
def test_another_org_or_a_case_changed_id_does_not_match(received):
    with pytest.raises(WrongOrganizationError):
        check_organization(WebhookConfig(org_id=ORG_18), received)


def test_without_a_configured_org_outbound_messages_wait_for_configuration():
    with pytest.raises(WebhookUnavailableError, match="SF_ORG_ID"):
        check_organization(WebhookConfig(), ORG_18)


def test_path_token_is_required_when_configured_and_unknown_otherwise():
    config = WebhookConfig(outbound_token="s3cret")
    check_outbound_credentials(config, "s3cret", None)
    for token, reason in ((None, "missing secret token"), ("wrong", "wrong secret token"),
                          ("s3crét", "wrong secret token"), ("\udcff", "wrong secret token")):
        with pytest.raises(UnauthenticatedError, match=reason):
            check_outbound_credentials(config, token, None)
    check_outbound_credentials(WebhookConfig(), None, None)
    with pytest.raises(UnknownEndpointError):
        check_outbound_credentials(WebhookConfig(), "anything", None)


def test_basic_auth_is_required_when_configured():
    config = WebhookConfig(basic_user="sf", basic_password="pa:ss")
    check_outbound_credentials(config, None, basic("sf", "pa:ss"))
    for header in (None, "", "Bearer x", basic("sf", "wrong"), basic("other", "pa:ss"), "Basic !!!",
                   "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"\xff:x").decode()):
        with pytest.raises(UnauthenticatedError):
            check_outbound_credentials(config, None, header)


def test_token_and_basic_auth_together_need_both():
    config = WebhookConfig(outbound_token="t", basic_user="u", basic_password="p")
    check_outbound_credentials(config, "t", basic("u", "p"))
    with pytest.raises(UnauthenticatedError):
        check_outbound_credentials(config, "t", None)
    with pytest.raises(UnauthenticatedError):
        check_outbound_credentials(config, None, basic("u", "p"))


def test_a_signature_over_the_raw_body_within_the_window_is_accepted():
    config = WebhookConfig(cdc_secret=SECRET)
    verify_cdc_signature(config, sign_cdc(SECRET, BODY, NOW), BODY, AT_NOW)
    # The window is inclusive: exactly 300 s either side is accepted, 301 s is not.
    verify_cdc_signature(config, sign_cdc(SECRET, BODY, NOW - 300), BODY, AT_NOW)
    verify_cdc_signature(config, sign_cdc(SECRET, BODY, NOW + 300), BODY, AT_NOW)
    for stamp in (NOW - 301, NOW + 301):
        with pytest.raises(UnauthenticatedError, match="outside the 300 s replay window"):
            verify_cdc_signature(config, sign_cdc(SECRET, BODY, stamp), BODY, AT_NOW)
    late = AT_NOW + timedelta(seconds=20)
    with pytest.raises(UnauthenticatedError, match="outside the 10 s replay window"):
        verify_cdc_signature(WebhookConfig(cdc_secret=SECRET, cdc_replay_window_seconds=10),
                             sign_cdc(SECRET, BODY, NOW), BODY, late)


def test_a_rotated_secret_can_send_two_macs():
    header = sign_cdc("old", BODY, NOW) + "," + sign_cdc(SECRET, BODY, NOW).split(",")[1]
    verify_cdc_signature(WebhookConfig(cdc_secret=SECRET), header, BODY, AT_NOW)


@pytest.mark.parametrize("header, reason", [
    (None, "missing X-Billsync-Signature"),
    ("", "missing X-Billsync-Signature"),
    ("v1=abc", "malformed"),
    (f"t={NOW}", "malformed"),
    (f"t=soon,v1={'0' * 64}", "malformed"),
    (f"t={NOW},v1={'0' * 64}", "bad signature"),
    (sign_cdc("other-secret", BODY, NOW), "bad signature"),
    (sign_cdc(SECRET, BODY + b" ", NOW), "bad signature"),
    (sign_cdc(SECRET, BODY, NOW + 1).replace(f"t={NOW + 1}", f"t={NOW}"), "bad signature"),
])
def test_a_missing_malformed_or_wrong_signature_is_refused(header, reason):
    with pytest.raises(UnauthenticatedError, match=reason):
        verify_cdc_signature(WebhookConfig(cdc_secret=SECRET), header, BODY, AT_NOW)


def test_without_a_secret_cdc_events_wait_for_configuration():
    with pytest.raises(WebhookUnavailableError, match="CDC_HMAC_SECRET"):
        verify_cdc_signature(WebhookConfig(), sign_cdc(SECRET, BODY, NOW), BODY, AT_NOW)


def test_config_reads_the_settings_fields_and_falls_back_to_defaults():
    settings = load_settings({"SF_ORG_ID": ORG_15, "WEBHOOK_TOKEN": "tok", "CDC_REPLAY_WINDOW_SECONDS": "60"})
    config = WebhookConfig.from_settings(settings)
    assert (config.org_id, config.outbound_token, config.cdc_replay_window_seconds) == (ORG_15, "tok", 60)
    assert config.cdc_secret is None and config.max_body_bytes == 1_048_576 and not config.requires_basic_auth
