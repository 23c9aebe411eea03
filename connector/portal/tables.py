"""The customer portal's tables: the links that open it (``portal_links``, only the SHA-256 of
each token is kept) and the changes a customer previewed (``portal_changes``), confirmed at most
once, exactly as previewed."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from connector.sync.tables import UtcDateTime


class PortalLinkRow(SQLModel, table=True):
    __tablename__ = "portal_links"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    customer_id: str = Field(max_length=64, index=True)
    made_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class PortalChangeRow(SQLModel, table=True):
    """A change previewed in the portal: ``public_id`` (random) is what its URLs carry;
    ``amendments`` the amendment count of the subscription when previewed (a later amendment
    makes the preview stale); ``preview`` the figures shown, as JSON with decimal strings."""

    __tablename__ = "portal_changes"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True)
    customer_id: str = Field(max_length=64, index=True)
    subscription_id: str = Field(max_length=64)
    kind: str = Field(max_length=20)  # quantity, plan, cancel
    item_id: str | None = Field(default=None, max_length=64)
    quantity: str | None = Field(default=None, max_length=40)
    price_id: str | None = Field(default=None, max_length=64)  # a plan switch: the new plan's price
    new_item_id: str | None = Field(default=None, max_length=64)  # … and the item it adds
    effective_on: date
    previewed_on: date
    amendments: int
    reason_code: str | None = Field(default=None, max_length=40)
    reason_text: str = Field(default="", max_length=500)
    preview: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    confirmed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    amendment_id: str | None = Field(default=None, max_length=64)
