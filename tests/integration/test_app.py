"""The Flask app factory: probes, JSON errors, request ids."""

from __future__ import annotations

import json
import logging
import re

from connector import create_app
from connector.database import upgrade


def test_health_and_readiness(settings):
    client = create_app(settings).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json == {"status": "ready"}


def test_readiness_is_503_with_the_reason_when_not_migrated(tmp_path):
    from connector.settings import load_settings

    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    client = create_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "billsync db upgrade" in response.json["reason"]
    upgrade(client.application.extensions["billsync"].engine)
    assert client.get("/readyz").status_code == 200


def test_unknown_route_is_a_json_404_not_an_html_page(settings):
    client = create_app(settings).test_client()
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.is_json and response.json["error"] == "not_found"
    assert response.headers["X-Request-Id"]


def test_one_json_log_line_per_request_with_its_request_id(settings, capfd):
    app = create_app(settings.replace(log_format="json", log_level="info"))
    app.test_client().get("/healthz", headers={"X-Request-Id": "abc123"})
    logging.getLogger().handlers[0].flush()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    http = [line for line in lines if line["logger"] == "billsync.http"]
    assert len(http) == 1
    assert http[0]["request_id"] == "abc123" and http[0]["status"] == 200


def test_cli_commands_on_a_database_that_is_not_migrated_give_one_line(tmp_path):
    """A database that is not there yet: one `error:` line naming the fix, exit 2, no traceback."""
    from click.testing import CliRunner

    from connector.cli import cli

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/empty.db", "SF_AUTH": "none"}
    for args in (["sync", "status"], ["sync", "retry"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert "billsync db upgrade" in result.output, (args, result.output)


# ---------------------------------------------------------------- what the logs and probes reveal

TOKEN = "tok-3f9a2c77b1e4"
OM_PATH = "/webhooks/salesforce/outbound-message"


class Records(logging.Handler):
    """Every record as logged, before any formatter could hide a secret."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in self.records)


def recording(app) -> Records:
    handler = Records()
    logging.getLogger().addHandler(handler)
    return handler


def test_the_request_log_hides_the_webhook_token_in_text_and_json(settings, capfd):
    for fmt in ("text", "json"):
        app = create_app(settings.replace(log_format=fmt, log_level="debug", webhook_token=TOKEN))
        records = recording(app)
        client = app.test_client()
        client.post(f"{OM_PATH}/{TOKEN}?token={TOKEN}", data=b"<a/>", content_type="text/xml")
        client.post(f"{OM_PATH}/{TOKEN[:-1]}", data=b"<a/>", content_type="text/xml")  # a near miss
        client.get(f"{OM_PATH}/{TOKEN}")  # 405
        client.post(f"/Webhooks/Salesforce/Outbound-Message/{TOKEN}/extra")  # 404
        logging.getLogger().removeHandler(records)
        logging.getLogger().handlers[0].flush()
        err = capfd.readouterr().err
        http = [line for line in err.splitlines() if "billsync.http" in line]
        assert len(http) == 4, err
        assert TOKEN[:-1] not in err, err
        assert TOKEN[:-1] not in records.text()
        assert f"{OM_PATH}/*** " in records.text() or f"{OM_PATH}/***" in records.text()
        assert "token=" not in err  # the query string is never logged


def test_a_control_character_in_a_path_cannot_forge_a_log_line(settings, capfd):
    app = create_app(settings.replace(log_format="text", log_level="info"))
    forged = "%0A2026-01-01 00:00:00,000 INFO billsync.http POST /admin 200%0D%E2%80%A8"
    response = app.test_client().get(f"/no/such/page{forged}")
    assert response.status_code == 404
    logging.getLogger().handlers[0].flush()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "\\x0a2026-01-01" in lines[0] and "\\x0d" in lines[0] and "\\u2028" in lines[0]


def test_only_a_short_safe_request_id_is_accepted(settings, capfd):
    app = create_app(settings.replace(log_format="json", log_level="info"))
    client = app.test_client()
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123.X_y"}).headers["X-Request-Id"] == "abc-123.X_y"
    for hostile in ("x" * 8000, "a b", "<script>", "id\u00e9", "x" * 65):
        given = client.get("/healthz", headers={"X-Request-Id": hostile.encode("utf-8").decode("latin-1")})
        assert given.headers["X-Request-Id"] != hostile
        assert re.fullmatch(r"[0-9a-f]{16}", given.headers["X-Request-Id"])
    logging.getLogger().handlers[0].flush()
    err = capfd.readouterr().err
    assert "x" * 65 not in err and "<script>" not in err


def test_config_never_prints_the_database_password():
    from click.testing import CliRunner

    from connector.cli import cli

    env = {"DATABASE_URL": "postgresql://billsync:s3cret-db-pw@db.example.com:5432/prod", "SF_AUTH": "none",
           "WEBHOOK_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "DATABASE_URL=postgresql+psycopg://billsync:********@db.example.com:5432/prod" in result.output
    assert "WEBHOOK_TOKEN=********" in result.output
    assert "s3cret-db-pw" not in result.output and TOKEN not in result.output

    env["DATABASE_URL"] = "postgresql://billsync:s3cret-db-pw@/prod"  # no host: refused, quoted masked
    result = CliRunner().invoke(cli, ["config"], env=env)
    assert result.exit_code == 2
    assert "error: DATABASE_URL: no host in 'postgresql://billsync:********@/prod'" in result.output
    assert "s3cret-db-pw" not in result.output


def test_readiness_names_no_host_port_or_role_and_logs_the_detail(capfd):
    from connector.settings import load_settings

    settings = load_settings({"DATABASE_URL": "postgresql://billsync_probe_role:pw-123456@127.0.0.1:1/nowhere",
                              "LOG_FORMAT": "text"})
    app = create_app(settings)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "reason": "database unreachable"}
    for detail in ("127.0.0.1", "billsync_probe_role", "port", "psycopg", "pw-123456"):
        assert detail not in response.text
    logging.getLogger().handlers[0].flush()
    err = capfd.readouterr().err
    assert "not ready: database unreachable" in err and "127.0.0.1" in err
    assert "pw-123456" not in err
