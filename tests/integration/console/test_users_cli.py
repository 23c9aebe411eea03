"""``billsync users create|list|disable`` and the demo's console users."""

from __future__ import annotations

from click.testing import CliRunner

from connector import create_app
from connector.cli import cli
from connector.console.users import ROLES
from connector.demo import DEMO_USERS, banner, bin_path, create_demo_users
from tests.integration.console.conftest import sign_in


def _run(settings, *args, input=None):
    return CliRunner().invoke(cli, list(args), input=input,
                              env={"DATABASE_URL": settings.database_url, "SF_AUTH": "none"})


def test_a_user_created_from_standard_input_signs_in_and_is_disabled(settings):
    created = _run(settings, "users", "create", "--email", "Ann@Example.com", "--role", "finance",
                   input="a long enough secret\n")
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "created finance ann@example.com"
    client = create_app(settings).test_client()
    assert sign_in(client, "ann@example.com", "a long enough secret").status_code == 303

    listed = _run(settings, "users", "list")
    assert "ann@example.com" in listed.output and "finance" in listed.output
    assert "secret" not in listed.output
    assert _run(settings, "users", "disable", "ann@example.com").output.strip() == "disabled ann@example.com"
    assert "already disabled" in _run(settings, "users", "disable", "ann@example.com").output
    assert sign_in(create_app(settings).test_client(), "ann@example.com", "a long enough secret").status_code == 401


def test_a_generated_password_is_printed_once(settings):
    created = _run(settings, "users", "create", "--email", "ops@example.com", "--role", "admin", "--generate")
    assert created.exit_code == 0, created.output
    password = created.stdout.strip()
    assert len(password) >= 20 and "shown only now" in created.stderr
    assert sign_in(create_app(settings).test_client(), "ops@example.com", password).status_code == 303
    assert password not in _run(settings, "users", "list").output


def test_bad_input_is_one_error_line_and_exit_2(settings):
    _run(settings, "users", "create", "--email", "ann@example.com", "--role", "viewer", input="a long enough secret\n")
    for args, stdin, message in (
            (("--email", "ann@example.com", "--role", "viewer"), "another long secret\n", "already exists"),
            (("--email", "not-an-email", "--role", "viewer"), "another long secret\n", "is not an e-mail address"),
            (("--email", "bob@example.com", "--role", "viewer"), "short\n", "12 to 200 characters"),
            (("--email", "bob@example.com", "--role", "viewer"), "\n", "no password on standard input")):
        result = _run(settings, "users", "create", *args, input=stdin)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert _run(settings, "users", "create", "--email", "b@example.com", "--role", "root").exit_code == 2
    assert _run(settings, "users", "disable", "nobody@example.com").exit_code == 2


def test_the_cli_offers_the_console_roles():
    from connector.cli.users import ROLES as CLI_ROLES

    assert CLI_ROLES == ROLES


def test_the_demo_creates_a_finance_and_an_admin_user_once(settings, database_url):
    env = {"DATABASE_URL": database_url, "SF_AUTH": "none", "PATH": "/usr/bin:/bin"}
    first = create_demo_users(bin_path("billsync"), env)
    assert [role for _, role in DEMO_USERS] == ["finance", "admin"]
    assert all("password " in line for line in first), first
    password = first[0].rsplit("password ", 1)[1]
    assert sign_in(create_app(settings).test_client(), DEMO_USERS[0][0], password).status_code == 303
    again = create_demo_users(bin_path("billsync"), env)
    assert all("created before" in line for line in again), again
    text = "\n".join(banner("http://127.0.0.1:5000", None, {}, True, first))
    assert "console:  http://127.0.0.1:5000/" in text and password in text
