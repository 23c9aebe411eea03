"""The mappings page (admins): the files in force with their lines, the check against the org,
and a deal's preview, through the test client; the sandbox stands in for the org."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from connector import create_app
from connector.console.users import create_user
from connector.settings import load_settings
from tests.integration.console.conftest import PASSWORD, sign_in
from tests.integration.sync.test_mappings_cli import BROKEN, salesforce
from tests.support.sandbox import sandbox_environment


def text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def admin_client(app):
    create_user(app.extensions["billsync"].engine, "boss@example.com", role="admin", password=PASSWORD,
                now=datetime.now(UTC))
    client = app.test_client()
    assert sign_in(client, "boss@example.com").status_code == 303
    return client


def test_admins_read_the_files_in_force_with_numbered_lines(app):
    client = admin_client(app)
    page = text(client.get("/mappings/"))
    assert 'href="/mappings/"' in page  # in the navigation bar
    assert "opportunity.yaml" in page and "default" in page
    assert re.search(r'<li id="opportunity-yaml-L1"><code>[^<]+</code></li>', page)
    assert "Check against the org" not in page and "Salesforce is not connected" in page


def test_finance_and_viewers_neither_see_nor_open_the_mappings(finance):
    assert 'href="/mappings/"' not in text(finance.get("/invoices/"))
    assert finance.get("/mappings/").status_code == 403


def test_a_preview_without_salesforce_is_a_message(app):
    client = admin_client(app)
    response = client.get("/mappings/?record_id=006000000000001AAA")
    assert response.status_code == 422 and "there is no record to preview" in text(response)
    checked = client.get("/mappings/?check=1")
    assert checked.status_code == 422 and "cannot be checked against an org" in text(checked)


@pytest.fixture
def connected_app(org, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    def make(mappings_dir=None):
        env = sandbox_environment(org, database_url)
        if mappings_dir is not None:
            env["MAPPINGS_DIR"] = str(mappings_dir)
        return create_app(load_settings(env))

    return make


def test_the_check_passes_on_the_defaults_and_a_won_deal_is_previewed(org, connected_app):
    org.seed("small", 0)
    client = admin_client(connected_app())
    checked = text(client.get("/mappings/?check=1"))
    assert re.search(r"Mappings OK: \d+ files, \d+ inbound and \d+ outbound mappings match the org", checked)

    won = salesforce(org).query("SELECT Id FROM Opportunity WHERE IsWon = true ORDER BY CloseDate LIMIT 1")
    won_id = won["records"][0]["Id"]
    page = text(client.get(f"/mappings/?record_id={won_id}"))
    assert '<code id="engine-command">start_subscription</code>' in page
    assert "First invoice (on 2026-01-05)" in page
    assert "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100" in page
    assert "Premium support 10 % of 1950 (Licences)" in page
    assert "€1,950.00" in page
    assert re.search(r'id="mrr-after">€2,645.00<', page) and re.search(r'id="mrr-change">€2,645.00<', page)
    assert "Nothing was written." in page

    bad = client.get("/mappings/?record_id=not-an-id")
    assert bad.status_code == 422 and "is not a Salesforce record id" in text(bad)


def test_a_broken_override_is_listed_with_links_to_its_lines(connected_app, tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    client = admin_client(connected_app(tmp_path))
    page = text(client.get("/mappings/?check=1"))
    assert "4 problems in the mapping files." in page
    assert re.search(r'href="#broken-yaml-L6">broken.yaml</a></td><td class="num">6</td><td>fields.name</td>'
                     r'<td class="error-text">no field &#39;Nmae&#39; on Account', page)
    assert "override" in page and '<li id="broken-yaml-L6"><code> name: {from: Nmae,' in page
