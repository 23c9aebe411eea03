"""The JSON API in tests: API keys, and the app served over real HTTP on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask
from werkzeug.serving import make_server

from connector.api.auth import create_key


def new_key(app: Flask, name: str, *scopes: str) -> str:
    """A new API key (its secret) with ``scopes`` on ``app``'s database."""
    _, secret = create_key(app.extensions["billsync"].engine, name, scopes, now=datetime.now(UTC))
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """``app`` served by a threaded HTTP server on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="api-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
