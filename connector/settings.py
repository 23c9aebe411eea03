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
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mappings.transforms import to_id18


class SettingsError(Exception):
    """One or more environment variables are missing or malformed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------- showing values

MASK = "********"
# A password given as a query parameter (``?password=...``, libpq's keyword form too).
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[?&;\s])password=)[^&;\s]*")


def mask_url(raw: str) -> str:
    """``raw`` with the password of its user information, and any ``password=``
    parameter, replaced by ``********``. Works on malformed URLs too, so an error
    line that quotes a bad setting never shows its password:
    ``postgresql://billsync:s3cret@db/prod`` -> ``postgresql://billsync:********@db/prod``."""
    text = _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", raw)
    scheme, sep, rest = text.partition("://")
    if not sep:  # no scheme: "user:password@host/db" is still masked
        scheme, rest = "", text
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    # The user information ends at the authority's last "@"; in a malformed URL (a password
    # with an unescaped "/", "?" or "#") at the last "@" of all, so it is masked too.
    at = rest.rfind("@", 0, end) if "@" in rest[:end] else rest.rfind("@")
    if at < 0:
        return text
    user, colon, _password = rest[:at].partition(":")
    if not colon:
        return text
    return f"{scheme}{sep}{user}:{MASK}{rest[at:]}"


def url_password(raw: str) -> str | None:
    """The password inside a URL setting, if any (so logs can be kept free of it)."""
    try:
        password = urlsplit(raw).password
    except ValueError:
        return None
    return unquote(password) if password else None


# ---------------------------------------------------------------- parsers
# Each parser takes the raw string and returns the typed value or raises
# ValueError with a message that completes "NAME: <message>".


