"""Rate limits of the public pages (checkout, portal link requests), with Flask-Limiter.

A route opts in with ``@limiter.limit("5 per minute")``; nothing else is limited. The counts
are kept where ``RATE_LIMIT_STORAGE_URI`` says: in the process's memory by default, in Redis
when several web processes must share them. A refused request gets 429 with a Retry-After.

A client is its address. Behind reverse proxies (``PROXY_HOPS``), that is the address the
nearest trusted proxy saw, from ``X-Forwarded-For`` (werkzeug's ``ProxyFix``); without them the
header is ignored, so a client cannot pick its own address."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def install_limits(app: Flask, storage_uri: str, *, proxy_hops: int = 0) -> None:
    if proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxy_hops, x_proto=proxy_hops)  # type: ignore[method-assign]
    app.config["RATELIMIT_STORAGE_URI"] = storage_uri
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
