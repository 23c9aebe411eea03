"""``billsync api-key create|list|revoke``."""

from __future__ import annotations

from click.testing import CliRunner

from connector import create_app
from connector.cli import cli
from tests.support.api import bearer


def _run(settings, *args):
    return CliRunner().invoke(cli, list(args), env={"DATABASE_URL": settings.database_url, "SF_AUTH": "none"})


def test_a_key_is_shown_once_listed_by_prefix_and_revoked(settings):
    created = _run(settings, "api-key", "create", "--name", "finance-bot", "--scope", "write", "--scope", "usage")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("bsk_") and len(key) > 40
    assert "shown only now" in created.stderr

    listed = _run(settings, "api-key", "list")
    assert listed.exit_code == 0
    assert "finance-bot" in listed.output and key[:12] in listed.output and "usage,write" in listed.output
    assert key not in listed.output

    client = create_app(settings).test_client()
    assert client.get("/api/v1/audit-log", headers=bearer(key)).status_code == 200
    revoked = _run(settings, "api-key", "revoke", key[:12])
    assert revoked.exit_code == 0 and "revoked API key 'finance-bot'" in revoked.output
    assert client.get("/api/v1/audit-log", headers=bearer(key)).status_code == 401
    assert "already revoked" in _run(settings, "api-key", "revoke", "finance-bot").output


def test_bad_input_is_one_error_line_and_exit_2(settings):
    _run(settings, "api-key", "create", "--name", "bot", "--scope", "read")
    for args, message in ((("--name", "bot", "--scope", "read"), "already exists"),
                          (("--name", "bot2", "--scope", "admin"), "unknown scope 'admin'"),
                          (("--name", "bad name", "--scope", "read"), "letters, digits")):
        result = _run(settings, "api-key", "create", *args)
        assert result.exit_code == 2 and result.stderr.count("error:") == 1 and message in result.stderr, result.output
    result = _run(settings, "api-key", "revoke", "nobody")
    assert result.exit_code == 2 and "no API key named or prefixed 'nobody'" in result.stderr
