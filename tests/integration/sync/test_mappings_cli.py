"""``billsync mappings check`` and ``billsync mappings preview`` against the local sandbox."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from simple_salesforce import Salesforce
from sqlalchemy import func, select

from connector.cli import cli
from connector.database import load_all_models, make_engine
from tests.support.sandbox import sandbox_environment

BROKEN = """\
inbound:
  - name: broken_customer
    object: Account
    command: upsert_customer
    fields:
      name:     {from: Nmae, transform: string, required: true}
      currency: {from: CurrencyIsoCode, transform: currency_code}
      tax_rate: {from: Name, transform: decimal}
      vat_id:   {from: VAT_Id__c, transform: upper_case}
outbound:
  - name: broken_invoice
    object: Invoice__c
    source: invoice
    key: {field: Name, from: id}
    fields:
      Total__c: {from: total, transform: decimal}
"""


@pytest.fixture
def env(org, database_url, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return sandbox_environment(org, database_url)


def run(env, *args):
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result


def salesforce(org) -> Salesforce:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(org.ca_path)
    return Salesforce(instance_url=org.url, session_id=org.issue_token()["access_token"], session=session,
                      version="59.0", parse_float=Decimal)


def row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                    for t in load_all_models().metadata.sorted_tables}
    finally:
        engine.dispose()


def test_check_passes_on_the_shipped_defaults(env):
    result = run(env, "mappings", "check")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("mappings OK: 11 files")


def test_check_reports_each_problem_of_a_broken_file_on_its_own_line(env, tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = run({**env, "MAPPINGS_DIR": str(tmp_path)}, "mappings", "check")
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if "broken.yaml" in line]
    found = {(int(m.group(1)), m.group(2)) for m in (re.search(r"broken\.yaml:(\d+): ([\w.]+): ", line)
                                                      for line in lines) if m}
    assert found == {(6, "fields.name"),  # misspelled field
                     (8, "fields.tax_rate"),  # decimal on a text field
                     (9, "fields.vat_id.transform"),  # unknown transform
                     (14, "key.field")}  # Name is not an external id
    assert len(lines) == 4
    text = "\n".join(lines)
    assert "'Nmae'" in text and "did you mean 'Name'" in text
    assert "wrong type" in text and "upper_case" in text and "not an External ID" in text


def test_preview_prints_the_command_of_each_default_object_and_the_deals_first_invoice(org, env, database_url):
    org.seed("small", 0)
    sf = salesforce(org)
    before = row_counts(database_url)
    ids = {
        "upsert_customer": sf.query("SELECT Id FROM Account ORDER BY Name LIMIT 1")["records"][0]["Id"],
        "upsert_product": sf.query("SELECT Id FROM Product2 WHERE ProductCode = 'SEATS'")["records"][0]["Id"],
        "upsert_price": sf.query("SELECT Id FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                                 "AND CurrencyIsoCode = 'EUR'")["records"][0]["Id"],
    }
    for command, record_id in ids.items():
        result = run(env, "mappings", "preview", record_id)
        assert result.exit_code == 0, result.output
        assert f"engine command: {command} (key {record_id})" in result.output
        assert "nothing was written" in result.output

    won = sf.query("SELECT Id FROM Opportunity WHERE IsWon = true ORDER BY CloseDate LIMIT 1")["records"][0]["Id"]
    result = run(env, "mappings", "preview", won)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"engine command: start_subscription (key {won})" in out
    assert "First invoice (on 2026-01-05), EUR:" in out
    assert re.search(r"recurring\s+LIC\s+1950\.00", out)
    assert "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100" in out
    assert "Premium support 10 % of 1950 (Licences)" in out
    assert "MRR: 0.00 → 2645.00 EUR (+2645.00)" in out
    assert row_counts(database_url) == before  # nothing written, in any table


def test_preview_of_a_lost_deal_or_not_an_id(org, env):
    org.seed("small", 0)
    lost = salesforce(org).query("SELECT Id FROM Opportunity WHERE IsClosed = true AND IsWon = false "
                                 "LIMIT 1")["records"][0]["Id"]
    result = run(env, "mappings", "preview", lost)
    assert result.exit_code == 0
    assert "not pulled: it does not match the mapping's filter (IsWon = true AND Billsync_Change_Id__c = null)" in result.output

    result = run(env, "mappings", "preview", "not-an-id")
    assert result.exit_code == 2
    assert result.output.strip() == "error: 'not-an-id' is not a Salesforce record id (15 or 18 letters and digits)"


def test_preview_lists_every_bad_value_of_a_record(org, env):
    product = salesforce(org).Product2.create({"Name": "Odd", "Charge_Type__c": "recurring"})["id"]
    result = run(env, "mappings", "preview", product)
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == ["  ProductCode: is required but empty",
                                              "  Pricing_Model__c: is required but empty"]
