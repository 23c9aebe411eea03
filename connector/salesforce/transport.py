"""The HTTP session every Salesforce request goes through (simple-salesforce's and our token calls).

It guarantees three things for every request, whoever sends it:

- **An explicit timeout** (connect, read), unless the caller passed its own.
- **TLS verified against SF_CA_BUNDLE** when set. requests lets ``REQUESTS_CA_BUNDLE``
  from the environment beat ``Session.verify`` (requests#3829), and simple-salesforce
  never passes ``verify`` per request; so ``request()`` passes it explicitly. Verification
  is never turned off and URLs are never rewritten.
- **API usage is read** from ``Sforce-Limit-Info`` on every response, and requests are counted.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

#: Connect timeout ceiling: a connection either opens quickly or not at all.
CONNECT_TIMEOUT_SECONDS = 10.0

_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(?P<used>\d+)/(?P<max>\d+)")


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API usage as last reported by Salesforce."""

    used: int
    max: int

    @property
    def share(self) -> float:
        return self.used / self.max if self.max else 1.0


def parse_limit_info(header: str | None) -> ApiUsage | None:
    """``api-usage=10018/100000; per-app-api-usage=...`` → ApiUsage(10018, 100000); None if absent."""
    if not header:
        return None
    match = _API_USAGE.search(header)
    if not match:
        return None
    return ApiUsage(int(match.group("used")), int(match.group("max")))


class SalesforceSession(requests.Session):
    """A ``requests.Session`` with a default timeout, a pinned CA bundle, a call counter and usage tracking."""

    def __init__(self, *, timeout_seconds: float, ca_bundle: str | Path | None = None,
                 client_name: str | None = None):
        super().__init__()
        if client_name:
            # Salesforce records this in CDC's changeOrigin (";client=<name>"), which is how
            # webhook processing recognises billsync's own writes and never loops.
            self.headers["Sforce-Call-Options"] = f"client={client_name}"
        self.default_timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout_seconds), timeout_seconds)
        self.ca_bundle = str(ca_bundle) if ca_bundle else None
        if self.ca_bundle:
            self.verify = self.ca_bundle
        self._lock = threading.Lock()
        self.calls_made = 0
        self.api_usage: ApiUsage | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        if self.ca_bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = self.ca_bundle
        with self._lock:
            self.calls_made += 1
        response = super().request(method, url, *args, **kwargs)
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            with self._lock:
                self.api_usage = usage
        return response
