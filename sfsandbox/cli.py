"""``billsync sandbox ...`` commands."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import click

# The server (TLS, JWT, YAML, the SOQL engine) is imported when a command runs, so that
# every other ``billsync`` command starts as fast as before.
DEFAULT_STATE_DIR = Path("instance") / "sandbox"


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

    started = time.monotonic()
    server = SandboxServer(port, host=host, data=data, seed=seed, db_path=db_path, state_dir=state_dir,
                           token_lifetime=token_lifetime)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
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
