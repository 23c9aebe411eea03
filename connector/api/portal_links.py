"""``POST /api/v1/customers/{customer_id}/portal-links``: a link that opens a customer's portal
once, until ``PORTAL_LINK_MINUTES`` have passed (docs/self-service.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, g
from pydantic import BaseModel, Field

from connector.api.framework import ApiBlueprint, current_key, record_audit, respond, write_session
from connector.api.invoices import CUSTOMER_ID_PATTERN

blueprint = ApiBlueprint("portal_links", __name__, tag="Customer portal",
                         description="Links that open a customer's portal once, before they expire.")


class PortalCustomerPath(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN,
                             description="The customer's id, or its Salesforce Account id.")


class PortalLinkOut(BaseModel):
    customer_id: str
    url: str = Field(description="Opens the customer's portal once; give it only to the customer.")
    expires_at: datetime


@blueprint.post("/customers/<customer_id>/portal-links", scope="write", responses={201: PortalLinkOut})
def create_portal_link(path: PortalCustomerPath):
    """Make a portal link for a customer (404 when no customer has this id or Salesforce Account id)."""
    from connector.portal.links import link_audit, make_link

    settings = current_app.extensions["billsync"].settings
    link = make_link(write_session(), path.customer_id, actor=current_key().actor, settings=settings,
                     now=datetime.now(UTC), request_id=g.get("request_id"), audited=False)
    record_audit("portal.link_issued", "customer", link.customer_id, after=link_audit(link))
    return respond(PortalLinkOut(customer_id=link.customer_id, url=link.url, expires_at=link.expires_at), 201)
