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
