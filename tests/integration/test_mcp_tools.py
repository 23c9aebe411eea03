"""The MCP server's tool registry, served in-process: a read tool declared with ``read_tool`` is
listed and answers as the JSON API does; its errors come back as the call's error lines
(docs/intelligence.md *The MCP server*)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from pydantic import Field

from billing_engine.use_cases import invoices as invoice_queries
from connector import create_app
from connector.api.invoices import CUSTOMER_ID_PATTERN, summary_out
from connector.assistant.server import Tools, build_server
from connector.assistant.tools import TOOLS, ToolArguments, ToolContext, read_tool
from tests.support.api import bearer, new_key, seed_subscriptions
from tests.support.asynchronous import run_async


@pytest.fixture
def registry():
    """The declared tools, put back as they were after the test."""
    before = dict(TOOLS)
    yield TOOLS
    TOOLS.clear()
    TOOLS.update(before)


class CustomerInvoicesArguments(ToolArguments):
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="The customer's id.")


def declare_customer_invoices() -> None:
    @read_tool("customer_invoices", "A customer's invoices", CustomerInvoicesArguments)
    def customer_invoices(context: ToolContext, arguments: CustomerInvoicesArguments) -> dict[str, Any]:
        """A customer's latest invoices, as `GET /api/v1/invoices?customer_id=...`."""
        filters = invoice_queries.InvoiceFilters(customer_id=arguments.customer_id)
        page = invoice_queries.list_invoices(context.session, as_of=context.today, filters=filters)
        return {"data": [summary_out(i).model_dump(mode="json") for i in page.items]}


async def listed_and_called(server, calls):
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        return tools, [await client.call_tool(name, arguments) for name, arguments in calls]


def test_a_declared_read_tool_is_listed_and_answers_as_the_api(registry, settings):
    app = create_app(settings)
    services = app.extensions["billsync"]
    seed_subscriptions(services.engine)
    key = new_key(app, "assistant", "read")
    declare_customer_invoices()

    tools, (found, refused) = run_async(listed_and_called, build_server(Tools(services, key)), [
        ("customer_invoices", {"customer_id": "cus-a"}), ("customer_invoices", {"customer_id": "cus a"})])

    listed = tools["customer_invoices"]
    assert (listed.title, listed.description) == ("A customer's invoices",
                                                  "A customer's latest invoices, as `GET /api/v1/invoices?customer_id=...`.")
    assert listed.input_schema["required"] == ["customer_id"] and listed.annotations.read_only_hint
    api = app.test_client().get("/api/v1/invoices", query_string={"customer_id": "cus-a"}, headers=bearer(key)).json
    assert found.structured_content["data"] == api["data"] and len(api["data"]) == 1
    assert refused.is_error and refused.content[0].text.startswith("customer_id: String should match pattern")


def test_two_tools_cannot_share_a_name(registry):
    declare_customer_invoices()
    with pytest.raises(ValueError, match="a tool named 'customer_invoices' is already declared"):
        declare_customer_invoices()
