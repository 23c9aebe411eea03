"""``POST /api/v1/usage-events``: usage sent by metering systems, one event or a batch of up to 1,000.

Each event is checked on its own (``billing_engine.use_cases.usage.ingest_usage_events``): the
valid ones are stored even when others fail, and the answer lists what became of each one.

- **200**: every event was stored now (``accepted``) or before (``duplicate``: its
  ``transaction_id`` was already stored; it counts once).
- **207**: some events failed (each with ``errors``: a JSON pointer and the problem), the others
  were stored (accepted or duplicate). Retrying the whole request is safe.
- **422** problem: nothing was stored; ``errors`` points at each problem (every event failed, or
  the body does not match the schema: a missing field, a wrong type, more than 1,000 events).

The batch is one transaction and one statement writes its events, with one audit entry per
request (action ``usage.ingest``: the counts, not the events). ``Idempotency-Key`` works as on
every POST but is not needed: the events' transaction ids already make a retry harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, RootModel, ValidationError, WithJsonSchema

from billing_engine.usage import MAX_BATCH_EVENTS
from billing_engine.use_cases import usage as usage_cases
from connector.api.framework import ApiBlueprint, record_audit, respond, write_session
from connector.api.pagination import Absent
from connector.api.problems import invalid, json_pointer
from connector.wiring import services_of

blueprint = ApiBlueprint("usage", __name__, tag="Usage",
                         description="Usage events from metering systems, billed at the end of their period.")


def _quantity(value: Any) -> str | int:
    """A JSON string or integer (a JSON float is refused: it may not hold the decimal sent)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("must be a decimal string or an integer")
    if isinstance(value, str) and len(value) > QUANTITY_LENGTH:
        raise ValueError(f"must be at most {QUANTITY_LENGTH} characters")
    return value


QUANTITY_LENGTH = 40
Identifier = Annotated[str, Field(min_length=1, max_length=64)]
Quantity = Annotated[str | int, PlainValidator(_quantity), WithJsonSchema(
    {"anyOf": [{"type": "string", "maxLength": QUANTITY_LENGTH}, {"type": "integer"}]})]


class UsageEventIn(BaseModel):
    """One usage event. Its metric is the product code of a usage item of the subscription."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "transaction_id": "evt_2026-12-05_000123", "subscription_id": "sub-1", "metric": "api_calls",
        "quantity": "120", "timestamp": "2026-12-05T10:00:00Z"}]})

    transaction_id: str = Field(min_length=1, max_length=200,
                                description="The event's own id: an event re-sent with the same id counts once.")
    subscription_id: Identifier | Absent = Field(None, description="The subscription the usage counts on.")
    customer_id: Identifier | Absent = Field(None, description="Instead of `subscription_id`: the customer, whose "
                                                               "one subscription metering `metric` on that date is used.")
    metric: str = Field(min_length=1, max_length=64,
                        description="The product code of a usage item of the subscription, e.g. `api_calls`.")
    quantity: Quantity = Field(description="A decimal string (`\"12.5\"`) or an integer, ≥ 0, at most 9 decimals.")
    timestamp: str = Field(max_length=64, json_schema_extra={"format": "date-time"},
                           description="When the usage happened, ISO 8601 with its offset; not in the future "
                                       "(5 minutes of clock skew allowed) and not older than USAGE_MAX_AGE_DAYS "
                                       "(35 days by default).")


class UsageBatchIn(BaseModel):
    """A batch of events."""

    model_config = ConfigDict(extra="forbid")

    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class UsageEventsIn(RootModel[dict[str, Any]]):
    """One event, or ``{"events": [...]}`` with up to 1,000 of them.

    The framework only checks that the body is a JSON object; the route then checks it against
    ``UsageEventIn`` or ``UsageBatchIn`` itself, so that each problem's pointer is a path into
    the body as sent (``/events/3/quantity``, ``/quantity``). The document shows both forms."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"title": "UsageEventsIn", "description": "One event, or `{\"events\": [...]}` with up to "
                                                         f"{MAX_BATCH_EVENTS:,} of them.",
                "anyOf": [handler(UsageEventIn.__pydantic_core_schema__),
                          handler(UsageBatchIn.__pydantic_core_schema__)]}


class EventProblem(BaseModel):
    pointer: str = Field(description="JSON pointer to the field (`/events/3/quantity`; `/quantity` for one event).")
    detail: str


class UsageEventResult(BaseModel):
    index: int = Field(description="The event's position in the request (0 for a single event).")
    transaction_id: str | None
    status: Literal["accepted", "duplicate", "error"]
    errors: list[EventProblem] | None = Field(None, description="What is wrong with the event (status `error`).")


class UsageEventsOut(BaseModel):
    accepted: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events whose transaction id was stored before (they count once).")
    failed: int = Field(description="Events not stored; see their `errors`.")
    results: list[UsageEventResult]


def _pointer(single: bool, index: int, field: str) -> str:
    return json_pointer(([] if single else ["events", index]) + ([field] if field else []))


@blueprint.post("/usage-events", scope="usage", responses={200: UsageEventsOut, 207: UsageEventsOut})
def send_usage_events(body: UsageEventsIn):
    """Send usage: one event, or a batch of up to 1,000 (each stored or refused on its own)."""
    raw = body.root
    single = "events" not in raw
    try:
        (UsageEventIn if single else UsageBatchIn).model_validate(raw)
    except ValidationError as exc:
        raise invalid([{"pointer": json_pointer(e["loc"]), "detail": e["msg"]}
                       for e in exc.errors(include_url=False, include_input=False, include_context=False)]) from None
    events = [raw] if single else raw["events"]  # the engine checks each event's values
    result = usage_cases.ingest_usage_events(write_session(), events, now=datetime.now(UTC),
                                             max_age_days=services_of(current_app).settings.usage_max_age_days)
    problems = [[{"pointer": _pointer(single, r.index, e.field), "detail": e.message} for e in r.errors]
                for r in result.results]
    if result.failed == len(events):
        raise invalid([p for ps in problems for p in ps],
                      detail="no event was stored: " + ("the event is invalid" if single else "every event is invalid"))
    record_audit("usage.ingest", "usage_events", events[0]["transaction_id"], after={
        "accepted": result.accepted, "duplicates": result.duplicates, "failed": result.failed})
    # UsageEventsOut's shape, built as plain values: a batch answers up to 1,000 results.
    return respond({"accepted": result.accepted, "duplicates": result.duplicates, "failed": result.failed,
                    "results": [{"index": r.index, "transaction_id": r.transaction_id, "status": r.status,
                                 "errors": problems[r.index] or None} for r in result.results]},
                   207 if result.failed else 200)
