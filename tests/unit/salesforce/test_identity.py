"""What billsync learns about itself at login, and how it labels its own writes."""

from __future__ import annotations

import responses

from connector.salesforce.auth import _org_of, _user_of
from connector.salesforce.transport import SalesforceSession

IDENTITY = "https://login.salesforce.com/id/00D7F00000107XsUAI/0057F000001hv4SQAQ"


def test_the_identity_url_names_the_org_and_the_integration_user():
    assert _org_of(IDENTITY) == "00D7F00000107XsUAI"
    assert _user_of(IDENTITY) == "0057F000001hv4SQAQ"
    assert _user_of("https://login.salesforce.com/services/oauth2/userinfo") is None
    assert _user_of(None) is None


@responses.activate
def test_every_call_names_billsync_as_the_client_so_cdc_echoes_can_be_skipped():
    responses.get("https://example.my.salesforce.com/services/data/v59.0/limits/", json={})
    session = SalesforceSession(timeout_seconds=5, client_name="3MVG9billsync")
    session.get("https://example.my.salesforce.com/services/data/v59.0/limits/")
    assert responses.calls[0].request.headers["Sforce-Call-Options"] == "client=3MVG9billsync"


@responses.activate
def test_no_client_option_without_a_client_id():
    responses.get("https://example.my.salesforce.com/x", json={})
    SalesforceSession(timeout_seconds=5).get("https://example.my.salesforce.com/x")
    assert "Sforce-Call-Options" not in responses.calls[0].request.headers
