"""``billsync mcp`` started as an assistant's client starts it (a subprocess speaking MCP on
stdin/stdout, through the SDK's stdio client): its read-only tools answer what the JSON API
answers for the same data, and it refuses a missing key, a key that cannot read and a key
revoked while it runs (docs/intelligence.md *The MCP server*)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from billing_engine.charges import ChargeLine
from billing_engine.use_cases.anomalies import AnomalyGuard
from billing_engine.use_cases.billing import run_billing
from billing_engine.use_cases.churn import score_customers
from billing_engine.use_cases.collections import set_collection_profile
from connector import create_app
from connector.api.auth import revoke_key
from connector.database import transaction
from tests.support.api import bearer, new_key, seed_subscriptions
from tests.support.asynchronous import run_async
from tests.support.billing import StaticSource, account, seed
from tests.support.dashboard import seed_this_month

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
TOOLS = {"find_customer", "explain_invoice", "explain_invoice_line", "mrr_bridge", "overdue_invoices",
         "held_invoices", "churn_risks"}


def held_charge(key: str, starts_on: date, ends_before: date, currency: str) -> ChargeLine:
    return ChargeLine(key, "sub-h", "h-seats", "SEATS", "Seats", "recurring", starts_on, ends_before, D(1),
                      D("100.00"), D("100.00"), D(0), currency, "", "Seats")


@pytest.fixture
def app(settings):
    """The demo's kind of data: customers on graduated seats, a percent-of support plan and a
    flat plan, billed and amended (``seed_subscriptions``, ``seed_this_month``); their February
    invoices unpaid (overdue); ``cus-h``'s February draft held for its currency; a collection
    e-mail for ``cus-b``."""
    app = create_app(settings.replace(billsync_timezone="UTC"))
    engine = app.extensions["billsync"].engine
    seed_subscriptions(engine)
    seed_this_month(engine, datetime.now(UTC).date())
    seed(engine, {"cus-h": "EUR"}, {"sub-h": "cus-h"})
    source = StaticSource([account("cus-h")], {"cus-h": [held_charge("h:1", JAN, FEB, "EUR"),
                                                         held_charge("h:2", FEB, MAR, "USD")]})
    run_billing(engine, JAN, source=source, guard=AnomalyGuard("hold"))
    assert run_billing(engine, FEB, source=source, guard=AnomalyGuard("hold")).invoices_anomalous == 1
    with transaction(engine) as session:
        set_collection_profile(session, "cus-b", email="Payables@Bravo-Example.com", now=datetime.now(UTC))
    with transaction(engine) as session:
        assert score_customers(session, datetime.now(UTC).date(), now=datetime.now(UTC)).scored >= 2
    return app


@pytest.fixture
def api(app):
    client, key = app.test_client(), new_key(app, "api-reader", "read")

    def get(path: str, **query: Any) -> Any:
        response = client.get(path, query_string=query, headers=bearer(key))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    return get


def server(database_url: str, key: str | None, log_level: str = "warning") -> StdioServerParameters:
    env = {"DATABASE_URL": database_url, "LOG_LEVEL": log_level, "BILLSYNC_TIMEZONE": "UTC"}
    if key is not None:
        env["BILLSYNC_API_KEY"] = key
    return StdioServerParameters(command=sys.executable, args=["-m", "connector.cli", "mcp"], env=env)


def start(database_url: str, key: str | None) -> subprocess.CompletedProcess[str]:
    """``billsync mcp`` with its stdin closed: what it prints when it refuses to start."""
    params = server(database_url, key)
    return subprocess.run([params.command, *params.args], env={**params.env}, input="", capture_output=True,
                          text=True, timeout=60)


async def session_calls(database_url: str, key: str, calls: list[tuple[str, dict[str, Any]]],
                        between: Any = None, *, log_level: str = "warning",
                        errlog: Any = sys.stderr) -> tuple[list[Any], list[Any]]:
    """The tools listed, then each call's result (or the MCPError it raised); ``between`` runs
    after the listing."""
    async with stdio_client(server(database_url, key, log_level), errlog=errlog) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        if between is not None:
            between()
        results: list[Any] = []
        for name, arguments in calls:
            try:
                results.append(await session.call_tool(name, arguments))
            except MCPError as exc:
                results.append(exc)
        return tools, results


def answer(result: Any) -> Any:
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


def test_each_tool_answers_what_the_api_answers_for_the_same_data(app, api, database_url):
    key = new_key(app, "assistant", "read")
    overdue_api = [i for i in api("/api/v1/invoices", status="open", limit=200)["data"]
                   if i["payment_status"] == "overdue"]
    first = overdue_api[0]
    invoice_api = api(f"/api/v1/invoices/{first['id']}")
    least_risky = api("/api/v1/churn-risks", limit=100)["data"][-1]["customer_id"]
    calls = [
        ("find_customer", {"text": "customer CUS-"}),
        ("find_customer", {"text": "bravo-example"}),
        ("find_customer", {"text": "nobody at all"}),
        ("explain_invoice", {"invoice": first["number"]}),
        ("explain_invoice_line", {"invoice": str(first["id"]), "line": 2}),
        ("mrr_bridge", {"from_month": "2026-01", "to_month": "2026-06"}),
        ("overdue_invoices", {}),
        ("held_invoices", {}),
        ("churn_risks", {"lang": "fr"}),
        ("churn_risks", {"customer_id": least_risky}),
    ]

    tools, results = run_async(session_calls, database_url, key, calls)

    assert {t.name for t in tools} == TOOLS
    assert all(t.annotations.read_only_hint and t.input_schema["type"] == "object" for t in tools)
    customers, by_email, nobody, invoice, line, bridge, overdue, held, risks, one_risk = (answer(r) for r in results)
    listed = {c["id"]: c for c in api("/api/v1/customers")["data"]}
    assert [c["id"] for c in customers["data"]] == ["cus-a", "cus-b", "cus-c"]
    assert customers["data"] == [listed[cid] for cid in ("cus-a", "cus-b", "cus-c")]
    assert by_email["data"] == [listed["cus-b"]] and nobody["data"] == []
    assert invoice == invoice_api and invoice["lines"][1]["explanation"]
    assert line["line"] == invoice_api["lines"][1]
    assert (line["invoice"]["id"], line["invoice"]["number"]) == (first["id"], first["number"])
    assert bridge == api("/api/v1/metrics/mrr", **{"from": "2026-01", "to": "2026-06"})
    assert bridge["months"] and bridge["months"][0]["new"]["amount"] == "2145.00"
    assert overdue["count"] == len(overdue_api) and overdue["count"] >= 2
    assert sorted(overdue["data"], key=lambda i: i["id"]) == sorted(overdue_api, key=lambda i: i["id"])
    assert held["data"] == api("/api/v1/invoices/anomalies")["data"] and held["next_after"] is None
    assert held["data"][0]["customer_id"] == "cus-h" and held["data"][0]["anomalies"][0]["kind"] == "currency"
    assert risks["data"] == api("/api/v1/churn-risks", lang="fr", limit=20)["data"] and len(risks["data"]) >= 2
    assert all(len(r["reasons"]) == 3 and 0 <= r["score"] <= 100 for r in risks["data"])
    assert one_risk["data"] == [api(f"/api/v1/customers/{least_risky}/churn-risk")]


def test_bad_arguments_and_unknown_records_come_back_as_tool_errors(app, database_url):
    key = new_key(app, "assistant", "write")
    calls = [("explain_invoice", {"invoice": "INV-1999-000001"}),
             ("explain_invoice_line", {"invoice": "1", "line": 99}),
             ("mrr_bridge", {"from_month": "2026-13", "to_month": "2026-01"}),
             ("overdue_invoices", {"limit": 0, "colour": "red"}),
             ("void_invoice", {"invoice": "1"}),
             ("churn_risks", {"customer_id": "cus-nobody"})]

    _, results = run_async(session_calls, database_url, key, calls)

    missing, no_line, bad_month, bad_args, unknown, no_customer = results
    assert missing.is_error and "'INV-1999-000001' not found" in missing.content[0].text
    assert no_line.is_error and "line 99 not found" in no_line.content[0].text
    assert bad_month.is_error and bad_month.content[0].text.startswith("from_month: String should match")
    assert bad_args.is_error and {ln.split(":")[0] for ln in bad_args.content[0].text.splitlines()} == \
        {"limit", "colour"}
    assert isinstance(unknown, MCPError) and "no tool named 'void_invoice'" in unknown.message
    assert no_customer.is_error and "'cus-nobody' not found" in no_customer.content[0].text


def test_without_a_key_or_with_a_key_that_cannot_read_it_refuses_to_start(app, database_url):
    usage = new_key(app, "meter", "usage")

    missing = start(database_url, None)
    usage_only = start(database_url, usage)
    unknown = start(database_url, "bsk_" + "x" * 43)

    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == ("error: set BILLSYNC_API_KEY to an API key with the read scope "
                              "('billsync api-key create --name NAME --scope read')\n")
    assert usage_only.returncode == 2 and usage_only.stdout == ""
    assert usage_only.stderr.startswith("error: BILLSYNC_API_KEY: the API key 'meter' (")
    assert usage_only.stderr.endswith("has the usage scope, not read; the tools need a read key\n")
    assert (unknown.returncode, unknown.stderr) == (2, "error: BILLSYNC_API_KEY: the API key is not valid\n")
    assert usage not in usage_only.stderr


def test_a_key_revoked_while_it_runs_is_refused_at_the_next_call(app, database_url):
    key = new_key(app, "assistant", "read")
    engine = app.extensions["billsync"].engine

    def revoke() -> None:
        revoke_key(engine, "assistant", now=datetime.now(UTC))

    _, [refused] = run_async(session_calls, database_url, key, [("held_invoices", {})], revoke)

    assert isinstance(refused, MCPError)
    assert refused.message == "BILLSYNC_API_KEY: the API key was revoked"
    assert key not in refused.message


def test_the_key_is_in_no_log_line_even_at_debug_level(app, database_url, tmp_path):
    key = new_key(app, "assistant", "read")
    log_file = tmp_path / "stderr.log"

    with log_file.open("w") as errlog:
        _, [found, refused] = run_async(lambda: session_calls(
            database_url, key, [("find_customer", {"text": "cus-a"}), ("explain_invoice", {"invoice": "x"})],
            log_level="debug", errlog=errlog))

    logged = log_file.read_text()
    assert not found.is_error and refused.is_error
    assert f"tool find_customer by API key 'assistant' ({key[:12]}...): answered" in logged
    assert f"tool explain_invoice by API key 'assistant' ({key[:12]}...): error" in logged
    assert "DEBUG" in logged and key not in logged and key[12:] not in logged
