"""``billsync sandbox query``: one command lists the running sandbox's records (the demo's
invoices, for instance) as a table."""

from __future__ import annotations

from click.testing import CliRunner
from simple_salesforce import Salesforce

from sfsandbox.cli import sandbox as sandbox_group
from sfsandbox.server import SandboxServer


def run(args: list[str], **env: str):
    return CliRunner().invoke(sandbox_group, ["query", *args], env=env)


def test_query_prints_the_records_as_a_table(sandbox: SandboxServer, sf: Salesforce):
    account = sf.Account.create({"Name": "Acme", "CurrencyIsoCode": "EUR"})["id"]
    for name, total in (("INV-2026-000001", "120.50"), ("INV-2026-000002", "99.00")):
        sf.Invoice__c.create({"Name": name, "Account__c": account, "Total__c": total, "CurrencyIsoCode": "EUR"})

    result = run(["SELECT Name, Total__c, Account__r.Name FROM Invoice__c ORDER BY Name",
                  "--state-dir", str(sandbox.state_dir)], SF_LOGIN_URL=sandbox.url)
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.output.splitlines()] == [
        ["Name", "Total__c", "Account__r.Name"],
        ["INV-2026-000001", "120.5", "Acme"],
        ["INV-2026-000002", "99.0", "Acme"],
        ["2", "records"],
    ]

    empty = run(["SELECT Name FROM Invoice__c WHERE Total__c > 1000", "--url", sandbox.url,
                 "--state-dir", str(sandbox.state_dir)])
    assert (empty.exit_code, empty.output) == (0, "0 records\n")


def test_query_problems_are_one_line(sandbox: SandboxServer, tmp_path):
    state = ["--state-dir", str(sandbox.state_dir)]
    bad = run(["SELECT Nope FROM Invoice__c", "--url", sandbox.url, *state])
    assert bad.exit_code == 2
    assert bad.output.startswith("error: INVALID_FIELD: ") and len(bad.output.splitlines()) == 1

    nowhere = run(["SELECT Name FROM Account", *state])
    assert nowhere.exit_code == 2
    assert nowhere.output.startswith("error: which sandbox? pass --url")

    no_state = run(["SELECT Name FROM Account", "--url", sandbox.url, "--state-dir", str(tmp_path)])
    assert no_state.exit_code == 2
    assert no_state.output.startswith(f"error: no sandbox state in {tmp_path}")
