"""``SandboxServer``: the whole sandbox org behind an HTTPS server on loopback.

    with SandboxServer(data="small") as sb:          # port 0: a free port
        token = sb.issue_token()["access_token"]
        sf = Salesforce(instance_url=sb.url, session_id=token, session=sb.requests_session())

State lives in memory, or in SQLite with ``db_path``. The CA, server certificate,
connected-app credentials and JWT key pair live in ``state_dir`` (default
``instance/sandbox``) so that restarts reuse them.
"""

from __future__ import annotations

import gc
import secrets
import threading
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sfsandbox import ids
from sfsandbox.app import SandboxApp
from sfsandbox.auth import Authority, Credentials, ensure_jwt_keys
from sfsandbox.faults import Faults, FaultSettings
from sfsandbox.notify import Backoff, CdcConfig, CdcPublisher, OutboundMessage, OutboundMessenger
from sfsandbox.org import Org
from sfsandbox.rest import Rest
from sfsandbox.schema import load_schema
from sfsandbox.store import Store
from sfsandbox.tls import TlsFiles, ensure_certificates

DEFAULT_STATE_DIR = Path("instance") / "sandbox"
ORG_ID = ids.make_id("00D", 1)
USER_ID = ids.make_id("005", 1)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's signature
        if type == "error":
            super().log(type, message, *args)


class VerifyingSession(requests.Session):
    """A requests session that trusts exactly the sandbox's CA, whatever REQUESTS_CA_BUNDLE says
    (requests lets the environment override Session.verify; this passes verify per request)."""

    def __init__(self, ca_path: str | Path):
        super().__init__()
        self.verify = str(ca_path)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


