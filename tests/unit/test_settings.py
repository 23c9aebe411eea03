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
