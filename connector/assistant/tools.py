"""The read-only tools ``billsync mcp`` offers an AI assistant (docs/intelligence.md *The MCP server*).

Each tool is a function over one engine use case (the same ones the JSON API calls) that
answers with the JSON API's own shapes: the response models and conversions of
``connector.api``, so money is a decimal string with its currency and a tool's invoice is the
``GET /api/v1/invoices/{id}`` document. Nothing here writes: a tool gets a read-only session.

A tool is declared with ``read_tool``: its name, a title, a pydantic model of its arguments
(which gives the tool's JSON Schema and validates each call) and a function of the context
and the arguments returning a JSON object; its docstring is what the assistant reads. A new
read tool is one arguments model and one decorated function, for example::

    class CustomerInvoicesArguments(ToolArguments):
        customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="The customer's id.")

    @read_tool("customer_invoices", "A customer's invoices", CustomerInvoicesArguments)
    def customer_invoices(context: ToolContext, arguments: CustomerInvoicesArguments) -> dict[str, Any]:
        \"\"\"A customer's latest invoices, as `GET /api/v1/invoices?customer_id=...`.\"\"\"
        filters = invoice_queries.InvoiceFilters(customer_id=arguments.customer_id)
        page = invoice_queries.list_invoices(context.session, as_of=context.today, filters=filters)
        return {"data": [_json(summary_out(i)) for i in page.items]}

The server lists every declared tool and serves it; engine errors (``InvalidInputError``,
``NotFoundError``) become the call's error lines.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from billing_engine.use_cases import accounts, revenue
from billing_engine.use_cases import anomalies as anomaly_cases
from billing_engine.use_cases import churn as churn_cases
from billing_engine.use_cases import invoices as invoice_queries
from connector.api.churn import Language, risk_out
from connector.api.customers import customer_summary_out
from connector.api.invoices import (
    CUSTOMER_ID_PATTERN,
    FIRST_DAY,
    LAST_DAY,
    MAX_ID,
    held_out,
    invoice_out,
    summary_out,
)
from connector.api.metrics import MONTH_PATTERN, bridge_row_out
from connector.api.money import CURRENCY_PATTERN

#: Most rows a listing tool answers with.
MAX_ROWS = 100


@dataclass(frozen=True)
class ToolContext:
    """What a tool reads with: a read-only session, and today in BILLSYNC_TIMEZONE (the default
    date of "as of" questions, as in the JSON API)."""

    session: Session
    today: date


class ToolArguments(BaseModel):
    """The arguments of a tool: unknown ones are refused, as a typo should be."""

    model_config = ConfigDict(extra="forbid")


Arguments = TypeVar("Arguments", bound=ToolArguments)


@dataclass(frozen=True)
class ReadTool:
    name: str
    title: str
    description: str
    arguments: type[ToolArguments]
    run: Callable[[ToolContext, Any], dict[str, Any]]

    def input_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()


#: Every tool, by name, in the order they are declared.
TOOLS: dict[str, ReadTool] = {}


def read_tool(name: str, title: str, arguments: type[Arguments]) -> Callable[
        [Callable[[ToolContext, Arguments], dict[str, Any]]], Callable[[ToolContext, Arguments], dict[str, Any]]]:
    """Declare a read-only tool (see the module's docstring)."""

    def register(func: Callable[[ToolContext, Arguments], dict[str, Any]]) -> Callable[
            [ToolContext, Arguments], dict[str, Any]]:
        if name in TOOLS:
            raise ValueError(f"a tool named {name!r} is already declared")
        TOOLS[name] = ReadTool(name, title, inspect.cleandoc(func.__doc__ or title), arguments, func)
        return func

    return register


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _on_field(what: str) -> Any:
    return Field(None, ge=FIRST_DAY, le=LAST_DAY, description=f"The date {what}, YYYY-MM-DD (default: today).")


# ---------------------------------------------------------------- customers


class FindCustomerArguments(ToolArguments):
    text: str = Field(min_length=1, max_length=accounts.MAX_SEARCH_LENGTH,
                      description="Part of the customer's name, id, Salesforce Account Id or collection e-mail "
                                  "(any case).")
    limit: int = Field(20, ge=1, le=MAX_ROWS, description="Most customers answered.")
    on: date | None = _on_field("balances and aging are read on")


@read_tool("find_customer", "Find a customer", FindCustomerArguments)
def find_customer(context: ToolContext, arguments: FindCustomerArguments) -> dict[str, Any]:
    """Find customers by a part of their name, id, Salesforce Account Id or collection e-mail.

    Each as in `GET /api/v1/customers`: id, name, currency, Salesforce Account Id, and per
    currency the balance due, unused credit, open and overdue invoices and the aging buckets."""
    found = accounts.find_customers(context.session, arguments.text, as_of=arguments.on or context.today,
                                    limit=arguments.limit)
    return {"data": [_json(customer_summary_out(item)) for item in found]}


# ---------------------------------------------------------------- invoices


class InvoiceArguments(ToolArguments):
    invoice: str = Field(min_length=1, max_length=40, description="The invoice's number (INV-2026-000001) or id.")
    on: date | None = _on_field("the payment status is read on")


class InvoiceLineArguments(InvoiceArguments):
    line: int = Field(ge=1, le=MAX_ID, description="The line's number on the invoice (`lines[].line`).")


def _invoice(context: ToolContext, arguments: InvoiceArguments) -> invoice_queries.InvoiceDetail:
    invoice_id = invoice_queries.find_invoice_id(context.session, arguments.invoice)
    return invoice_queries.get_invoice(context.session, invoice_id, as_of=arguments.on or context.today)


@read_tool("explain_invoice", "Explain an invoice", InvoiceArguments)
def explain_invoice(context: ToolContext, arguments: InvoiceArguments) -> dict[str, Any]:
    """One invoice in full, as `GET /api/v1/invoices/{id}`.

    Its lines, each with the explanation of how its amount was computed (period, quantity,
    unit price, proration, discount), the tax and why, the payments, refunds and credit notes
    that moved its balance, and the anomaly guard's findings about it."""
    return _json(invoice_out(_invoice(context, arguments)))


@read_tool("explain_invoice_line", "Explain one invoice line", InvoiceLineArguments)
def explain_invoice_line(context: ToolContext, arguments: InvoiceLineArguments) -> dict[str, Any]:
    """One line of an invoice with how its amount was computed (`explanation`), as the line of
    `GET /api/v1/invoices/{id}`, with the invoice it is on."""
    detail = invoice_out(_invoice(context, arguments))
    line = next((ln for ln in detail.lines if ln.line == arguments.line), None)
    if line is None:
        raise NotFoundError(f"invoice {detail.number or detail.id} line", arguments.line)
    return {"invoice": {"id": detail.id, "number": detail.number, "customer_id": detail.customer_id,
                        "customer_name": detail.customer_name, "status": detail.status,
                        "currency": detail.currency, "tax_note": detail.tax_note},
            "line": _json(line)}


class OverdueArguments(ToolArguments):
    customer_id: str | None = Field(None, pattern=CUSTOMER_ID_PATTERN, description="Only this customer's.")
    limit: int = Field(50, ge=1, le=MAX_ROWS, description="Most invoices answered (the oldest due first).")
    on: date | None = _on_field("the invoices are overdue on")


@read_tool("overdue_invoices", "Overdue invoices", OverdueArguments)
def overdue_invoices(context: ToolContext, arguments: OverdueArguments) -> dict[str, Any]:
    """The open invoices past their due date with a balance still to pay, the oldest due first.

    Each as an item of `GET /api/v1/invoices` (its `payment_status` is `overdue`); `count` is
    how many there are in all, beyond `limit` too."""
    on = arguments.on or context.today
    found = invoice_queries.overdue_invoices(context.session, as_of=on, customer_id=arguments.customer_id,
                                             limit=arguments.limit)
    return {"on": on.isoformat(), "count": found.count, "data": [_json(summary_out(i)) for i in found.items]}


class HeldArguments(ToolArguments):
    after: int | None = Field(None, ge=0, le=MAX_ID, description="Only invoices with a larger id (the previous "
                                                                  "answer's `next_after`).")
    limit: int = Field(50, ge=1, le=MAX_ROWS, description="Most invoices answered.")


@read_tool("held_invoices", "Invoices held for anomalies", HeldArguments)
def held_invoices(context: ToolContext, arguments: HeldArguments) -> dict[str, Any]:
    """The bill run's drafts the anomaly guard held, by id, each with the reasons in plain words
    (kind, score, reason), as `GET /api/v1/invoices/anomalies`. Finance releases or voids them
    in the console or the API; this tool only reads."""
    rows = anomaly_cases.list_held_invoices(context.session, after=arguments.after, limit=arguments.limit + 1)
    more = len(rows) > arguments.limit
    rows = rows[:arguments.limit]
    return {"data": [_json(held_out(inv)) for inv in rows],
            "next_after": rows[-1].invoice_id if more and rows else None}


# ---------------------------------------------------------------- churn risk


class ChurnArguments(ToolArguments):
    customer_id: str | None = Field(None, pattern=CUSTOMER_ID_PATTERN,
                                    description="Only this customer (the id `find_customer` answers).")
    limit: int = Field(20, ge=1, le=MAX_ROWS, description="Most customers answered, riskiest first.")
    lang: Language = Field("en", description="The language of the reasons: en or fr.")


@read_tool("churn_risks", "Churn risks", ChurnArguments)
def churn_risks(context: ToolContext, arguments: ChurnArguments) -> dict[str, Any]:
    """The paying customers' churn risk (0 to 100, the risk of paying nothing three month ends
    later) from the riskiest, each with its three main reasons in plain words and how it was
    scored (the documented baseline or the model trained on this installation), as
    `GET /api/v1/churn-risks`; with `customer_id`, that customer's only, as
    `GET /api/v1/customers/{id}/churn-risk`."""
    if arguments.customer_id is not None:
        found = churn_cases.customer_churn_risk(context.session, arguments.customer_id)
        if found is None:
            raise ConflictError(f"customer {arguments.customer_id!r}",
                                "has no churn risk: it has no MRR, or it was not scored yet")
        risks = [found]
    else:
        risks = churn_cases.churn_risks(context.session, limit=arguments.limit, after=None)
    return {"data": [_json(risk_out(risk, arguments.lang)) for risk in risks]}


# ---------------------------------------------------------------- metrics


class BridgeArguments(ToolArguments):
    from_month: str = Field(pattern=MONTH_PATTERN, description="First month, YYYY-MM.")
    to_month: str = Field(pattern=MONTH_PATTERN, description="Last month, YYYY-MM (at most 120 months).")
    currency: str | None = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")


@read_tool("mrr_bridge", "MRR bridge", BridgeArguments)
def mrr_bridge(context: ToolContext, arguments: BridgeArguments) -> dict[str, Any]:
    """The MRR/ARR bridge per month and currency (opening, new, expansion, reactivation,
    contraction, churn, closing, ARR, customers) with totals per currency over the range, as
    `GET /api/v1/metrics/mrr`."""
    if arguments.to_month < arguments.from_month:
        raise InvalidInputError("to_month", "must not be before from_month")
    rows = revenue.mrr_bridge_months(context.session, arguments.from_month, arguments.to_month,
                                     currency=arguments.currency)
    return {"months": [_json(bridge_row_out(r)) for r in rows],
            "totals": [_json(bridge_row_out(r)) for r in revenue.bridge_totals(rows)]}
