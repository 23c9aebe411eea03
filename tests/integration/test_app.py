"""The Flask app factory: probes, JSON errors, request ids."""

from __future__ import annotations

import json
import logging

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
