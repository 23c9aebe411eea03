"""SF_* settings: defaults, one line per problem, secrets hidden."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.settings import VARIABLES, SettingsError, load_settings


def test_defaults_leave_salesforce_unconfigured_with_safe_limits():
    s = load_settings({})
    assert s.sf_auth == "none"
    assert s.sf_login_url == "https://login.salesforce.com"
    assert (s.sf_api_version, s.sf_timeout_seconds, s.sf_retry_attempts, s.sf_retry_max_seconds) == ("59.0", 30, 5, 30)
    assert (s.sf_api_budget_share, s.sf_limit_pause_seconds) == (Decimal("0.5"), 900)


@pytest.mark.parametrize(("env", "problems"), [
    ({"SF_AUTH": "jwt", "SF_CLIENT_ID": "c"},
     ["SF_USERNAME: required when SF_AUTH=jwt", "SF_PRIVATE_KEY_FILE: required when SF_AUTH=jwt"]),
    ({"SF_AUTH": "session"},
     ["SF_INSTANCE_URL: required when SF_AUTH=session", "SF_ACCESS_TOKEN: required when SF_AUTH=session"]),
    ({"SF_AUTH": "password", "SF_CLIENT_ID": "c", "SF_CLIENT_SECRET": "s", "SF_USERNAME": "u",
      "SF_LOGIN_URL": "https://test.salesforce.com"},
     ["SF_PASSWORD: required when SF_AUTH=password"]),
    ({"SF_AUTH": "client_credentials", "SF_CLIENT_ID": "c", "SF_CLIENT_SECRET": "s"},
     ["SF_LOGIN_URL: the client credentials flow needs your My Domain URL (https://yourdomain.my.salesforce.com), "
      "not login.salesforce.com"]),
    ({"SF_LOGIN_URL": "http://login.salesforce.com"},
     ["SF_LOGIN_URL: 'http://login.salesforce.com' must use https:// (Salesforce is only reached over TLS)"]),
    ({"SF_API_BUDGET_SHARE": "1.5"}, ["SF_API_BUDGET_SHARE: '1.5' must be greater than 0 and at most 1 (0.5 means half)"]),
    ({"SF_API_VERSION": "45.0"}, ["SF_API_VERSION: 45.0 is too old; billsync needs 46.0 or later (upsert results)"]),
    ({"SF_AUTH": "jwt", "SF_CLIENT_ID": "c", "SF_USERNAME": "u", "SF_PRIVATE_KEY_FILE": "/nonexistent/key.pem"},
     ["SF_PRIVATE_KEY_FILE: no such file: /nonexistent/key.pem"]),
    ({"SF_AUTH": "oauth"}, ["SF_AUTH: 'oauth' is not one of client_credentials, jwt, password, session, none"]),
])
def test_one_line_per_problem(env, problems):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert err.value.problems == problems


def test_a_complete_jwt_configuration_loads(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("x")
    s = load_settings({"SF_AUTH": "jwt", "SF_CLIENT_ID": "c", "SF_USERNAME": "u", "SF_PRIVATE_KEY_FILE": str(key),
                       "SF_LOGIN_URL": "https://acme.my.salesforce.com/", "SF_ORG_ID": "00D5g000004XyzA"})
    assert (s.sf_private_key_file, s.sf_login_url, s.sf_org_id) == (key, "https://acme.my.salesforce.com",
                                                                     "00D5g000004XyzA")


def test_credentials_are_marked_secret():
    secret = {v.name for v in VARIABLES if v.secret}
    assert {"SF_CLIENT_SECRET", "SF_PASSWORD", "SF_SECURITY_TOKEN", "SF_ACCESS_TOKEN"} <= secret