class SandboxServer:
    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", data: str = "none", seed: int = 0,
                 db_path: str | Path | None = None, state_dir: str | Path | None = None,
                 schema_extensions: Iterable[dict | str | Path] = (), token_lifetime: float = 7200.0,
                 faults: FaultSettings | None = None, backoff: Backoff | None = None,
                 credentials: Credentials | None = None, admin_token: str | None = None,
                 clock: Any = None):
        self.host = host
        self.port = port
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_DIR
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tls: TlsFiles = ensure_certificates(self.state_dir)
        self.credentials = credentials or Credentials.load_or_create(self.state_dir)
        self.jwt_private_key_path, public_path = ensure_jwt_keys(self.state_dir)
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.org_id, self.user_id = ORG_ID, USER_ID
        self.schema = load_schema(*schema_extensions)
        self.store = Store(self.schema, str(db_path) if db_path else None)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.org = Org(self.schema, self.store, self.clock, self.org_id, self.user_id)
        self.faults = Faults(faults)
        self.org.before_write = self._before_write
        self.auth = Authority(self.credentials, self.org_id, self.user_id, public_path.read_bytes(), token_lifetime)
        self.rest = Rest(self.org, self.faults)
        self.outbound = OutboundMessenger(self.org, backoff, shuffle=self.faults.shuffle)
        self.cdc = CdcPublisher(self.org, backoff, shuffle=self.faults.shuffle)
        self._apply_notification_faults()
        self.store.listeners.extend([self.outbound.on_changes, self.cdc.on_changes])
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._initial_data = (data, seed)
        self.url = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SandboxServer:
        server = make_server(self.host, self.port, SandboxApp(self), threaded=True,
                             request_handler=_QuietHandler, ssl_context=self.tls.server_context())
        self._server = server
        self.port = server.server_port
        self.url = f"https://{self.host}:{self.port}"
        self.outbound.instance_url = self.url
        self.org.ensure_basics()
        data, seed = self._initial_data
        if data != "none" and self.store.count("Account") == 0:
            self.seed(data, seed)
        self._thread = threading.Thread(target=server.serve_forever, name="sandbox-https", daemon=True)
        self._thread.start()
        self.outbound.start()
        self.cdc.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.outbound.stop()
        self.cdc.stop()
        self.store.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ clients

    @property
    def ca_path(self) -> Path:
        return self.tls.ca_path

    def requests_session(self) -> requests.Session:
        return VerifyingSession(self.ca_path)

    def issue_token(self) -> dict:
        """A token for the sandbox's connected app, without an HTTP round trip."""
        return self.auth.issue(self.credentials.client_id, self.url)

    def env(self) -> dict[str, str]:
        """What a billsync client needs to connect."""
        return {
            "SF_AUTH": "client_credentials",
            "SF_LOGIN_URL": self.url,
            "SF_CLIENT_ID": self.credentials.client_id,
            "SF_CLIENT_SECRET": self.credentials.client_secret,
            "SF_USERNAME": self.credentials.username,
            "SF_PRIVATE_KEY_FILE": str(self.jwt_private_key_path.resolve()),
            "SF_CA_BUNDLE": str(self.ca_path.resolve()),
            "SF_ORG_ID": self.org_id,
            "SF_API_VERSION": "59.0",
        }

    # ------------------------------------------------------------ admin

    def _before_write(self, obj: str, record_id: str | None) -> None:
        if self.faults.lock_row():
            from sfsandbox.errors import RecordError

            raise RecordError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records: "
                              f"{record_id or obj}", [])

    def _apply_notification_faults(self) -> None:
        for target in (self.outbound, self.cdc):
            target.duplicate = self.faults.settings.duplicate_notifications
            target.reorder = self.faults.settings.reorder_notifications

    def configure_faults(self, **changes: Any) -> FaultSettings:
        settings = self.faults.configure(**changes)
        self._apply_notification_faults()
        return settings

    def reset(self, data: str = "none", seed: int = 0) -> None:
        """Empty the org (keeping its user and standard price book), then optionally seed it.
        Also clears faults, the API usage, notification config and delivery logs."""
        self.store.clear()
        self.org.ensure_basics()
        self.faults.configure(**{k: v for k, v in asdict(FaultSettings()).items()})
        self._apply_notification_faults()
        self.faults.reset_allocation()
        self.outbound.clear()
        self.cdc.clear()
        if data != "none":
            self.seed(data, seed)

    def seed(self, data: str, seed: int = 0) -> dict[str, int]:
        from sfsandbox.seed import seed_org

        counts = seed_org(self.org, data, seed)
        if data == "large":
            # Hundreds of thousands of long-lived records: keep the cyclic GC from
            # rescanning them on every collection (latency spikes in the benchmarks).
            gc.collect()
            gc.freeze()
        return counts

    @property
    def api_calls(self) -> int:
        return self.faults.usage()[0]

    def add_outbound_message(self, object: str, fields: list[str], endpoint: str,  # noqa: A002
                             condition: str | None = None, ca_path: str | None = None,
                             name: str = "") -> OutboundMessage:
        return self.outbound.configure(OutboundMessage(object, list(fields), endpoint, condition, name,
                                                       ca_path=ca_path))

    def configure_cdc(self, config: CdcConfig | None) -> None:
        self.cdc.configure(config)
        self.cdc.wake()

    def deliveries(self) -> dict:
        return {"outbound": [asdict(d) for d in self.outbound.log], "cdc": [asdict(d) for d in self.cdc.log],
                "outbound_pending": self.outbound.pending_count(), "cdc_pending": self.cdc.pending_count(),
                "outbound_dropped": list(self.outbound.dropped), "cdc_dropped": self.cdc.dropped}

    def stats(self) -> dict:
        used, maximum = self.faults.usage()
        with self.store.lock:
            counts = {name: self.store.count(name) for name in self.schema.objects}
        return {"api_calls": used, "api_allocation": maximum, "api_calls_total": self.faults.total_api_calls,
                "records": counts, "outbound_pending": self.outbound.pending_count(),
                "cdc_pending": self.cdc.pending_count(), "org_id": self.org_id}


class AdminClient:
    """The admin API over HTTPS, for scripts and processes other than the sandbox's own."""

    def __init__(self, url: str, admin_token: str, ca_path: str | Path):
        self.url = url.rstrip("/")
        self.session = VerifyingSession(ca_path)
        self.session.headers["X-Sandbox-Admin-Token"] = admin_token

    def call(self, method: str, name: str, body: dict | None = None) -> Any:
        response = self.session.request(method, f"{self.url}/_sandbox/{name}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict:
        return self.call("GET", "stats")

    def reset(self, data: str = "none", seed: int = 0) -> dict:
        return self.call("POST", "reset", {"data": data, "seed": seed})

    def faults(self, **changes: Any) -> dict:
        return self.call("PATCH", "faults", changes) if changes else self.call("GET", "faults")

    def expire_tokens(self) -> dict:
        return self.call("POST", "tokens/expire", {})
