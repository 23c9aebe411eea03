"""The self-service catalog for tests: the sandbox's catalogue (its Licences plans are marked
Self_Service__c) pulled into billsync, and the checkout's forms filled in."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from billing_engine.use_cases import self_service
from connector.sync.pull import pull_changes
from sfsandbox.org import Caller
from sfsandbox.seed import create_catalogue

#: The graduated per-seat plan: 1–5 at 200, 6–10 at 150, 11+ at 100 EUR per month.
LICENCES = "LIC"


def seed_catalog(org: Any, services: Any) -> None:
    """The sandbox's products and price book entries, pulled into billsync."""
    create_catalogue(org.org, Caller(org.org.user_id, None))
    pull_changes(services, objects=["Product2", "PricebookEntry"])


def plan_id(engine: Any, code: str = LICENCES, currency: str = "EUR") -> str:
    with Session(engine) as session:
        plans = self_service.self_service_plans(session)
    return next(p.price_id for p in plans if p.product.code == code and p.currency == currency)


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def form_key(html: str) -> str:
    return re.search(r'name="key" value="([a-f0-9]{32})"', html).group(1)
