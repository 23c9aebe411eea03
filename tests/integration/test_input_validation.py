"""Values that enter through the command line or a mapping file are checked where they
enter: a bad one is one line and exit code 2, never a busy loop, a misleading database
error or a traceback."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner

from connector.cli import cli
from connector.worker import Drain, run_worker
from tests.support.sandbox import sandbox_environment


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "0", "-1", "1e400"])
def test_worker_refuses_a_poll_interval_that_is_not_a_positive_finite_number(database_url, value):
    env = {"DATABASE_URL": database_url, "SF_AUTH": "none"}
    result = CliRunner().invoke(cli, ["worker", "--poll-seconds", value], env=env)
    assert result.exit_code == 2, result.output
    assert "--poll-seconds" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_the_worker_loop_refuses_to_spin_without_sleeping(value):
    passes = []
    drain = Drain("counting", lambda should_stop: passes.append(1) or 0)
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()  # if the loop ran anyway, end it
    with pytest.raises(ValueError, match="poll_seconds"):
        run_worker([drain], once=False, poll_seconds=value, stop=stop)
    stop.set()
    assert passes == []


@pytest.mark.parametrize("args", [["--id", "99999999999999999999"], ["--notification", "99999999999999999999"],
                                  ["--id", "2147483648"], ["--id", "0"], ["--notification", "-3"]])
def test_retry_refuses_an_id_out_of_range_as_a_bad_value(engine, database_url, args):
    result = CliRunner().invoke(cli, ["sync", "retry", *args], env={"DATABASE_URL": database_url, "SF_AUTH": "none"})
    assert result.exit_code == 2, result.output
    assert "not in the range" in result.output
    assert "unreachable" not in result.output and "Traceback" not in result.output


def test_retry_accepts_the_largest_id(engine, database_url):
    result = CliRunner().invoke(cli, ["sync", "retry", "--id", "2147483647"],
                                env={"DATABASE_URL": database_url, "SF_AUTH": "none"})
    assert result.exit_code == 0, result.output
    assert "re-queued 0 outbox rows" in result.output


def test_a_deeply_nested_mapping_file_is_one_line_in_mappings_check_and_no_traceback_in_the_worker(
        services, org, database_url, tmp_path):
    from tests.support.push import bill_customers, create_accounts, outbox_statuses

    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "invoice.yaml").write_text("outbound: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (mappings / "account.yaml").write_text(alias_bomb())
    env = sandbox_environment(org, database_url, MAPPINGS_DIR=str(mappings))
    check = CliRunner().invoke(cli, ["mappings", "check"], env=env)
    assert check.exit_code != 0
    assert "Traceback" not in check.output and "RecursionError" not in check.output
    problems = [line for line in check.output.splitlines() if str(mappings) in line]
    assert problems == [f"{mappings}/account.yaml:1: file: YAML: its aliases expand to more than 100000 values",
                        f"{mappings}/invoice.yaml:1: file: YAML: nested more than 50 levels deep"], check.output

    bill_customers(services.engine, create_accounts(services.salesforce(), 1), lines=1)
    worker = CliRunner().invoke(cli, ["worker", "--once"], env=env)
    assert worker.exit_code == 2, worker.output
    assert "Traceback" not in worker.output and "RecursionError" not in worker.output
    assert [line for line in worker.output.splitlines() if line.startswith("error:")] == [
        f"error: worker: {problem}" for problem in problems]
    # Nothing the broken files could not map is marked as delivered.
    assert outbox_statuses(services.engine) == {"pending": 2}


def alias_bomb(levels: int = 9) -> str:
    text = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    return text + f"outbound: *l{levels - 1}\n"
