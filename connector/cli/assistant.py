"""``billsync mcp``: the MCP server an AI assistant starts to read billsync's data through its
read-only tools (``connector.assistant``; docs/intelligence.md *The MCP server*)."""

from __future__ import annotations

import anyio
import click

from connector.cli.support import UserError, load_services, reported_as


@click.command("mcp")
def mcp() -> None:
    """Serve billsync's read-only tools to an AI assistant over MCP on stdin/stdout.

    The assistant's client starts this command; it acts with the API key in BILLSYNC_API_KEY,
    which needs the read scope (a read or write key): without one it refuses to start.
    """
    from connector.assistant.server import KeyRefused, check_key, serve

    services = load_services()
    key = services.settings.billsync_api_key
    with reported_as():
        try:
            checked = check_key(services.engine, key)
        except KeyRefused as exc:
            raise UserError(str(exc)) from None
    assert key is not None
    anyio.run(serve, services, checked, key)
