"""Settings: one clear line per bad value, documented variables, working defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.settings import VARIABLES, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work_on_a_fresh_machine():
    settings = load_settings({})
    assert settings.database_url == "sqlite:///instance/billsync.db"
    assert settings.port == 5000
    assert settings.log_format == "text"


def test_unsupported_scheme_is_named_with_the_fix():
    with pytest.raises(SettingsError) as err:
        load_settings({"DATABASE_URL": "mysq://localhost/db"})
    assert err.value.problems == ["DATABASE_URL: unsupported scheme 'mysq'; use sqlite:/// or postgresql://"]


def test_every_bad_value_gets_its_own_line():
    with pytest.raises(SettingsError) as err:
        load_settings({"DATABASE_URL": "nonsense", "PORT": "eighty", "LOG_FORMAT": "xml"})
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("DATABASE_URL: not a URL")
    assert problems[1] == "LOG_FORMAT: 'xml' is not one of text, json"
    assert problems[2] == "PORT: 'eighty' is not a whole number"


def test_postgres_scheme_is_normalised_to_the_installed_driver():
    settings = load_settings({"DATABASE_URL": "postgres://u:p@db.example.com:5432/billing"})
    assert settings.database_url == "postgresql+psycopg://u:p@db.example.com:5432/billing"
    settings = load_settings({"DATABASE_URL": "postgresql://u@localhost/billing"})
    assert settings.database_url == "postgresql+psycopg://u@localhost/billing"


@pytest.mark.parametrize("doc", [".env.example", "README.md"])
def test_every_variable_is_documented(doc):
    text = (ROOT / doc).read_text()
    missing = [var.name for var in VARIABLES if not re.search(rf"\b{var.name}\b", text)]
    assert missing == [], f"{doc} does not document {missing}"


# ---------------------------------------------------------------- credentials never shown


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://billsync:s3cret-pw@db.example.com:5432/prod", "postgresql://billsync:********@db.example.com:5432/prod"),
    ("postgres://u:p%40ss@db/x", "postgres://u:********@db/x"),
    ("postgresql://u:pa/ss@db/x", "postgresql://u:********@db/x"),  # malformed: unescaped "/"
    ("postgresql://u:p@ss@db/x", "postgresql://u:********@db/x"),  # malformed: unescaped "@"
    ("postgresql://db/x?sslmode=require&password=s3cret", "postgresql://db/x?sslmode=require&password=********"),
    ("postgresql://billsync@db/prod", "postgresql://billsync@db/prod"),
    ("sqlite:///instance/billsync.db", "sqlite:///instance/billsync.db"),
])
def test_mask_url_hides_the_password_and_nothing_else(url, shown):
    from connector.settings import mask_url

    assert mask_url(url) == shown


def test_display_items_mask_secrets_and_url_credentials():
    settings = load_settings({"DATABASE_URL": "postgresql://billsync:s3cret-pw@db.example.com/prod",
                              "WEBHOOK_TOKEN": "tok-123456", "CDC_HMAC_SECRET": "hmac-123456"})
    shown = dict(settings.display_items())
    assert shown["DATABASE_URL"] == "postgresql+psycopg://billsync:********@db.example.com/prod"
    assert shown["WEBHOOK_TOKEN"] == shown["CDC_HMAC_SECRET"] == "********"
    assert shown["SF_CLIENT_SECRET"] == "" and shown["PORT"] == "5000"
    assert [name for name, _ in settings.display_items()] == [var.name for var in VARIABLES]
    assert "s3cret-pw" not in repr(settings.display_items())
    assert set(settings.secret_values()) == {"s3cret-pw", "tok-123456", "hmac-123456"}


@pytest.mark.parametrize("url", ["postgresql://billsync:s3cret-pw@/prod", "billsync:s3cret-pw@db/prod",
                                 "sqlite://billsync:s3cret-pw@db/prod"])
def test_a_malformed_database_url_is_reported_without_its_password(url):
    with pytest.raises(SettingsError) as err:
        load_settings({"DATABASE_URL": url})
    (problem,) = err.value.problems
    assert problem.startswith("DATABASE_URL: ") and "s3cret-pw" not in problem and "********" in problem


def test_an_18_character_org_id_must_carry_its_checksum_suffix():
    assert load_settings({"SF_ORG_ID": "00D7F00000107XsUAI"}).sf_org_id == "00D7F00000107XsUAI"
    assert load_settings({"SF_ORG_ID": "00D7F00000107Xs"}).sf_org_id == "00D7F00000107Xs"
    with pytest.raises(SettingsError) as err:
        load_settings({"SF_ORG_ID": "00D7F00000107XsAAA"})
    assert err.value.problems == ["SF_ORG_ID: '00D7F00000107XsAAA' has a wrong 18-character suffix (expected 'UAI'); "
                                  "copy the id again from Setup > Company Information"]


# ---------------------------------------------------------------- previews of open deals


@pytest.mark.parametrize(("raw", "enabled", "stages", "shown"), [
    ("", True, (), "open"),
    ("open", True, (), "open"),
    ("NONE", False, (), "none"),
    (" Proposal , Negotiation,Proposal ", True, ("Proposal", "Negotiation"), "Proposal, Negotiation"),
])
def test_preview_stages_default_to_every_open_stage(raw, enabled, stages, shown):
    settings = load_settings({"PREVIEW_STAGES": raw})
    assert (settings.preview_stages.enabled, settings.preview_stages.stages) == (enabled, stages)
    assert dict(settings.display_items())["PREVIEW_STAGES"] == shown


@pytest.mark.parametrize("raw", [",", "Proposal, O'Brien"])
def test_preview_stages_refuse_what_is_not_a_stage_list(raw):
    with pytest.raises(SettingsError) as err:
        load_settings({"PREVIEW_STAGES": raw})
    assert err.value.problems[0].startswith("PREVIEW_STAGES: ")


def test_preview_stages_default_is_the_one_documented():
    [var] = [v for v in VARIABLES if v.name == "PREVIEW_STAGES"]
    assert f"PREVIEW_STAGES={var.default}\n" in (ROOT / ".env.example").read_text()
    assert f"| `PREVIEW_STAGES` | `{var.default}` |" in (ROOT / "README.md").read_text()


def test_the_cut_over_is_a_date_or_unset():
    from datetime import date

    assert load_settings({}).billing_starts_on is None
    assert load_settings({"BILLING_STARTS_ON": "2026-12-01"}).billing_starts_on == date(2026, 12, 1)
    for raw, problem in (("2026/12/01", "BILLING_STARTS_ON: '2026/12/01' is not a date; use YYYY-MM-DD, "
                                        "for example 2026-12-01"),
                         ("2026-02-30", "BILLING_STARTS_ON: '2026-02-30' is not a valid date (day is out of "
                                        "range for month)")):
        with pytest.raises(SettingsError) as err:
            load_settings({"BILLING_STARTS_ON": raw})
        assert err.value.problems == [problem]
