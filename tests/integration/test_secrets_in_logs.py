"""No secret ever reaches a log, at LOG_LEVEL=debug: the webhook token, the CDC secret,
the connected app's secret, a password or access token from a Salesforce login, and the
password inside DATABASE_URL. Each test runs billsync with known fake secrets, records
every log record (before any formatter could hide anything) and every formatted line,
and looks for each secret in them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from connector import create_app
from connector.cli import cli
from connector.settings import load_settings
from connector.webhooks.routes import EXTENSION
from connector.webhooks.verification import sign_cdc
from tests.support.sandbox import sandbox_environment
from tests.support.webhook_messages import NOW, ORG_18, cdc_body, change_event, opportunity_message

WEBHOOK_TOKEN = "fake-webhook-token-7731"
CDC_HMAC_SECRET = "fake-cdc-hmac-secret-5521"
SF_CLIENT_SECRET = "fake-sf-client-secret-3308"
DB_PASSWORD = "fake-db-password-9904"
WEBHOOK_BASIC_PASSWORD = "fake-basic-password-1187"
FAKE_SECRETS = (WEBHOOK_TOKEN, CDC_HMAC_SECRET, SF_CLIENT_SECRET, DB_PASSWORD, WEBHOOK_BASIC_PASSWORD)


class Recorder(logging.Handler):
    """Every record at DEBUG and above, kept raw and also as the process's formatter writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for handler in logging.getLogger().handlers:
            if handler is not self and handler.formatter is not None:
                self.lines.append(handler.formatter.format(record))

    def text(self) -> str:
        raw = []
        for record in self.records:
            raw.append(record.getMessage())
            raw.append(repr(getattr(record, "fields", {})))
            if record.exc_info:
                raw.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(raw + self.lines)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Call ``start()`` after the app or services are built (building them resets the log handlers)."""
    handler = Recorder()
    root = logging.getLogger()

    def start() -> Recorder:
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        return handler

    handler.start = start  # type: ignore[attr-defined]
    yield handler
    root.removeHandler(handler)


def assert_no_secret(text: str, secrets=FAKE_SECRETS) -> None:
    assert text, "nothing was logged: the check would prove nothing"
    leaked = [secret for secret in secrets if secret and secret in text]
    assert leaked == [], f"secrets in the logs: {leaked}"


def test_the_webhook_endpoints_log_no_secret(settings, recorder, capfd):
    for fmt in ("text", "json"):
        app = create_app(settings.replace(log_level="debug", log_format=fmt, sf_org_id=ORG_18,
                                          webhook_token=WEBHOOK_TOKEN, cdc_hmac_secret=CDC_HMAC_SECRET))
        app.extensions[EXTENSION].clock = lambda: datetime.fromtimestamp(NOW, UTC)
        recorder.start()
        client = app.test_client()
        om = "/webhooks/salesforce/outbound-message"
        soap = {"Content-Type": "text/xml; charset=utf-8"}
        assert client.post(f"{om}/{WEBHOOK_TOKEN}", data=opportunity_message(1), headers=soap).status_code == 200
        assert client.post(f"{om}/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}", data=b"<bad", headers=soap).status_code == 400
        assert client.post(f"{om}/{WEBHOOK_TOKEN}x", data=opportunity_message(2), headers=soap).status_code == 401
        assert client.post(f"{om}/{WEBHOOK_TOKEN[:-2]}", data=opportunity_message(2), headers=soap).status_code == 401
        assert client.get(f"{om}/{WEBHOOK_TOKEN}").status_code == 405
        assert client.post(f"{om}/{WEBHOOK_TOKEN}/more", data=b"").status_code == 404
        body = cdc_body([change_event()])
        signed = {"Content-Type": "application/json", "X-Billsync-Signature": sign_cdc(CDC_HMAC_SECRET, body, NOW)}
        assert client.post("/webhooks/salesforce/cdc", data=body, headers=signed).status_code == 200
        forged = {**signed, "X-Billsync-Signature": f"t={NOW},v1={CDC_HMAC_SECRET}"}
        assert client.post("/webhooks/salesforce/cdc", data=body, headers=forged).status_code == 401
        assert client.post(f"/webhooks/salesforce/cdc?secret={CDC_HMAC_SECRET}", data=body,
                           headers=signed).status_code == 200
    assert_no_secret(recorder.text())
    assert_no_secret(capfd.readouterr().err)


def test_basic_auth_refusals_log_no_password(settings, recorder, capfd):
    app = create_app(settings.replace(log_level="debug", sf_org_id=ORG_18, webhook_basic_user="salesforce",
                                      webhook_basic_password=WEBHOOK_BASIC_PASSWORD))
    recorder.start()
    client = app.test_client()
    for password in (WEBHOOK_BASIC_PASSWORD, WEBHOOK_BASIC_PASSWORD + "x"):
        client.post("/webhooks/salesforce/outbound-message", data=opportunity_message(1),
                    headers={"Content-Type": "text/xml"}, auth=("salesforce", password))
    assert_no_secret(recorder.text())
    assert_no_secret(capfd.readouterr().err)


def test_config_and_a_bad_database_url_show_no_secret(recorder, capfd):
    env = {"DATABASE_URL": f"postgresql://billsync:{DB_PASSWORD}@db.example.com:5432/prod", "LOG_LEVEL": "debug",
           "WEBHOOK_TOKEN": WEBHOOK_TOKEN, "CDC_HMAC_SECRET": CDC_HMAC_SECRET, "SF_AUTH": "client_credentials",
           "SF_LOGIN_URL": "https://example.my.salesforce.com", "SF_CLIENT_ID": "id",
           "SF_CLIENT_SECRET": SF_CLIENT_SECRET, "WEBHOOK_BASIC_USER": "u",
           "WEBHOOK_BASIC_PASSWORD": WEBHOOK_BASIC_PASSWORD}
    shown = CliRunner().invoke(cli, ["config"], env=env)
    assert shown.exit_code == 0, shown.output
    refused = CliRunner().invoke(cli, ["config"], env={**env, "DATABASE_URL": f"postgresql://b:{DB_PASSWORD}@/x"})
    assert refused.exit_code == 2
    assert_no_secret(shown.output + refused.output)
    assert_no_secret(shown.output + refused.output + recorder.text() + capfd.readouterr().err)


def test_a_failing_readiness_probe_logs_no_database_password(recorder, capfd):
    settings = load_settings({"DATABASE_URL": f"postgresql://billsync:{DB_PASSWORD}@127.0.0.1:1/nowhere",
                              "LOG_LEVEL": "debug"})
    app = create_app(settings)
    recorder.start()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "not ready" in recorder.text()
    assert_no_secret(response.text + recorder.text() + capfd.readouterr().err)


@pytest.mark.parametrize("mode", ["client_credentials", "password"])
def test_a_salesforce_login_and_calls_log_no_secret_or_access_token(org, database_url, recorder, capfd, monkeypatch,
                                                                    mode):
    from connector.wiring import build_services

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    creds = org.credentials
    extra = {"LOG_LEVEL": "debug"}
    if mode == "password":
        extra.update(SF_AUTH="password", SF_USERNAME=creds.username, SF_PASSWORD=creds.password,
                     SF_SECURITY_TOKEN=creds.security_token)
    services = build_services(load_settings(sandbox_environment(org, database_url, **extra)))
    recorder.start()
    client = services.salesforce()
    client.describe_global()
    access_token = client._token.access_token
    secrets = (creds.client_secret, access_token, creds.password, creds.security_token)
    assert all(secrets) and access_token not in creds.client_secret
    assert_no_secret(recorder.text() + capfd.readouterr().err, secrets)

    # A refused login (a wrong secret) is reported without the secret that was tried.
    wrong = build_services(load_settings(sandbox_environment(org, database_url, LOG_LEVEL="debug",
                                                             SF_CLIENT_SECRET=SF_CLIENT_SECRET)))
    recorder.start()
    with pytest.raises(Exception) as refused:
        wrong.salesforce().describe_global()
    assert_no_secret(str(refused.value) + recorder.text() + capfd.readouterr().err, (SF_CLIENT_SECRET, *secrets))
    services.engine.dispose()
    wrong.engine.dispose()