def parse_database_url(raw: str) -> str:
    raw = raw.strip()
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if not scheme:
        raise ValueError(f"not a URL: {mask_url(raw)!r}; use sqlite:///path/to/file.db or postgresql://user@host/db")
    if scheme == "postgres":
        raw = "postgresql" + raw[len("postgres") :]
        scheme = "postgresql"
    if scheme in ("postgresql", "postgresql+psycopg"):
        # psycopg 3 is the driver billsync installs.
        rest = raw.split("://", 1)[1]
        if not urlsplit(raw).hostname and "host=" not in raw:
            raise ValueError(f"no host in {mask_url(raw)!r}; use postgresql://user@host:5432/dbname")
        return "postgresql+psycopg://" + rest
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///"):
            raise ValueError(f"{mask_url(raw)!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
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


def parse_percent(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a percentage such as 20 or 8.875") from None
    if not value.is_finite() or not (Decimal(0) <= value <= Decimal(100)):
        raise ValueError(f"{raw!r} must be a percentage between 0 and 100")
    return value


def parse_decimal(above: Decimal, maximum: Decimal) -> Callable[[str], Decimal]:
    """A decimal number greater than ``above`` and at most ``maximum``."""

    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise ValueError(f"{raw!r} is not a number such as 4.5") from None
        if not value.is_finite() or not (above < value <= maximum):
            raise ValueError(f"{raw!r} must be greater than {above} and at most {maximum}")
        return value

    return parse


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


def parse_date(raw: str) -> date:
    value = raw.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{raw!r} is not a date; use YYYY-MM-DD, for example 2026-12-01")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a valid date ({exc})") from None


def parse_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{mask_url(raw)!r} is not an http(s) URL")
    return raw.strip().rstrip("/")


def parse_https_url(raw: str) -> str:
    value = parse_url(raw)
    if not value.startswith("https://"):
        raise ValueError(f"{mask_url(raw)!r} must use https:// (Salesforce is only reached over TLS)")
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


def parse_currency(raw: str) -> str:
    """An ISO 4217 currency billsync knows (``billing_engine.money.MINOR_UNITS``)."""
    from billing_engine.money import MINOR_UNITS

    code = raw.strip().upper()
    if code not in MINOR_UNITS:
        raise ValueError(f"{raw!r} is not a currency billsync knows; use an ISO 4217 code such as EUR or USD")
    return code


def parse_country(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{raw!r} is not an ISO 3166 two-letter country code such as FR")
    return value.upper()


def parse_vat_id(raw: str) -> str:
    """An EU VAT number, checked (format and check digits) with python-stdnum: ``FR 40 303 265 045``
    → ``FR40303265045``."""
    from stdnum import exceptions
    from stdnum.eu import vat

    try:
        return vat.validate(raw.strip())
    except exceptions.ValidationError as exc:
        raise ValueError(f"{raw!r} is not a valid EU VAT number ({exc})") from None


def parse_company_id(raw: str) -> str:
    """A company registration number: a French SIREN (9 digits) or SIRET (14) is checked with its
    Luhn key; anything else is kept as written (another country's register)."""
    from stdnum import exceptions
    from stdnum.fr import siren, siret

    value = raw.strip()
    digits = re.sub(r"[\s.]", "", value)
    if digits.isdigit() and len(digits) in (9, 14):
        module = siren if len(digits) == 9 else siret
        try:
            return module.validate(digits)
        except exceptions.ValidationError as exc:
            kind = "SIREN" if len(digits) == 9 else "SIRET"
            raise ValueError(f"{raw!r} is not a valid {kind} ({exc})") from None
    if not value or len(value) > 64:
        raise ValueError(f"{raw!r} is not a company registration number")
    return value


def parse_image_file(raw: str) -> Path:
    path = parse_existing_file(raw)
    with path.open("rb") as handle:
        head = handle.read(8)
    if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8")):
        raise ValueError(f"{raw}: not a PNG or JPEG image")
    return path


def parse_api_version(raw: str) -> str:
    if not re.fullmatch(r"\d{2}\.0", raw.strip()):
        raise ValueError(f"{raw!r} is not a Salesforce API version such as 59.0")
    return raw.strip()


def parse_org_id(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"00D[a-zA-Z0-9]{12}([a-zA-Z0-9]{3})?", value):
        raise ValueError(f"{raw!r} is not an organization id (15 or 18 characters starting with 00D)")
    if len(value) == 18 and to_id18(value[:15]) != value:
        raise ValueError(f"{raw!r} has a wrong 18-character suffix (expected {to_id18(value[:15])[15:]!r}); "
                         "copy the id again from Setup > Company Information")
    return value


@dataclass(frozen=True)
class PreviewStages:
    """Which open Opportunities billsync previews (``PREVIEW_STAGES``): every open stage
    (``open``), none (``none``), or the listed ``StageName`` values (open ones only)."""

    enabled: bool = True
    stages: tuple[str, ...] = ()  # empty: every open stage

    def __str__(self) -> str:
        if not self.enabled:
            return "none"
        return ", ".join(self.stages) if self.stages else "open"


def parse_preview_stages(raw: str) -> PreviewStages:
    value = raw.strip()
    if value.lower() == "open":
        return PreviewStages()
    if value.lower() == "none":
        return PreviewStages(enabled=False)
    stages = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    if not stages:
        raise ValueError(f"{raw!r} names no stage; use open, none, or stage names separated by commas")
    bad = [s for s in stages if len(s) > 255 or "'" in s or "\\" in s]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a stage name")
    return PreviewStages(stages=stages)


def parse_iban(raw: str) -> str:
    """An IBAN (spaces allowed), checked by schwifty (country format, check digits, national
    format where known); kept in its compact form."""
    from schwifty import IBAN

    try:
        return str(IBAN(raw.strip(), validate_bban=True).compact)
    except ValueError as exc:
        raise ValueError(f"{raw.strip()!r} is not a valid IBAN ({exc})") from None


def parse_bic(raw: str) -> str:
    from schwifty import BIC

    try:
        return str(BIC(raw.strip()).compact)
    except ValueError as exc:
        raise ValueError(f"{raw.strip()!r} is not a valid BIC ({exc})") from None


def parse_creditor_id(raw: str) -> str:
    from billing_engine.collections import check_creditor_identifier
    from billing_engine.errors import InvalidInputError

    try:
        return check_creditor_identifier(raw)
    except InvalidInputError as exc:
        raise ValueError(exc.reason) from None


def parse_dunning_schedule(raw: str) -> tuple[Any, ...]:
    """``3:reminder,15:second,30:final`` (days after the due date: step), or ``none``."""
    from billing_engine.collections import parse_dunning_schedule as parse
    from billing_engine.errors import InvalidInputError

    if raw.strip().lower() == "none":
        return parse("")
    try:
        return parse(raw)
    except InvalidInputError as exc:
        raise ValueError(exc.reason) from None


def parse_mailbox(raw: str) -> str:
    """An e-mail address, optionally with a display name: ``Acme Billing <billing@acme.example>``."""
    from email.utils import parseaddr

    name, address = parseaddr(raw.strip())
    if not address or "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ValueError(f"{raw!r} is not an e-mail address such as 'Acme Billing <billing@acme.example>'")
    return raw.strip()


def parse_positive_amount(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not an amount such as 40 or 40.00") from None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{raw!r} must be an amount of at least 0 with at most 2 decimals")
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
    # Salesforce connection (connector/salesforce); cross-checked in _check_salesforce.
    Var("SF_AUTH", parse_choice("client_credentials", "jwt", "password", "session", "none"), "none",
        "How billsync logs in to Salesforce: client_credentials, jwt, password, session, or none (not connected)."),
    Var("SF_LOGIN_URL", parse_https_url, "https://login.salesforce.com",
        "OAuth server: https://login.salesforce.com, https://test.salesforce.com or your My Domain URL."),
    Var("SF_CLIENT_ID", parse_text, None, "Connected app consumer key (client_credentials, jwt, password)."),
    Var("SF_CLIENT_SECRET", parse_text, None, "Connected app consumer secret (client_credentials, password).",
        secret=True),
    Var("SF_USERNAME", parse_text, None, "Salesforce username (jwt, password)."),
    Var("SF_PASSWORD", parse_text, None, "Salesforce password (password).", secret=True),
    Var("SF_SECURITY_TOKEN", parse_text, None, "Security token appended to the password (password).", secret=True),
    Var("SF_PRIVATE_KEY_FILE", parse_existing_file, None, "PEM RSA private key that signs the JWT (jwt)."),
    Var("SF_JWT_AUDIENCE", parse_https_url, None, "JWT aud claim (jwt); default login/test.salesforce.com for a My Domain, else SF_LOGIN_URL."),
    Var("SF_INSTANCE_URL", parse_https_url, None, "Instance URL of a pre-issued session (session)."),
    Var("SF_ACCESS_TOKEN", parse_text, None, "Pre-issued access token (session); cannot be renewed.", secret=True),
    Var("SF_API_VERSION", parse_api_version, "59.0", "Salesforce REST API version (46.0 or later)."),
    Var("SF_CA_BUNDLE", parse_existing_file, None,
        "PEM CA bundle that verifies Salesforce's TLS certificate (e.g. the local sandbox's CA); "
        "used even when REQUESTS_CA_BUNDLE is set."),
    Var("SF_ORG_ID", parse_org_id, None, "Expected organization id (00D...); a login to another org fails."),
    Var("SF_TIMEOUT_SECONDS", parse_int(1, 600), "30", "Read timeout of every Salesforce call (connect: at most 10)."),
    Var("SF_RETRY_ATTEMPTS", parse_int(1, 20), "5",
        "Attempts per call for transient failures (timeouts, 5xx, UNABLE_TO_LOCK_ROW), first try included."),
    Var("SF_RETRY_MAX_SECONDS", parse_int(1, 3600), "30", "Longest wait between two attempts (exponential backoff cap)."),
    Var("SF_API_BUDGET_SHARE", parse_share, "0.5",
        "Share of the org's daily API allocation billsync may use before it stops syncing (0.5 = half)."),
    Var("SF_LIMIT_PAUSE_SECONDS", parse_int(1, 86400), "900",
        "How long sync pauses after REQUEST_LIMIT_EXCEEDED or reaching its API budget."),
    # Webhooks (connector/webhooks): Outbound Messages and signed CDC events.
    Var("WEBHOOK_TOKEN", parse_text, None,
        "Secret path segment required on /webhooks/salesforce/outbound-message/<token> when set.", secret=True),
    Var("WEBHOOK_BASIC_USER", parse_text, None, "HTTP basic-auth user required on Outbound Messages when set."),
    Var("WEBHOOK_BASIC_PASSWORD", parse_text, None, "HTTP basic-auth password for WEBHOOK_BASIC_USER.", secret=True),
    Var("CDC_HMAC_SECRET", parse_text, None,
        "Shared secret of the CDC relay's HMAC-SHA256 signature; the CDC endpoint refuses events when unset.",
        secret=True),
    Var("CDC_REPLAY_WINDOW_SECONDS", parse_int(10, 86400), "300",
        "Oldest signature timestamp accepted on CDC events, in seconds."),
    Var("WEBHOOK_MAX_BODY_BYTES", parse_int(1024, 104857600), "1048576",
        "Largest webhook body accepted; larger ones get 413."),
    # Database timeouts (docs/operations.md, Timeouts).
    Var("DB_STATEMENT_TIMEOUT_SECONDS", parse_int(1, 600), "5",
        "Longest statement of a web request on PostgreSQL; then the request gets 503 (worker, clock, CLI: no bound)."),
    Var("DB_LOCK_TIMEOUT_SECONDS", parse_int(1, 600), "3",
        "Longest lock wait of a web request (PostgreSQL lock_timeout, SQLite busy timeout); then 503."),
    Var("DB_CONNECT_TIMEOUT_SECONDS", parse_int(1, 300), "5", "Longest wait to open a database connection."),
    Var("DB_POOL_TIMEOUT_SECONDS", parse_int(1, 300), "5",
        "Longest wait for a free connection of the process's pool (5 per process, plus 10 overflow)."),
    Var("WEB_READ_TIMEOUT_SECONDS", parse_int(1, 300), "10",
        "Time a web client has to send a request's line, headers and body, from its first byte; then it is cut off."),
    # The JSON API (connector/api, docs/api.md).
    Var("API_IDEMPOTENCY_HOURS", parse_int(24, 8760), "24",
        "How long a POST's Idempotency-Key and its stored response are kept (at least 24 hours)."),
    # The MCP server (billsync mcp, docs/intelligence.md): the API key its tools read with.
    Var("BILLSYNC_API_KEY", parse_text, None,
        "The API key (read scope) `billsync mcp` serves its read-only tools with; no other process uses it.",
        secret=True),
    # The web console (connector/console, docs/console.md).
    Var("SECRET_KEY", parse_text, None,
        "Signs the console's session cookies and CSRF tokens (a long random string); unset: one is generated "
        "once and kept in the database.", secret=True),
    Var("CONSOLE_LOCKOUT_ATTEMPTS", parse_int(1, 100), "5",
        "Wrong passwords in a row that lock a console user out."),
    Var("CONSOLE_LOCKOUT_MINUTES", parse_int(1, 10080), "15",
        "How long a locked-out console user cannot sign in."),
    # Rate limits of the public pages (connector/limits.py): checkout and portal link requests.
    Var("PROXY_HOPS", parse_int(0, 5), "0",
        "Reverse proxies in front of the web process that set X-Forwarded-For/-Proto (a load balancer: 1); "
        "the client's address (what the rate limits count) is then read from them. 0: the headers are ignored."),
    Var("RATE_LIMIT_STORAGE_URI", parse_text, "memory://",
        "Where request counts for rate limits are kept: memory:// (one process) or redis://host:port/db "
        "(shared by every web process); a password in it is masked wherever billsync shows settings."),
    # The customer portal (connector/portal, docs/self-service.md).
    Var("PORTAL_URL", parse_url, "http://localhost:5000",
        "The address customers open billsync's public pages at: portal links sent by e-mail or printed start "
        "with it."),
    Var("PORTAL_LINK_MINUTES", parse_int(5, 10080), "60",
        "How long a portal link may be opened (once) after it is made."),
    Var("PORTAL_SESSION_MINUTES", parse_int(5, 1440), "60",
        "How long a customer's portal session lasts after opening a link."),
    Var("PORTAL_PREVIEW_MINUTES", parse_int(1, 1440), "30",
        "How long a previewed portal change may be confirmed."),
    Var("PORTAL_UPGRADE_TIMING", parse_choice("now", "period_end"), "now",
        "When a quantity increase made in the portal takes effect: now (prorated) or period_end."),
    Var("PORTAL_DOWNGRADE_TIMING", parse_choice("now", "period_end"), "period_end",
        "When a quantity decrease made in the portal takes effect: period_end or now (prorated credit)."),
    # Mappings, sync and the clock's schedule.
    Var("MAPPINGS_DIR", parse_path, None,
        "Folder of admin mapping files that override or extend mappings/defaults/*.yaml (file by file)."),
    Var("PULL_INTERVAL_SECONDS", parse_int(10, 86400), "300", "How often the clock pulls changes from Salesforce."),
    Var("PUSH_INTERVAL_SECONDS", parse_int(5, 86400), "60", "How often the clock pushes the outbox to Salesforce."),
    Var("PREVIEW_STAGES", parse_preview_stages, "open",
        "Open Opportunities whose first invoice, MRR and ARR billsync previews on the deal: open (every open "
        "stage), none, or StageName values separated by commas."),
    Var("BILL_RUN_AT", parse_time_of_day, "02:00", "Local time (BILLSYNC_TIMEZONE) of the daily bill run."),
    Var("RECONCILE_AT", parse_time_of_day, "03:30", "Local time of the nightly reconciliation."),
    Var("CLOCK_LOCK_POLL_SECONDS", parse_int(1, 60), "5",
        "How often a standby clock tries to take the lead, and the leading clock checks it still holds it."),
    Var("DEFAULT_TAX_RATE", parse_percent, "0",
        "The seller's tax rate in percent for customers whose Account has no Tax_Rate__c (e.g. 20)."),
    Var("HOLD_INVOICES_FOR_REVIEW", parse_bool, "false",
        "true leaves bill-run invoices as drafts for finance to review instead of finalizing them."),
    Var("BILL_RUN_MAX_PERIODS", parse_int(1, 1000), "3",
        "A bill-run invoice covering more recurring periods of one subscription (back-billing) "
        "stays a draft held for review."),
    # The anomaly guard (docs/intelligence.md): each bill-run invoice scored against the customer's history.
    Var("ANOMALY_GUARD", parse_choice("off", "hold", "flag"), "hold",
        "hold: a bill-run invoice far from the customer's history stays a draft held for review with the "
        "reasons; flag: it is finalized and the reasons kept on it; off: no screening."),
    Var("ANOMALY_Z_THRESHOLD", parse_decimal(Decimal(0), Decimal(100)), "4.5",
        "Robust z-score (distance from the median in median absolute deviations, on a log scale) from which a "
        "quantity, usage or total is far from the customer's recent invoices."),
    Var("ANOMALY_MIN_FACTOR", parse_decimal(Decimal(1), Decimal(1000)), "2",
        "… and it must be at least this many times the median (or this fraction of it) as well."),
    Var("ANOMALY_PRICE_TOLERANCE_PERCENT", parse_percent, "1",
        "A price per unit or a discount moving by more than this (percent) with no amendment or renewal "
        "behind it is reported."),
    Var("ANOMALY_MIN_HISTORY", parse_int(1, 100), "3",
        "Previous invoices needed before usage and totals are compared (a recurring quantity needs one)."),
    Var("ANOMALY_HISTORY_MONTHS", parse_int(1, 60), "13",
        "How many months of the customer's invoices are the history (13 keeps the same month last year)."),
    Var("ANOMALY_BACKBILL_DAYS", parse_int(1, 3660), "92",
        "A line whose period starts more days than this (or than the customer's usual) before the bill date "
        "is reported as back-billed."),
    # Churn risk (docs/intelligence.md): each paying customer scored 0–100 with its three main reasons.
    Var("CHURN_RISK", parse_choice("off", "on"), "on",
        "on: the clock scores every paying customer daily at CHURN_SCORE_AT and trains the model monthly; "
        "the scores are pushed to the Account (Churn_Risk__c); off: nothing is scored or trained."),
    Var("CHURN_MIN_CHURNED", parse_int(1, 1000000), "30",
        "Churned customers the history must hold before a model trained on it replaces the baseline rules."),
    Var("CHURN_SCORE_AT", parse_time_of_day, "04:30",
        "Local time of the daily churn scoring (and, on the first of the month, of the model's training)."),
    Var("BILLING_STARTS_ON", parse_date, None,
        "The cut-over: the first day billsync invoices (YYYY-MM-DD); nothing before it is billed. "
        "Required for bill runs once Salesforce is connected."),
    # The MRR forecast (docs/intelligence.md): contracted MRR ahead, expected churn and expansion from history.
    Var("FORECAST", parse_choice("on", "off"), "on",
        "on: the MRR forecast is shown (dashboard, API, CLI) and the clock stores it each month; off: neither."),
    Var("FORECAST_HISTORY_MONTHS", parse_int(1, 60), "12",
        "How many complete months of MRR movements the forecast's churn and expansion rates come from."),
    Var("FORECAST_AT", parse_time_of_day, "04:30",
        "Local time (BILLSYNC_TIMEZONE) on the 1st of each month when the clock stores the month's forecast."),
    # Collections (docs/payments.md): overdue invoices, SEPA direct debits, dunning, late charges.
    Var("COLLECTIONS_AT", parse_time_of_day, "00:30",
        "Local time of the daily collections job: direct debits due are booked, unpaid invoices past "
        "their due date become overdue."),
    Var("SEPA_CREDITOR_NAME", parse_text, None, "The creditor's name in SEPA direct-debit files (at most 70 characters)."),
    Var("SEPA_CREDITOR_IBAN", parse_iban, None, "The account SEPA direct debits are collected to."),
    Var("SEPA_CREDITOR_BIC", parse_bic, None, "The BIC of that account's bank (required by pain.008.001.02)."),
    Var("SEPA_CREDITOR_ID", parse_creditor_id, None,
        "The SEPA creditor identifier (ICS in France, e.g. FR72ZZZ123456), given by the bank."),
    Var("SEPA_SCHEMA", parse_choice("pain.008.001.08", "pain.008.001.02"), "pain.008.001.08",
        "The pain.008 version of direct-debit files: pain.008.001.08 (ISO 20022 2019) or pain.008.001.02."),
    Var("SEPA_INSTRUMENT", parse_choice("core", "b2b"), "core",
        "The SEPA direct-debit scheme of the mandates: core or b2b."),
    Var("DUNNING_SCHEDULE", parse_dunning_schedule, "3:reminder,15:second,30:final",
        "Reminders for unpaid invoices: DAYS:STEP after the due date, steps reminder, second, final; none for no "
        "dunning."),
    Var("DUNNING_AT", parse_time_of_day, "09:00", "Local time of the daily dunning job that sends the reminders."),
    Var("MAIL_FROM", parse_mailbox, "billsync <billing@localhost>", "The sender of billsync's e-mails."),
    Var("SMTP_HOST", parse_text, None,
        "SMTP server for billsync's e-mails; unset: each message is written as an .eml file to MAIL_DIR."),
    Var("SMTP_PORT", parse_int(1, 65535), "587", "SMTP port."),
    Var("SMTP_SECURITY", parse_choice("starttls", "ssl", "none"), "starttls",
        "SMTP connection security: starttls, ssl (implicit TLS, usually port 465) or none."),
    Var("SMTP_USERNAME", parse_text, None, "SMTP login (none: no authentication)."),
    Var("SMTP_PASSWORD", parse_text, None, "SMTP password.", secret=True),
    Var("MAIL_DIR", parse_path, "instance/mail", "Where e-mails are written as .eml files when SMTP_HOST is unset."),
    Var("LATE_INTEREST_RATE", parse_percent, None,
        "Yearly late-payment interest rate in percent (France: the ECB refinancing rate + 10 points unless the "
        "contract says otherwise); unset: late charges need a rate given per request."),
    Var("LATE_PAYMENT_INDEMNITY", parse_positive_amount, "40",
        "The fixed recovery indemnity per invoice paid late, in EUR (French B2B: 40)."),
    Var("USAGE_MAX_AGE_DAYS", parse_int(1, 3650), "35",
        "Oldest usage event accepted, in days before now (older events are refused one by one)."),
    Var("REPORTING_CURRENCY", parse_currency, "EUR",
        "The currency the dashboard adds every currency's figures up in, at the month's exchange rates."),
    # The seller's identity printed on every invoice document (docs/invoices.md, Seller settings).
    # Each is checked when set; invoice documents are produced only when every required one is set.
    Var("SELLER_NAME", parse_text, None, "The seller's legal name, as registered."),
    Var("SELLER_STREET", parse_text, None, "The seller's street address."),
    Var("SELLER_POSTAL_CODE", parse_text, None, "The seller's postal code."),
    Var("SELLER_CITY", parse_text, None, "The seller's city."),
    Var("SELLER_COUNTRY", parse_country, None,
        "The seller's country (ISO 3166 two letters, e.g. FR): decides domestic, intra-EU and export VAT."),
    Var("SELLER_COMPANY_ID", parse_company_id, None,
        "The seller's registration number: SIREN (9 digits) or SIRET (14) in France, checked with its key."),
    Var("SELLER_VAT_ID", parse_vat_id, None, "The seller's EU VAT number (e.g. FR40303265045), checked."),
    Var("SELLER_IBAN", parse_iban, None, "The account customers pay into (IBAN, checked), printed with the BIC."),
    Var("SELLER_BIC", parse_bic, None, "The BIC of SELLER_IBAN's bank."),
    Var("SELLER_EARLY_PAYMENT_DISCOUNT", parse_text, None,
        "Early-payment discount terms printed on invoices, or none (printed: no discount for early payment)."),
    Var("SELLER_LEGAL_FORM", parse_text, None,
        "Optional line under the seller's name: legal form, share capital, register (e.g. SAS au capital de "
        "10 000 EUR, RCS Paris)."),
    Var("SELLER_CONTACT", parse_text, None, "Optional contact printed on invoices (billing e-mail, phone)."),
    Var("SELLER_LOGO", parse_image_file, None, "Optional PNG or JPEG logo printed at the top of invoices."),
    Var("DOCUMENT_FONT_DIR", parse_path, "/usr/share/fonts/truetype/dejavu",
        "Folder holding DejaVuSans.ttf and DejaVuSans-Bold.ttf, embedded in every invoice PDF "
        "(Debian package fonts-dejavu-core)."),
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    log_level: str
    log_format: str
    port: int
    billsync_timezone: str
    sf_auth: str
    sf_login_url: str
    sf_client_id: str | None
    sf_client_secret: str | None
    sf_username: str | None
    sf_password: str | None
    sf_security_token: str | None
    sf_private_key_file: Path | None
    sf_jwt_audience: str | None
    sf_instance_url: str | None
    sf_access_token: str | None
    sf_api_version: str
    sf_ca_bundle: Path | None
    sf_org_id: str | None
    sf_timeout_seconds: int
    sf_retry_attempts: int
    sf_retry_max_seconds: int
    sf_api_budget_share: Decimal
    sf_limit_pause_seconds: int
    webhook_token: str | None
    webhook_basic_user: str | None
    webhook_basic_password: str | None
    cdc_hmac_secret: str | None
    cdc_replay_window_seconds: int
    webhook_max_body_bytes: int
    db_statement_timeout_seconds: int
    db_lock_timeout_seconds: int
    db_connect_timeout_seconds: int
    db_pool_timeout_seconds: int
    web_read_timeout_seconds: int
    api_idempotency_hours: int
    billsync_api_key: str | None
    secret_key: str | None
    console_lockout_attempts: int
    console_lockout_minutes: int
    proxy_hops: int
    rate_limit_storage_uri: str
    portal_url: str
    portal_link_minutes: int
    portal_session_minutes: int
    portal_preview_minutes: int
    portal_upgrade_timing: str
    portal_downgrade_timing: str
    mappings_dir: Path | None
    pull_interval_seconds: int
    push_interval_seconds: int
    preview_stages: PreviewStages
    bill_run_at: time
    reconcile_at: time
    clock_lock_poll_seconds: int
    default_tax_rate: Decimal
    hold_invoices_for_review: bool
    bill_run_max_periods: int
    anomaly_guard: str
    anomaly_z_threshold: Decimal
    anomaly_min_factor: Decimal
    anomaly_price_tolerance_percent: Decimal
    anomaly_min_history: int
    anomaly_history_months: int
    anomaly_backbill_days: int
    churn_risk: str
    churn_min_churned: int
    churn_score_at: time
    forecast: str
    forecast_history_months: int
    forecast_at: time
    billing_starts_on: date | None
    collections_at: time
    sepa_creditor_name: str | None
    sepa_creditor_iban: str | None
    sepa_creditor_bic: str | None
    sepa_creditor_id: str | None
    sepa_schema: str
    sepa_instrument: str
    dunning_schedule: tuple[Any, ...]
    dunning_at: time
    mail_from: str
    smtp_host: str | None
    smtp_port: int
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None
    mail_dir: Path
    late_interest_rate: Decimal | None
    late_payment_indemnity: Decimal
    usage_max_age_days: int
    reporting_currency: str
    seller_name: str | None
    seller_street: str | None
    seller_postal_code: str | None
    seller_city: str | None
    seller_country: str | None
    seller_company_id: str | None
    seller_vat_id: str | None
    seller_iban: str | None
    seller_bic: str | None
    seller_early_payment_discount: str | None
    seller_legal_form: str | None
    seller_contact: str | None
    seller_logo: Path | None
    document_font_dir: Path

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def display_items(self) -> list[tuple[str, str]]:
        """Every setting as ``(NAME, shown value)``, the way ``billsync config`` prints it:
        secrets as ``********`` and credentials inside URLs masked."""
        items = []
        for var in VARIABLES:
            value = getattr(self, var.name.lower())
            shown = "" if value is None else str(value)
            if var.secret and shown:
                shown = MASK
            elif "://" in shown:
                shown = mask_url(shown)
            items.append((var.name, shown))
        return items

    def secret_values(self) -> list[str]:
        """The values no log line may contain: every secret setting and the password in DATABASE_URL."""
        values = [getattr(self, var.name.lower()) for var in VARIABLES if var.secret]
        values.append(url_password(self.database_url))
        return [value for value in values if value]

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
    problems.extend(_check_salesforce(values, env))
    problems.extend(_check_seller(values))
    if problems:
        raise SettingsError(problems)
    return Settings(**values)


_SF_REQUIRED = {
    "client_credentials": ("SF_CLIENT_ID", "SF_CLIENT_SECRET"),
    "jwt": ("SF_CLIENT_ID", "SF_USERNAME", "SF_PRIVATE_KEY_FILE"),
    "password": ("SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_USERNAME", "SF_PASSWORD"),
    "session": ("SF_INSTANCE_URL", "SF_ACCESS_TOKEN"),
}


def _check_salesforce(values: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Cross-field checks of the SF_* variables: one line per problem."""
    mode = values.get("sf_auth")
    problems = []
    for name in _SF_REQUIRED.get(mode or "", ()):
        # A variable that failed to parse already has its own line.
        if values.get(name.lower()) in (None, "") and not env.get(name):
            problems.append(f"{name}: required when SF_AUTH={mode}")
    login_host = urlsplit(values.get("sf_login_url") or "").hostname or ""
    if mode == "client_credentials" and login_host in ("login.salesforce.com", "test.salesforce.com"):
        problems.append(f"SF_LOGIN_URL: the client credentials flow needs your My Domain URL "
                        f"(https://yourdomain.my.salesforce.com), not {login_host}")
    version = values.get("sf_api_version")
    if version and int(version.split(".")[0]) < 46:
        problems.append(f"SF_API_VERSION: {version} is too old; billsync needs 46.0 or later (upsert results)")
    if bool(values.get("webhook_basic_user")) != bool(values.get("webhook_basic_password")):
        problems.append("WEBHOOK_BASIC_PASSWORD: WEBHOOK_BASIC_USER and WEBHOOK_BASIC_PASSWORD go together")
    return problems


def _check_seller(values: dict[str, Any]) -> list[str]:
    """The seller's VAT number and SIREN/SIRET agree with its country: one line per problem."""
    country, vat_id, company = (values.get(k) for k in ("seller_country", "seller_vat_id", "seller_company_id"))
    problems = []
    if country and vat_id and vat_id[:2] != ("EL" if country == "GR" else country):
        problems.append(f"SELLER_VAT_ID: {vat_id} is not a VAT number of SELLER_COUNTRY {country}")
    if country == "FR" and company and not (company.isdigit() and len(company) in (9, 14)):
        problems.append(f"SELLER_COMPANY_ID: a French seller's number is its SIREN (9 digits) or SIRET (14), "
                        f"not {company!r}")
    if country == "FR" and company and vat_id and vat_id.startswith("FR") and vat_id[4:13] != company[:9]:
        problems.append(f"SELLER_VAT_ID: {vat_id} is not the VAT number of SIREN {company[:9]}")
    return problems
