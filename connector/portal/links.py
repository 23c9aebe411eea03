"""Portal links: a random token, kept only as its SHA-256, that opens a customer's portal once
before it expires (``PORTAL_LINK_MINUTES``). Finance makes one (``billsync portal link``, the
API, the console's customer page) or the customer asks for one by e-mail (docs/self-service.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from billing_engine.errors import NotFoundError
from billing_engine.use_cases import audit
from billing_engine.use_cases import customers as customers_uc
from connector.portal.tables import PortalLinkRow
from connector.settings import Settings

#: Where a link opens; the token follows (the request log hides it: ``SECRET_PATHS``).
OPEN_PATH = "/portal/open/"
#: Why a link does not open.
UNKNOWN, EXPIRED, USED = "unknown", "expired", "used"


class LinkRefusedError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedLink:
    customer_id: str
    url: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def resolve_customer(session: Session, reference: str) -> str:
    """A customer by its billsync id or its Salesforce Account id (``NotFoundError`` otherwise)."""
    reference = reference.strip()
    try:
        return customers_uc.get_customer(session, reference).customer_id
    except NotFoundError:
        found = customers_uc.find_customer_by_salesforce_id(session, reference) if reference else None
        if found is None:
            raise NotFoundError("customer", reference or "(empty)") from None
        return found.customer_id


def issue_link(session: Session, customer_id: str, *, made_by: str, now: datetime, minutes: int,
               base_url: str) -> IssuedLink:
    """A new link to ``customer_id``'s portal, in the caller's transaction."""
    customer_id = customers_uc.get_customer(session, customer_id).customer_id
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(minutes=minutes)
    session.add(PortalLinkRow(token_hash=token_hash(token), customer_id=customer_id, made_by=made_by[:200],
                              created_at=now, expires_at=expires_at))
    session.flush()
    return IssuedLink(customer_id, f"{base_url.rstrip('/')}{OPEN_PATH}{token}", expires_at)


def use_link(session: Session, token: str, *, now: datetime) -> str:
    """The customer a link opens, marking it used in the caller's transaction; ``LinkRefusedError``
    (unknown, expired, used) otherwise. Two requests with the same link: one wins."""
    digest = token_hash(token)
    table = PortalLinkRow.__table__  # type: ignore[attr-defined]
    claimed = session.execute(
        update(table).where(table.c.token_hash == digest, table.c.used_at.is_(None), table.c.expires_at > now)
        .values(used_at=now).returning(table.c.customer_id)).first()
    if claimed is not None:
        return str(claimed[0])
    row = session.execute(select(table.c.used_at, table.c.expires_at).where(table.c.token_hash == digest)).first()
    if row is None:
        raise LinkRefusedError(UNKNOWN)
    raise LinkRefusedError(USED if row.used_at is not None else EXPIRED)


def is_token(text: str) -> bool:
    return 20 <= len(text) <= 100 and all(c.isalnum() or c in "-_" for c in text)


def make_link(session: Session, reference: str, *, actor: str, settings: Settings, now: datetime,
              request_id: str | None = None, sent_to: str | None = None, audited: bool = True) -> IssuedLink:
    """A new link to the portal of the customer ``reference`` names (its id or its Salesforce Account
    id), valid ``PORTAL_LINK_MINUTES``, recorded in the audit log by ``actor``, in the caller's
    transaction (``audited=False``: the caller records it, as the API does with its key)."""
    customer_id = resolve_customer(session, reference)
    link = issue_link(session, customer_id, made_by=actor, now=now, minutes=settings.portal_link_minutes,
                      base_url=settings.portal_url)
    if audited:
        audit.record_action(session, at=now, actor=actor, action="portal.link_issued", target_type="customer",
                            target_id=customer_id, after=link_audit(link, sent_to), request_id=request_id)
    return link


def link_audit(link: IssuedLink, sent_to: str | None = None) -> dict[str, object]:
    """What the audit log keeps of a new link: never its token."""
    return {"expires_at": link.expires_at, **({"sent_to": sent_to} if sent_to else {})}
