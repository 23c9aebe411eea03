"""Rate limits of the public pages (checkout, portal link requests), with Flask-Limiter.

A route opts in with ``@limiter.limit("5 per minute")``; nothing else is limited. The counts
are kept where ``RATE_LIMIT_STORAGE_URI`` says: in the process's memory by default, in Redis
when several web processes must share them. A refused request gets 429 with a Retry-After."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def install_limits(app: Flask, storage_uri: str) -> None:
    app.config["RATELIMIT_STORAGE_URI"] = storage_uri
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
