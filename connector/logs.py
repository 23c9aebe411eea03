"""Logging for every process: one line per event, text or JSON (LOG_FORMAT).

Every logged value is made safe before it is written (docs/operations.md, *Logs*):

- control characters, Unicode line separators and lone surrogates are escaped
  (``\\n`` becomes ``\\x0a``), so a value taken from a request (a URL-decoded path,
  a header) can never start a forged line or break the log's encoding;
- the values of the secret settings handed to ``configure_logging`` are replaced
  by ``***`` wherever they appear, as a last line of defence (the code that logs
  is expected never to log them in the first place).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: C0 and C1 control characters, DEL, the Unicode line and paragraph separators, lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: Shortest secret the formatters look for (a shorter one would mangle ordinary words).
MIN_REDACTED_LENGTH = 6
REDACTED = "***"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: Any) -> str:
    """``value`` as one line of printable text: control characters, line separators and
    lone surrogates are written as ``\\xNN``/``\\uNNNN`` escapes."""
    return _UNSAFE.sub(_escape, value if isinstance(value, str) else str(value))


def redact_segments(path: str, prefixes: Iterable[str]) -> str:
    """``path`` with the segment after each secret prefix replaced by ``***``:
    ``/webhooks/salesforce/outbound-message/s3cret`` -> ``/webhooks/salesforce/outbound-message/***``.
    The match ignores case, so a mistyped route still has its secret hidden."""
    for prefix in prefixes:
        path = re.sub(f"(?i)({re.escape(prefix.rstrip('/'))}/+)[^/]+", rf"\g<1>{REDACTED}", path)
    return path


class _SafeFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, secrets: Iterable[str | None] = ()) -> None:
        super().__init__(fmt)
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)

    def clean(self, value: Any) -> str:
        text = safe_text(value)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def clean_block(self, text: str) -> str:
        """A multi-line block (a traceback): secrets hidden, line breaks kept."""
        return "\n".join(self.clean(line) for line in text.split("\n"))


class JsonFormatter(_SafeFormatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.clean(record.getMessage()),
        }
        for key, value in getattr(record, "fields", {}).items():
            payload[self.clean(key)] = value if isinstance(value, bool | int | float | None) else self.clean(value)
        if record.exc_info:
            payload["exception"] = self.clean_block(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class TextFormatter(_SafeFormatter):
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", secrets)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        extra = getattr(record, "fields", {})
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return self.clean(line)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return self.clean_block(super().formatException(ei))


def for_people(record: logging.LogRecord) -> bool:
    """Text logs are read on a terminal: records logged with ``extra={"terminal": False}``
    (a command's traceback, already summed up in one ``error:`` line) stay out of them."""
    return getattr(record, "terminal", True) is not False


def configure_logging(level: str, fmt: str, secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr at ``level`` in ``fmt`` (text or json); ``secrets`` are never written."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    secrets = tuple(secrets)
    handler.setFormatter(JsonFormatter(secrets=secrets) if fmt == "json" else TextFormatter(secrets))
    if fmt != "json":
        handler.addFilter(for_people)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Werkzeug's own access log would duplicate ours (and print the raw path).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
