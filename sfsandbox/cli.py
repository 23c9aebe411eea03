"""``billsync sandbox ...`` commands."""

from __future__ import annotations

import math
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import click

# The server (TLS, JWT, YAML, the SOQL engine) is imported when a command runs, so that
# every other ``billsync`` command starts as fast as before.
DEFAULT_STATE_DIR = Path("instance") / "sandbox"


class ServeError(click.ClickException):
    """A problem the user can fix, printed as one ``error: ...`` line with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _check_port(host: str, port: int) -> None:
    """Fail with one line when the port is taken (werkzeug would print two and exit)."""
    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or _first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@click.group()
def sandbox() -> None:
    """The local Salesforce sandbox org (HTTPS on loopback)."""


@sandbox.command("serve")
@click.option("--port", type=int, default=8443, show_default=True, help="HTTPS port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface (loopback only makes sense).")
@click.option("--data", type=click.Choice(["small", "large", "none"]), default="small", show_default=True,
              help="Seed data when the org is empty.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the deterministic data generator.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the org in this SQLite file (default: in memory).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="Where the CA, certificate, credentials and JWT keys are kept.")
@click.option("--token-lifetime", type=float, default=7200.0, show_default=True, help="Access token lifetime (s).")
def serve(port: int, host: str, data: str, seed: int, db_path: Path | None, state_dir: Path,
          token_lifetime: float) -> None:
    """Serve the sandbox org until interrupted (SIGINT/SIGTERM)."""
    from sfsandbox.server import SandboxServer

    if not (math.isfinite(token_lifetime) and token_lifetime > 0):
        raise ServeError(f"--token-lifetime: {token_lifetime:g} is not a positive number of seconds")
    _check_port(host, port)
    started = time.monotonic()
    try:
        server = SandboxServer(port, host=host, data=data, seed=seed, db_path=db_path, state_dir=state_dir,
                               token_lifetime=token_lifetime)
    except OSError as exc:
        where = exc.filename or state_dir
        raise ServeError(f"cannot use {where}: {exc.strerror or _first_line(exc)}") from None
    except sqlite3.Error as exc:
        raise ServeError(f"cannot use the org database {db_path}: {_first_line(exc)}") from None
    try:
        server.start()
    except OSError as exc:
        server.stop()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or _first_line(exc)}") from None
    except sqlite3.Error as exc:
        server.stop()
        raise ServeError(f"cannot use the org database {db_path}: {_first_line(exc)}") from None
    elapsed = time.monotonic() - started
    click.echo(f"sandbox org {server.org_id} listening on {server.url} (ready in {elapsed:.2f} s)")
    click.echo(f"CA bundle: {server.ca_path.resolve()}")
    click.echo(f"admin API: {server.url}/_sandbox/  (header X-Sandbox-Admin-Token: {server.admin_token})")
    click.echo("environment for a billsync client:")
    for key, value in server.env().items():
        click.echo(f"{key}={value}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    click.echo("sandbox stopped")


@sandbox.command("query")
@click.argument("soql")
@click.option("--url", envvar="SF_LOGIN_URL", metavar="URL",
              help="The running sandbox, e.g. https://127.0.0.1:8443 (default: $SF_LOGIN_URL, which "
                   "scripts/billsync reads from instance/demo.env).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="The sandbox's state: its CA and connected-app credentials.")
def query(soql: str, url: str | None, state_dir: Path) -> None:
    """Run a SOQL query on the running sandbox and print the records as a table.

    For example: billsync sandbox query "SELECT Name, Total__c FROM Invoice__c".
    """
    import requests

    from sfsandbox.auth import Credentials

    if not url:
        raise ServeError("which sandbox? pass --url https://127.0.0.1:<port> (scripts/run prints it) or set "
                         "SF_LOGIN_URL (scripts/billsync loads it from instance/demo.env)")
    ca_path, credentials_path = state_dir / "ca.pem", state_dir / "credentials.json"
    if not (ca_path.exists() and credentials_path.exists()):
        raise ServeError(f"no sandbox state in {state_dir} (its CA and credentials): start it with scripts/run "
                         "or 'billsync sandbox serve', or pass --state-dir")
    credentials = Credentials.load_or_create(state_dir)
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the sandbox's CA
    session.verify = str(ca_path)
    base = url.rstrip("/")
    try:
        token = session.post(f"{base}/services/oauth2/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": credentials.client_id,
            "client_secret": credentials.client_secret})
        if token.status_code != 200:
            raise ServeError(f"the sandbox at {base} refused its own credentials ({token.status_code}): "
                             "is --state-dir the one it was started with?")
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        records: list[dict] = []
        page = session.get(f"{base}/services/data/v59.0/query", params={"q": soql}, timeout=60)
        while True:
            if page.status_code != 200:
                raise ServeError(_api_error(page))
            body = page.json()
            records += body["records"]
            if body.get("done", True) or not body.get("nextRecordsUrl"):
                break
            page = session.get(f"{base}{body['nextRecordsUrl']}", timeout=60)
    except requests.RequestException as exc:
        raise ServeError(f"cannot reach the sandbox at {base}: {_first_line(exc)}") from None
    rows = [_flatten(record) for record in records]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    if columns:
        widths = {c: max(len(c), *(len(row.get(c, "")) for row in rows)) for c in columns}
        click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
        for row in rows:
            click.echo("  ".join(row.get(c, "").ljust(widths[c]) for c in columns).rstrip())
    click.echo(f"{len(rows)} record{'' if len(rows) == 1 else 's'}")


def _flatten(record: dict, prefix: str = "") -> dict[str, str]:
    """A record's fields as text, relationship fields as ``Account.Name``; ``attributes`` left out."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "records" not in value:
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, dict):
            out[f"{prefix}{key}"] = f"({value.get('totalSize', len(value['records']))} records)"
        else:
            out[f"{prefix}{key}"] = "" if value is None else str(value).lower() if isinstance(value, bool) \
                else str(value)
    return out


def _api_error(response) -> str:
    """The API's error as one line; a SOQL error's message repeats the query and points at the
    column over several lines, and its last line says what is wrong."""
    try:
        errors = response.json()
        return "; ".join(f"{e.get('errorCode', '')}: {_last_line(e.get('message') or '')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return f"the sandbox answered {response.status_code}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
