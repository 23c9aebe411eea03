"""Every environment variable billsync reads, typed and checked in one place.

``load_settings()`` reads the environment once and either returns a frozen
``Settings`` or raises ``SettingsError`` listing one line per bad or missing
value. No other module reads ``os.environ``.

To add a variable: add a ``Var`` to ``VARIABLES`` and a field of the same name
(lower case) to ``Settings``; document it in ``.env.example`` and the README
(a test checks both).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(Exception):
    """One or more environment variables are missing or malformed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------- parsers
# Each parser takes the raw string and returns the typed value or raises
# ValueError with a message that completes "NAME: <message>".


def parse_database_url(raw: str) -> str:
    raw = raw.strip()
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if not scheme:
        raise ValueError(f"not a URL: {raw!r}; use sqlite:///path/to/file.db or postgresql://user@host/db")
    if scheme == "postgres":
        raw = "postgresql" + raw[len("postgres") :]
        scheme = "postgresql"
    if scheme in ("postgresql", "postgresql+psycopg"):
        # psycopg 3 is the driver billsync installs.
        rest = raw.split("://", 1)[1]
        if not urlsplit(raw).hostname and "host=" not in raw:
            raise ValueError(f"no host in {raw!r}; use postgresql://user@host:5432/dbname")
        return "postgresql+psycopg://" + rest
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///"):
            raise ValueError(f"{raw!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return raw
    raise ValueError(f"unsupported scheme {scheme!r}; use sqlite:/// or postgresql://")


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} is above the maximum {maximum}")
        return value

    return parse


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not a boolean; use true or false")


def parse_share(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a number between 0 and 1") from None
    if not (Decimal(0) < value <= Decimal(1)):
        raise ValueError(f"{raw!r} must be greater than 0 and at most 1 (0.5 means half)")
    return value


def parse_timezone(raw: str) -> str:
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {raw!r}; use an IANA name such as Europe/Paris or UTC") from None
    return raw.strip()


def parse_time_of_day(raw: str) -> time:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise ValueError(f"{raw!r} is not a time of day; use HH:MM, for example 02:30")
    return time(int(match.group(1)), int(match.group(2)))


def parse_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{raw!r} is not an http(s) URL")
    return raw.strip().rstrip("/")


def parse_https_url(raw: str) -> str:
    value = parse_url(raw)
    if not value.startswith("https://"):
        raise ValueError(f"{raw!r} must use https:// (Salesforce is only reached over TLS)")
    return value


def parse_existing_file(raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def parse_path(raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def parse_text(raw: str) -> str:
    return raw


def parse_api_version(raw: str) -> str:
    if not re.fullmatch(r"\d{2}\.0", raw.strip()):
        raise ValueError(f"{raw!r} is not a Salesforce API version such as 59.0")
    return raw.strip()


def parse_org_id(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"00D[a-zA-Z0-9]{12}([a-zA-Z0-9]{3})?", value):
        raise ValueError(f"{raw!r} is not an organization id (15 or 18 characters starting with 00D)")
    return value


@dataclass(frozen=True)
class Var:
    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False


VARIABLES: tuple[Var, ...] = (
    Var("DATABASE_URL", parse_database_url, "sqlite:///instance/billsync.db",
        "Where billsync keeps its data: sqlite:///path.db (embedded default) or postgresql://user@host/db."),
    Var("LOG_LEVEL", parse_choice("debug", "info", "warning", "error"), "info", "Least severe log level printed."),
    Var("LOG_FORMAT", parse_choice("text", "json"), "text", "text for people, json for log collectors."),
    Var("PORT", parse_int(1, 65535), "5000", "Port of the web process (gunicorn binds 0.0.0.0:$PORT)."),
    Var("BILLSYNC_TIMEZONE", parse_timezone, "UTC",
        "The org's time zone: default customer time zone and the clock's schedule time zone."),
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    log_level: str
    log_format: str
    port: int
    billsync_timezone: str

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every variable; raise ``SettingsError`` with one line per problem."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for var in VARIABLES:
        raw = env.get(var.name)
        if raw is None or raw == "":
            if var.default is None:
                values[var.name.lower()] = None
                continue
            raw = var.default
        try:
            values[var.name.lower()] = var.parse(raw)
        except ValueError as exc:
            problems.append(f"{var.name}: {exc}")
    if problems:
        raise SettingsError(problems)
    return Settings(**values)
