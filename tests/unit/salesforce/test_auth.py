"""Each auth mode sends what Salesforce's token endpoint expects, and failures are explained."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.salesforce.auth import default_jwt_audience
from connector.salesforce.errors import SalesforceAuthError, SalesforceRequestError


def form(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@pytest.fixture
def rsa_key(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "server.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path, key.public_key()


def test_client_credentials_posts_the_grant_to_the_login_url(harness):
    h = harness
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={})
    h.client.limits()
    token_call = h.calls_to("/services/oauth2/token")[0]
    assert token_call.request.url == h.TOKEN_URL
    assert form(token_call) == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    assert h.client.instance_url == h.INSTANCE


def test_jwt_bearer_assertion_is_rs256_with_the_documented_claims(make_harness, rsa_key):
    path, public_key = rsa_key
    h = make_harness("jwt", username="integration@acme.example", private_key_file=path)
    h.token()
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={})
    h.client.limits()

    sent = form(h.calls_to("/oauth2/token")[0])
    assert sent["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert set(sent) == {"grant_type", "assertion"}
    # The login URL is a My Domain, but Salesforce expects the production audience.
    claims = jwt.decode(sent["assertion"], public_key, algorithms=["RS256"], audience="https://login.salesforce.com",
                        options={"verify_exp": False})
    assert claims["iss"] == "cid"
    assert claims["sub"] == "integration@acme.example"
    assert claims["exp"] == int((h.clock.now + timedelta(minutes=3)).timestamp())
    assert jwt.get_unverified_header(sent["assertion"])["alg"] == "RS256"


def test_jwt_audience_can_be_overridden(make_harness, rsa_key):
    path, public_key = rsa_key
    h = make_harness("jwt", username="u", private_key_file=path, jwt_audience="https://test.salesforce.com")
    assertion = h.client.authenticator.jwt_assertion()
    assert jwt.decode(assertion, public_key, algorithms=["RS256"], audience="https://test.salesforce.com",
                      options={"verify_exp": False})["aud"] == "https://test.salesforce.com"


@pytest.mark.parametrize(("login_url", "audience"), [
    ("https://login.salesforce.com", "https://login.salesforce.com"),
    ("https://test.salesforce.com/", "https://test.salesforce.com"),
    ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
    ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
    ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
])
def test_default_jwt_audience(login_url, audience):
    assert default_jwt_audience(login_url) == audience


def test_jwt_with_a_file_that_is_not_a_key_fails_clearly(make_harness, tmp_path):
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    h = make_harness("jwt", username="u", private_key_file=bad)
    with pytest.raises(SalesforceAuthError, match="SF_PRIVATE_KEY_FILE is not a usable RSA private key"):
        h.client.limits()
    assert h.client.calls_made == 0


def test_password_flow_appends_the_security_token(make_harness):
    h = make_harness("password", username="u@acme.example", password="pw", security_token="TOK")
    h.token()
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={})
    h.client.limits()
    assert form(h.calls_to("/oauth2/token")[0]) == {
        "grant_type": "password", "client_id": "cid", "client_secret": "csecret", "username": "u@acme.example",
        "password": "pwTOK"}


def test_session_mode_uses_the_given_token_without_logging_in(make_harness):
    h = make_harness("session", instance_url="https://acme.my.salesforce.com", access_token="PRE")
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={})
    h.client.limits()
    assert [c.request.url for c in h.mock.calls] == [f"{h.DATA}/limits/"]
    assert h.mock.calls[0].request.headers["Authorization"] == "Bearer PRE"


def test_a_refused_login_names_the_oauth_error_and_is_not_retried(make_harness):
    h = make_harness()
    h.mock.add(responses.POST, h.TOKEN_URL, status=400,
               json={"error": "invalid_client", "error_description": "invalid client credentials"})
    with pytest.raises(SalesforceAuthError) as err:
        h.client.limits()
    assert str(err.value) == ("INVALID_CLIENT: https://acme.my.salesforce.com refused the client_credentials "
                              "login: invalid_client (invalid client credentials)")
    assert h.client.calls_made == 1
    assert "csecret" not in str(err.value)


def test_a_token_endpoint_outage_is_retried(make_harness):
    h = make_harness()
    h.mock.add(responses.POST, h.TOKEN_URL, status=503, body="down")
    h.mock.add(responses.POST, h.TOKEN_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    h.token()
    h.mock.add(responses.GET, f"{h.DATA}/limits/", json={})
    h.client.limits()
    assert len(h.calls_to("/oauth2/token")) == 3
    assert h.sleeps == [1.0, 2.0]


def test_login_to_another_org_than_sf_org_id_is_refused(make_harness):
    h = make_harness(org_id="00D000000000001AAA")
    h.token()
    with pytest.raises(SalesforceAuthError, match="logged in to org 00D5g000004XyzAEAS, but SF_ORG_ID is"):
        h.client.limits()


def test_an_http_instance_url_is_refused_not_rewritten(make_harness):
    h = make_harness()
    h.mock.add(responses.POST, h.TOKEN_URL, json={"access_token": "T", "instance_url": "http://acme.example"})
    with pytest.raises(SalesforceRequestError, match="not an https URL"):
        h.client.limits()


def test_secrets_do_not_appear_in_the_config_repr(make_harness):
    h = make_harness("password", username="u", password="hunter2", security_token="TOK")
    assert "hunter2" not in repr(h.config) and "csecret" not in repr(h.config) and "TOK" not in repr(h.config)
