"""The session: explicit timeouts, SF_CA_BUNDLE beating REQUESTS_CA_BUNDLE, usage from Sforce-Limit-Info."""

from __future__ import annotations

import pytest
import responses

from connector.salesforce.transport import ApiUsage, SalesforceSession, parse_limit_info

URL = "https://acme.my.salesforce.com/services/data/v59.0/limits/"


@pytest.mark.parametrize(("header", "expected"), [
    ("api-usage=10018/100000", ApiUsage(10018, 100000)),
    ("api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)", ApiUsage(25, 5000)),
    ("api-usage=1/15000; api-bursts=1/750", ApiUsage(1, 15000)),
    ("per-app-api-usage=17/250(appName=x)", None),
    ("", None),
    (None, None),
])
def test_limit_info_parsing(header, expected):
    assert parse_limit_info(header) == expected


def test_the_pinned_ca_bundle_wins_over_requests_ca_bundle(monkeypatch, tmp_path, mock):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca = tmp_path / "sandbox-ca.pem"
    ca.write_text("not used by responses")
    mock.add(responses.GET, URL, json={})

    SalesforceSession(timeout_seconds=30, ca_bundle=ca).get(URL)

    assert mock.calls[0].request.req_kwargs["verify"] == str(ca)


def test_without_a_pinned_bundle_verification_stays_on(mock):
    mock.add(responses.GET, URL, json={})
    SalesforceSession(timeout_seconds=30).get(URL)
    assert mock.calls[0].request.req_kwargs["verify"] not in (False, None)


def test_every_request_gets_a_connect_and_read_timeout_unless_the_caller_chose(mock):
    mock.add(responses.GET, URL, json={})
    session = SalesforceSession(timeout_seconds=5)
    session.get(URL)
    session.get(URL, timeout=1)
    assert [c.request.req_kwargs["timeout"] for c in mock.calls] == [(5, 5), 1]
    assert SalesforceSession(timeout_seconds=60).default_timeout == (10, 60)


def test_usage_and_calls_are_counted(mock):
    mock.add(responses.GET, URL, json={}, headers={"Sforce-Limit-Info": "api-usage=7/100"})
    mock.add(responses.GET, URL, json={})
    session = SalesforceSession(timeout_seconds=5)
    session.get(URL)
    session.get(URL)  # no header: the last known usage stays
    assert session.calls_made == 2
    assert session.api_usage == ApiUsage(7, 100)
