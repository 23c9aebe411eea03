"""OAuth token endpoint, bearer checks, expiry and re-authentication, TLS trust."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from sfsandbox.server import SandboxServer, VerifyingSession


def token(https, sandbox, **form):
    return https.post(f"{sandbox.url}/services/oauth2/token", data=form)


def test_client_credentials_returns_the_documented_fields(https, sandbox):
    creds = sandbox.credentials
    response = token(https, sandbox, grant_type="client_credentials", client_id=creds.client_id,
                     client_secret=creds.client_secret)
    assert response.status_code == 200
    body = response.json()
    assert {"access_token", "instance_url", "id", "token_type", "issued_at"} <= set(body)
    assert body["instance_url"] == sandbox.url and body["token_type"] == "Bearer"
    assert body["id"] == f"{sandbox.url}/id/{sandbox.org_id}/{sandbox.user_id}"
    assert body["issued_at"].isdigit()


def test_client_credentials_through_http_basic(https, sandbox):
    creds = sandbox.credentials
    response = https.post(f"{sandbox.url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(creds.client_id, creds.client_secret))
    assert response.status_code == 200


def test_a_bad_secret_is_400_invalid_client(https, sandbox):
    response = token(https, sandbox, grant_type="client_credentials", client_id=sandbox.credentials.client_id,
                     client_secret="wrong")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}


def test_password_grant(https, sandbox):
    creds = sandbox.credentials
    ok = token(https, sandbox, grant_type="password", client_id=creds.client_id, client_secret=creds.client_secret,
               username=creds.username, password=creds.password + creds.security_token)
    bad = token(https, sandbox, grant_type="password", client_id=creds.client_id, client_secret=creds.client_secret,
                username=creds.username, password=creds.password)
    assert ok.status_code == 200 and bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


def _assertion(sandbox, **overrides):
    claims = {"iss": sandbox.credentials.client_id, "sub": sandbox.credentials.username,
              "aud": "https://login.salesforce.com", "exp": datetime.now(UTC) + timedelta(minutes=3)}
    claims.update(overrides)
    return jwt.encode(claims, sandbox.jwt_private_key_path.read_bytes(), algorithm="RS256")


def test_jwt_bearer_grant_then_rest_calls_work(https, sandbox):
    response = token(https, sandbox, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                     assertion=_assertion(sandbox, aud=sandbox.url))
    assert response.status_code == 200
    sf = Salesforce(instance_url=response.json()["instance_url"], session_id=response.json()["access_token"],
                    session=https, version="59.0")
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


@pytest.mark.parametrize("overrides", [{"aud": "https://evil.example"}, {"sub": "someone@else"},
                                       {"exp": datetime.now(UTC) - timedelta(minutes=1)}])
def test_jwt_bearer_rejects_bad_assertions(https, sandbox, overrides):
    response = token(https, sandbox, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                     assertion=_assertion(sandbox, **overrides))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_bad_token_is_401_invalid_session_id_in_a_list(make_sf):
    sf = make_sf(token="00Dxx!nonsense")
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM Account")
    assert err.value.status == 401
    assert err.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_forced_expiry_then_reauthentication(https, sandbox, make_sf):
    sf = make_sf()
    sf.Account.create({"Name": "A"})
    sandbox.auth.expire_all()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account")
    creds = sandbox.credentials
    fresh = token(https, sandbox, grant_type="client_credentials", client_id=creds.client_id,
                  client_secret=creds.client_secret).json()["access_token"]
    assert make_sf(token=fresh).query("SELECT Id FROM Account")["totalSize"] == 1


def test_tokens_expire_after_their_lifetime(tmp_path):
    with SandboxServer(state_dir=tmp_path, token_lifetime=0.3) as short:
        session = VerifyingSession(short.ca_path)
        sf = Salesforce(instance_url=short.url, session_id=short.issue_token()["access_token"], session=session)
        assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
        time.sleep(0.4)
        with pytest.raises(SalesforceExpiredSession):
            sf.query("SELECT Id FROM Account")


def test_https_only_with_the_sandbox_ca(sandbox, monkeypatch):
    # This machine sets REQUESTS_CA_BUNDLE to the system CAs, which beats Session.verify:
    # a plain session configured with the sandbox CA still fails; VerifyingSession works.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    naive = requests.Session()
    naive.verify = str(sandbox.ca_path)
    with pytest.raises(requests.exceptions.SSLError):
        naive.get(f"{sandbox.url}/services/data/")
    assert VerifyingSession(sandbox.ca_path).get(f"{sandbox.url}/services/data/").status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(sandbox.url.replace("https://", "http://") + "/services/data/", timeout=5)


def test_admin_api_needs_the_admin_token(https, sandbox):
    assert https.get(f"{sandbox.url}/_sandbox/stats").status_code == 401
    response = https.get(f"{sandbox.url}/_sandbox/stats", headers={"X-Sandbox-Admin-Token": sandbox.admin_token})
    assert response.status_code == 200 and response.json()["org_id"] == sandbox.org_id
