"""``billsync mcp``: the read-only tools of ``connector.assistant.tools`` served over the Model
Context Protocol on stdin/stdout, with the official SDK's low-level server
(docs/intelligence.md *The MCP server*).

**Authentication.** The server acts with one API key (``BILLSYNC_API_KEY``, the JSON API's
keys: ``connector.api.auth``), which must allow the ``read`` scope (a ``read`` or ``write``
key; a ``usage`` key cannot read). It is checked twice:

- at start: no key, an unknown or revoked key, or a key without ``read`` stops the command
  before it speaks MCP, with one ``error:`` line and exit code 2 (``check_key``);
- at every tool call, read again from the database (no cache: a key revoked while the server
  runs is refused at its next call): the call gets an MCP error (JSON-RPC code
  ``KEY_REFUSED``) and no answer.

The key itself is never logged nor echoed: errors name its prefix at most, and it is a secret
setting, masked in every log line.

**Errors of a call** the assistant can act on (a bad argument, an unknown invoice) come back as
a tool result with ``isError`` and one line per problem, so that it can correct itself; an
unknown tool is an MCP error. A failure billsync did not expect is logged with its traceback
(stderr) and answered ``unexpected failure``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from billing_engine.errors import BillingError
from connector.api.auth import ApiKey, KeyCache, authenticate
from connector.api.problems import ApiProblem
from connector.assistant.tools import TOOLS, ReadTool, ToolContext
from connector.database import READ_ONLY
from connector.wiring import Services

log = logging.getLogger("billsync.mcp")

SERVER_NAME = "billsync"
#: The scope every tool needs.
SCOPE = "read"
#: The JSON-RPC error code of a call refused for its key (in the server's own range).
KEY_REFUSED = -32001
INSTRUCTIONS = ("billsync's billing data, read-only: customers, invoices and how each line was computed, "
                "overdue invoices, drafts held for anomalies and the MRR bridge. Money is a decimal string "
                "with its currency. No tool changes anything.")


class KeyRefused(Exception):
    """The API key cannot be used to read; the message says why (without the key)."""


#: Keys are read from the database at every check (a key trusted for 0 seconds).
UNCACHED = KeyCache(seconds=0)


def check_key(engine: Engine, key: str | None) -> ApiKey:
    """The active API key ``key`` when it may read, else ``KeyRefused``."""
    if not key or not key.strip():
        raise KeyRefused("set BILLSYNC_API_KEY to an API key with the read scope "
                         "('billsync api-key create --name NAME --scope read')")
    try:
        found = authenticate(engine, f"Bearer {key.strip()}", cache=UNCACHED)
    except ApiProblem as problem:
        raise KeyRefused(f"BILLSYNC_API_KEY: {problem.detail or problem.title}") from None
    if not found.allows(SCOPE):
        raise KeyRefused(f"BILLSYNC_API_KEY: the API key {found.name!r} ({found.prefix}...) has the "
                         f"{', '.join(sorted(found.scopes))} scope, not read; the tools need a read key")
    return found


def tool_listing(tool: ReadTool) -> types.Tool:
    return types.Tool(name=tool.name, title=tool.title, description=tool.description,
                      input_schema=tool.input_schema(),
                      annotations=types.ToolAnnotations(title=tool.title, read_only_hint=True,
                                                        destructive_hint=False, idempotent_hint=True,
                                                        open_world_hint=False))


def _refusal(lines: list[str]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text="\n".join(lines))], is_error=True)


def _validation_lines(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}" for error in exc.errors()]


class Tools:
    """Runs the calls of one server: checks the key, validates the arguments, reads."""

    def __init__(self, services: Services, key: str):
        self.engine = services.engine
        self.reader = services.engine.execution_options(**{READ_ONLY: True})
        self.timezone = ZoneInfo(services.settings.billsync_timezone)
        self._key = key

    def call(self, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        tool = TOOLS.get(name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"no tool named {name[:80]!r}; tools/list names them")
        try:
            key = check_key(self.engine, self._key)
        except KeyRefused as exc:
            log.warning("tool %s refused: %s", name, exc)
            raise MCPError(KEY_REFUSED, str(exc)) from None
        result = self._run(tool, arguments)
        log.info("tool %s by API key %r (%s...): %s", name, key.name, key.prefix,
                 "error" if result.is_error else "answered")
        return result

    def _run(self, tool: ReadTool, arguments: dict[str, Any] | None) -> types.CallToolResult:
        try:
            parsed = tool.arguments.model_validate(arguments or {})
        except ValidationError as exc:
            return _refusal(_validation_lines(exc))
        try:
            with Session(self.reader, expire_on_commit=False) as session:
                try:
                    answer = tool.run(ToolContext(session, datetime.now(self.timezone).date()), parsed)
                finally:
                    session.rollback()
        except BillingError as exc:
            return _refusal(str(exc).strip().splitlines() or [type(exc).__name__])
        except Exception as exc:
            log.error("tool %s failed", tool.name, exc_info=exc)
            return _refusal([f"unexpected failure ({type(exc).__name__}); the server's log has the details"])
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(answer, ensure_ascii=False))],
                                    structured_content=answer)


def build_server(tools: Tools) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool_listing(tool) for tool in TOOLS.values()])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return await anyio.to_thread.run_sync(tools.call, params.name, params.arguments)

    return Server(SERVER_NAME, instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(services: Services, key: ApiKey, secret: str) -> None:
    """Serve MCP on stdin/stdout with the API key ``key`` (its ``secret``) until the client
    closes stdin."""
    server = build_server(Tools(services, secret))
    log.info("MCP server on stdio: %d read-only tools, API key %r (%s...)", len(TOOLS), key.name, key.prefix)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream,
                         server.create_initialization_options(NotificationOptions()))
