"""How every ``billsync`` command fails: a problem the user can fix is one ``error:`` line and
exit 2; a bug is one line and exit 1, with its traceback in the log (and on the terminal
only with ``--debug`` or ``LOG_LEVEL=debug``)."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from billing_engine.errors import InvalidInputError
from connector.cli import cli

UNEXPECTED = "error: unexpected failure (KeyError); see the log (--debug shows the traceback)"
MRR = ["metrics", "mrr", "--from", "2026-01", "--to", "2026-02"]


@pytest.fixture
def failing_bridge(monkeypatch):
    """Make the MRR bridge use case raise what the test asks for."""
    import connector.billing_jobs

    def fail_with(exc: BaseException) -> None:
        def bridge(*_args, **_kwargs):
            raise exc

        monkeypatch.setattr(connector.billing_jobs, "mrr_bridge_rows", bridge)

    return fail_with


@pytest.fixture
def cli_log():
    """The records of the ``billsync.cli`` logger (the log the error line points to)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("billsync.cli")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def run(args, database_url, **env):
    return CliRunner().invoke(cli, args, env={"DATABASE_URL": database_url, "LOG_LEVEL": "info", **env})


def test_an_unexpected_error_is_one_line_exit_1_and_its_traceback_is_in_the_log(database_url, failing_bridge,
                                                                                cli_log):
    failing_bridge(KeyError("currency"))
    result = run(MRR, database_url)
    assert result.exit_code == 1
    assert result.output.splitlines() == [UNEXPECTED]
    [record] = cli_log
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "unexpected failure in 'billsync metrics'"
    assert isinstance(record.exc_info[1], KeyError)


@pytest.mark.parametrize("args, env", [(["--debug", *MRR], {}), (MRR, {"LOG_LEVEL": "debug"})],
                         ids=["--debug", "LOG_LEVEL=debug"])
def test_debug_shows_the_traceback_on_the_terminal(database_url, failing_bridge, cli_log, args, env):
    failing_bridge(KeyError("currency"))
    result = run(args, database_url, **env)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert "KeyError: 'currency'" in result.output
    assert result.output.splitlines()[-1] == UNEXPECTED
    assert len(cli_log) == 1


def test_json_logs_keep_the_traceback_for_the_log_collector(database_url, failing_bridge):
    failing_bridge(TypeError("unsupported operand"))
    result = run(MRR, database_url, LOG_FORMAT="json")
    assert result.exit_code == 1
    [logged] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert logged["logger"] == "billsync.cli" and logged["level"] == "error"
    assert "TypeError: unsupported operand" in logged["exception"]
    assert result.output.splitlines()[-1].startswith("error: unexpected failure (TypeError)")


@pytest.mark.parametrize("exc, line", [
    (InvalidInputError("from_month", "too far back"), "error: from_month: too far back"),
    (PermissionError(13, "Permission denied"), "error: PermissionError: [Errno 13] Permission denied"),
])
def test_a_known_error_is_still_one_line_and_exit_2(database_url, failing_bridge, cli_log, exc, line):
    failing_bridge(exc)
    result = run(MRR, database_url)
    assert result.exit_code == 2
    assert result.output.splitlines() == [line]
    assert cli_log == []


def test_a_database_that_is_not_there_is_a_known_error(tmp_path, cli_log):
    result = run(MRR, f"sqlite:///{tmp_path}/missing/none.db")
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: the database is unreachable or not migrated (OperationalError:")
    assert line.endswith("check DATABASE_URL and run 'billsync db upgrade'")
    assert cli_log == []
