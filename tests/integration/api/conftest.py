"""The JSON API through the app factory, on the database under test.

``notes`` is a small write route used to test what every POST gets from the framework
(transaction, Idempotency-Key, audit entry, problems): each note is one audit entry.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from connector import create_app
from connector.api.framework import ApiBlueprint, record_audit, respond
from connector.api.money import Money
from tests.support.api import new_key

notes = ApiBlueprint("notes", __name__, tag="Notes")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=200)
    price: Money | None = None
    fail: str | None = Field(None, pattern="^(invalid|missing|conflict|unaudited)$")


class NoteOut(BaseModel):
    id: int
    text: str
    price: Money | None


@notes.post("/notes", scope="write", responses={201: NoteOut})
def add_note(body: NoteIn):
    """A note, recorded as one audit entry."""
    if body.fail == "invalid":
        record_audit("note.add", "note", "x", after={"text": body.text})
        raise InvalidInputError("price.amount", "must be positive")
    if body.fail == "missing":
        raise NotFoundError("invoice", 42)
    if body.fail == "conflict":
        raise ConflictError("invoice 42", "is void")
    if body.fail == "unaudited":
        return respond(NoteOut(id=0, text=body.text, price=body.price), 201)
    price = Money.of(body.price.decimal(), body.price.currency) if body.price else None
    entry = record_audit("note.add", "note", body.text, after={"text": body.text,
                                                                 "price": body.price.decimal() if body.price else None})
    return respond(NoteOut(id=entry, text=body.text, price=price), 201, headers={"Location": f"/notes/{entry}"})


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.register_api(notes)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def write_key(app):
    return new_key(app, "finance-bot", "write")


@pytest.fixture
def read_key(app):
    return new_key(app, "dashboard", "read")
