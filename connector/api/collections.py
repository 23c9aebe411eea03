"""``/api/v1``: getting paid (docs/payments.md).

- SEPA mandates: ``POST|GET /customers/{customer_id}/mandates``, ``GET /mandates``,
  ``GET /mandates/{mandate_id}``, ``POST /mandates/{mandate_id}/revoke``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_engine.use_cases import direct_debits
from connector.api.framework import ApiBlueprint, business_date, reading, record_audit, respond, write_session
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.values import Absent, IsoDate

blueprint = ApiBlueprint("collections", __name__, tag="Collections",
                         description="SEPA mandates and direct debits, bank statement entries, dunning and late "
                                     "charges.")

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_ID = 2**31 - 1
#: The dates a request may carry.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


class CustomerPath(BaseModel):
    customer_id: str = Field(pattern=ID_PATTERN, description="The customer's id.")


class MandatePath(BaseModel):
    mandate_id: int = Field(ge=1, le=MAX_ID)


class MandateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=35, description="The mandate reference (RUM), as signed: "
                                                                    "letters, digits, spaces and + ? / - : ( ) . , '")
    signed_on: IsoDate = Field(ge=FIRST_DAY, le=LAST_DAY, description="The day the debtor signed it (not later "
                                                                      "than today).")
    iban: str = Field(min_length=5, max_length=50, pattern=r"^[A-Za-z0-9 ]+$",
                      description="The debtor's IBAN (spaces allowed), in the SEPA zone.")
    bic: str | None = Field(None, min_length=8, max_length=11, pattern=r"^[A-Za-z0-9]+$",
                            description="The debtor bank's BIC (optional).")
    account_holder: str | None = Field(None, min_length=1, max_length=70,
                                       description="The account holder (default: the customer's name).")
    sequence_type: str = Field("FRST", pattern="^(FRST|RCUR)$",
                               description="FRST for a new mandate (it becomes RCUR after its first export); RCUR "
                                           "for one already used by another system.")


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200, description="Why the mandate ends.")


class MandateOut(BaseModel):
    id: int
    customer_id: str
    reference: str
    signed_on: date
    iban: str
    bic: str | None
    account_holder: str
    sequence_type: str = Field(description="FRST or RCUR: the sequence type of its next debit.")
    status: str = Field(description="active or revoked.")
    revoked_on: date | None
    revoked_reason: str
    created_at: datetime


class MandateQuery(PageQuery):
    customer_id: str | Absent = Field(None, pattern=ID_PATTERN, description="Only this customer's.")
    status: str | Absent = Field(None, pattern="^(active|revoked)$")


class MandatePage(Page[MandateOut]):
    pass


def _mandate(v: direct_debits.MandateView) -> MandateOut:
    return MandateOut(id=v.mandate_id, customer_id=v.customer_id, reference=v.reference, signed_on=v.signed_on,
                      iban=v.iban, bic=v.bic, account_holder=v.account_holder, sequence_type=v.sequence_type,
                      status=v.status, revoked_on=v.revoked_on, revoked_reason=v.revoked_reason,
                      created_at=v.created_at.astimezone(UTC))


def _mandate_audit(v: direct_debits.MandateView) -> dict:
    return {"customer_id": v.customer_id, "reference": v.reference, "signed_on": v.signed_on.isoformat(),
            "iban": v.iban, "bic": v.bic, "sequence_type": v.sequence_type, "status": v.status}


@blueprint.post("/customers/<customer_id>/mandates", scope="write", responses={201: MandateOut})
def create_mandate(path: CustomerPath, body: MandateIn):
    """Record a customer's signed SEPA mandate: its EUR invoices are then collected by direct debit."""
    view = direct_debits.create_mandate(
        write_session(), path.customer_id, reference=body.reference, signed_on=body.signed_on, iban=body.iban,
        bic=body.bic, account_holder=body.account_holder, sequence_type=body.sequence_type, today=business_date(),
        now=datetime.now(UTC))
    record_audit("mandate.create", "mandate", view.mandate_id, after=_mandate_audit(view))
    return respond(_mandate(view), 201, headers={"Location": f"/api/v1/mandates/{view.mandate_id}"})


def _list(query: PageQuery, customer_id: str | None, status: str | None, listing: str) -> MandatePage:
    after = decode_cursor(query.cursor, listing, (int,))
    with reading() as session:
        rows = direct_debits.list_mandates(session, customer_id=customer_id, status=status,
                                           after_id=after[0] if after else None, limit=query.limit + 1)
    return MandatePage(**page(rows, query, listing, key=lambda v: [v.mandate_id], item=_mandate))


class CustomerMandateQuery(PageQuery):
    status: str | Absent = Field(None, pattern="^(active|revoked)$")


@blueprint.get("/customers/<customer_id>/mandates", scope="read", responses={200: MandatePage})
def list_customer_mandates(path: CustomerPath, query: CustomerMandateQuery):
    """A customer's mandates, oldest first."""
    return respond(_list(query, path.customer_id, query.status, "customer-mandates"))


@blueprint.get("/mandates", scope="read", responses={200: MandatePage})
def list_mandates(query: MandateQuery):
    """Every mandate, oldest first, by customer and status."""
    return respond(_list(query, query.customer_id, query.status, "mandates"))


@blueprint.get("/mandates/<int:mandate_id>", scope="read", responses={200: MandateOut})
def get_mandate(path: MandatePath):
    """One mandate."""
    with reading() as session:
        view = direct_debits.get_mandate(session, path.mandate_id)
    return respond(_mandate(view))


@blueprint.post("/mandates/<int:mandate_id>/revoke", scope="write", responses={200: MandateOut})
def revoke_mandate(path: MandatePath, body: RevokeIn):
    """End a mandate: no new direct debit uses it."""
    session = write_session()
    before = direct_debits.get_mandate(session, path.mandate_id)
    view = direct_debits.revoke_mandate(session, path.mandate_id, on=business_date(), reason=body.reason)
    record_audit("mandate.revoke", "mandate", view.mandate_id, before=_mandate_audit(before),
                 after=_mandate_audit(view))
    return respond(_mandate(view))
