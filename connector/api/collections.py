"""``/api/v1``: getting paid (docs/payments.md).

- SEPA mandates: ``POST|GET /customers/{customer_id}/mandates``, ``GET /mandates``,
  ``GET /mandates/{mandate_id}``, ``POST /mandates/{mandate_id}/revoke``.
- Bank statement entries: ``GET /bank-entries`` (``?status=unmatched``: what finance must match,
  with candidate invoices), ``GET /bank-entries/{entry_id}``, ``POST /bank-entries/{entry_id}/match``,
  ``POST /bank-entries/{entry_id}/set-aside``.
- Dunning: ``GET|POST /customers/{customer_id}/dunning-profile`` (e-mail, language, pause), and
  ``GET /invoices/{invoice_id}/collection`` (overdue since, reminders sent, direct debit).
- ``GET /invoices/{invoice_id}/late-charges``: interest and fixed indemnity, computed on demand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from billing_engine.use_cases import bank_statements, collections, direct_debits
from connector.api.framework import (
    ApiBlueprint,
    business_date,
    reading,
    record_audit,
    respond,
    write_session,
)
from connector.api.money import Money
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.problems import invalid
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


# ---------------------------------------------------------------- bank statement entries


class EntryPath(BaseModel):
    entry_id: int = Field(ge=1, le=MAX_ID)


class CandidateOut(BaseModel):
    invoice_id: int
    number: str | None
    customer_id: str
    balance: Money
    due_on: date | None
    why: str = Field(description="Why it is a candidate: named in the remittance, an open invoice of the payer's "
                                 "account, or of the same amount.")


class BankEntryOut(BaseModel):
    id: int
    entry_key: str = Field(description="The account and the bank's reference of the entry (unique).")
    statement_id: str
    account_iban: str
    booked_on: date
    direction: str = Field(description="credit or debit.")
    amount: Money
    counterparty_name: str
    counterparty_iban: str
    remittance: str
    end_to_end_id: str
    return_reason: str
    status: str = Field(description="matched, unmatched (waiting for finance), returned (a direct-debit return), "
                                    "recorded (already booked) or ignored (set aside).")
    rule: str = Field(description="How it was matched: direct_debit, invoice_number, amount_and_account, "
                                  "direct_debit_return, manual.")
    note: str
    customer_id: str | None
    payment_id: int | None
    candidates: list[CandidateOut] = Field(description="For an unmatched credit: the invoices it may pay.")


class EntryQuery(PageQuery):
    status: str | Absent = Field(None, pattern="^(matched|unmatched|returned|recorded|ignored)$")


class BankEntryPage(Page[BankEntryOut]):
    pass


class MatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=50, description="The invoices it pays, in the order to pay them.")
    invoice_numbers: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=50, description="Or their numbers (INV-2026-000123).")
    customer_id: str | None = Field(None, pattern=ID_PATTERN,
                                    description="Or the customer who paid (its oldest open invoices first).")


class SetAsideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=400, description="Why it is not a customer's payment.")


def _entry(e: bank_statements.BankEntryView) -> BankEntryOut:
    return BankEntryOut(
        id=e.entry_id, entry_key=e.entry_key, statement_id=e.statement_id, account_iban=e.account_iban,
        booked_on=e.booked_on, direction=e.direction, amount=Money.of(e.amount, e.currency),
        counterparty_name=e.counterparty_name, counterparty_iban=e.counterparty_iban, remittance=e.remittance,
        end_to_end_id=e.end_to_end_id, return_reason=e.return_reason, status=e.status, rule=e.rule, note=e.note,
        customer_id=e.customer_id, payment_id=e.payment_id,
        candidates=[CandidateOut(invoice_id=c.invoice_id, number=c.number, customer_id=c.customer_id,
                                 balance=Money.of(c.balance, c.currency), due_on=c.due_on, why=c.why)
                    for c in e.candidates])


def _entry_audit(e: bank_statements.BankEntryView) -> dict:
    return {"status": e.status, "rule": e.rule, "note": e.note, "customer_id": e.customer_id,
            "payment_id": e.payment_id, "amount": str(e.amount), "currency": e.currency}


@blueprint.get("/bank-entries", scope="read", responses={200: BankEntryPage})
def list_bank_entries(query: EntryQuery):
    """Bank statement entries recorded by the statement import, oldest first; `status=unmatched`
    lists the credits finance must match, each with its candidate invoices."""
    after = decode_cursor(query.cursor, "bank-entries", (int,))
    with reading() as session:
        rows = bank_statements.list_bank_entries(session, status=query.status, after_id=after[0] if after else None,
                                                 limit=query.limit + 1)
    return respond(BankEntryPage(**page(rows, query, "bank-entries", key=lambda e: [e.entry_id], item=_entry)))


@blueprint.get("/bank-entries/<int:entry_id>", scope="read", responses={200: BankEntryOut})
def get_bank_entry(path: EntryPath):
    """One bank statement entry (with its candidate invoices while unmatched)."""
    with reading() as session:
        return respond(_entry(bank_statements.get_bank_entry(session, path.entry_id)))


@blueprint.post("/bank-entries/<int:entry_id>/match", scope="write", responses={200: BankEntryOut})
def match_bank_entry(path: EntryPath, body: MatchIn):
    """Match an unmatched credit by hand: recorded as a payment of these invoices (or of the customer's
    oldest open ones), the rest becoming credit; the payer's account is remembered."""
    session = write_session()
    before = bank_statements.get_bank_entry(session, path.entry_id)
    entry = bank_statements.match_bank_entry(session, path.entry_id, invoice_ids=body.invoice_ids,
                                             invoice_numbers=body.invoice_numbers, customer_id=body.customer_id,
                                             now=datetime.now(UTC))
    record_audit("bank_entry.match", "bank_entry", entry.entry_id, before=_entry_audit(before),
                 after=_entry_audit(entry))
    return respond(_entry(entry))


@blueprint.post("/bank-entries/<int:entry_id>/set-aside", scope="write", responses={200: BankEntryOut})
def set_aside_bank_entry(path: EntryPath, body: SetAsideIn):
    """Set an unmatched entry aside (not a customer's payment); nothing is recorded for it."""
    session = write_session()
    before = bank_statements.get_bank_entry(session, path.entry_id)
    entry = bank_statements.ignore_bank_entry(session, path.entry_id, reason=body.reason, now=datetime.now(UTC))
    record_audit("bank_entry.set_aside", "bank_entry", entry.entry_id, before=_entry_audit(before),
                 after=_entry_audit(entry))
    return respond(_entry(entry))


# ---------------------------------------------------------------- dunning


class ProfileOut(BaseModel):
    customer_id: str
    email: str | None = Field(description="Where its reminders go; null: unknown (no reminder is sent).")
    language: str = Field(description="en or fr: the language of its reminders.")
    language_chosen: str | None = Field(description="The language set for it; null: from the billing country.")
    dunning_paused: bool
    paused_reason: str


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=254, description="Where its reminders go; null clears it.")
    language: str | None = Field(None, pattern="^(en|fr)$",
                                 description="en or fr; null: from the billing country (French for FR, MC, BE, LU, "
                                             "CH, CA).")
    paused: bool | None = Field(None, description="true stops its reminders, false resumes them.")
    reason: str | None = Field(None, max_length=500, description="Why dunning is paused.")


def _profile(view: collections.CollectionProfileView) -> ProfileOut:
    return ProfileOut(customer_id=view.customer_id, email=view.email, language=view.language,
                      language_chosen=view.language_chosen, dunning_paused=view.dunning_paused,
                      paused_reason=view.paused_reason)


@blueprint.get("/customers/<customer_id>/dunning-profile", scope="read", responses={200: ProfileOut})
def get_dunning_profile(path: CustomerPath):
    """Where a customer's reminders go, in which language, and whether its dunning is paused."""
    with reading() as session:
        return respond(_profile(collections.get_collection_profile(session, path.customer_id)))


@blueprint.post("/customers/<customer_id>/dunning-profile", scope="write", responses={200: ProfileOut})
def set_dunning_profile(path: CustomerPath, body: ProfileIn):
    """Change a customer's reminder e-mail, language, or pause (fields left out keep their value)."""
    session = write_session()
    before = collections.get_collection_profile(session, path.customer_id)
    changes = {name: getattr(body, name) for name in ("email", "language") if name in body.model_fields_set}
    view = collections.set_collection_profile(session, path.customer_id, paused=body.paused, reason=body.reason,
                                              now=datetime.now(UTC), **changes)
    record_audit("customer.dunning_profile", "customer", path.customer_id, before=_profile(before).model_dump(),
                 after=_profile(view).model_dump())
    return respond(_profile(view))


class InvoicePath(BaseModel):
    invoice_id: int = Field(ge=1, le=MAX_ID)


class DunningStepOut(BaseModel):
    step: str = Field(description="reminder, second or final.")
    sent_on: date
    days_late: int
    email: str
    language: str
    balance: Money = Field(description="What was due when it was sent.")


class DirectDebitOut(BaseModel):
    id: int
    collect_on: date
    amount: Money
    status: str = Field(description="pending (being collected), collected or returned.")
    end_to_end_id: str
    mandate_id: int
    return_reason: str | None
    returned_on: date | None


class InvoiceCollectionOut(BaseModel):
    invoice_id: int
    number: str | None
    customer_id: str
    status: str
    due_on: date | None
    balance: Money
    overdue_on: date | None = Field(description="The first day it was overdue (the day after its due date).")
    dunning_step: str | None = Field(description="The last reminder sent.")
    dunning_step_on: date | None
    return_reason: str | None = Field(description="Why its direct debit came back, e.g. AM04 insufficient funds.")
    returned_on: date | None
    steps: list[DunningStepOut]
    direct_debit: DirectDebitOut | None


@blueprint.get("/invoices/<int:invoice_id>/collection", scope="read", responses={200: InvoiceCollectionOut})
def get_invoice_collection(path: InvoicePath):
    """Where an invoice stands in collection: overdue since, the reminders sent, its direct debit."""
    with reading() as session:
        v = collections.invoice_collection(session, path.invoice_id)
    debit = v.direct_debit
    return respond(InvoiceCollectionOut(
        invoice_id=v.invoice_id, number=v.number, customer_id=v.customer_id, status=v.status, due_on=v.due_on,
        balance=Money.of(v.balance, v.currency), overdue_on=v.overdue_on, dunning_step=v.dunning_step,
        dunning_step_on=v.dunning_step_on, return_reason=v.return_reason, returned_on=v.returned_on,
        steps=[DunningStepOut(step=s.step, sent_on=s.sent_on, days_late=s.days_late, email=s.email,
                              language=s.language, balance=Money.of(s.balance, s.currency)) for s in v.steps],
        direct_debit=None if debit is None else DirectDebitOut(
            id=debit.debit_id, collect_on=debit.collect_on, amount=Money.of(debit.amount, debit.currency),
            status=debit.status, end_to_end_id=debit.end_to_end_id, mandate_id=debit.mandate_id,
            return_reason=debit.return_reason, returned_on=debit.returned_on)))


# ---------------------------------------------------------------- late charges


class LateChargesQuery(BaseModel):
    on: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY,
                                 description="The day they are computed for (default: today).")
    rate: str | Absent = Field(None, pattern=r"^[0-9]{1,3}(\.[0-9]{1,4})?$",
                               description="Yearly interest rate in percent (default: the LATE_INTEREST_RATE setting).")


class LateChargesOut(BaseModel):
    invoice_id: int
    on: date
    due_on: date
    days_late: int
    balance: Money
    annual_rate_percent: str = Field(description="The yearly rate applied, in percent.")
    interest: Money = Field(description="balance × rate × days late / 365, rounded half up.")
    indemnity: Money = Field(description="The fixed recovery indemnity (EUR invoices).")
    total: Money
    explanation: str
    invoiced: bool = Field(description="Always false: billsync computes them; finance decides to invoice them.")


@blueprint.get("/invoices/<int:invoice_id>/late-charges", scope="read", responses={200: LateChargesOut})
def get_invoice_late_charges(path: InvoicePath, query: LateChargesQuery):
    """The late-payment interest and the fixed recovery indemnity (French B2B) an invoice owes on a day,
    computed on demand; nothing is invoiced."""
    settings = current_app.extensions["billsync"].settings
    rate = Decimal(query.rate) if query.rate is not None else settings.late_interest_rate
    if rate is None:
        raise invalid([{"parameter": "rate", "detail": "required: the LATE_INTEREST_RATE setting is not set"}])
    with reading() as session:
        charges = collections.invoice_late_charges(session, path.invoice_id, as_of=query.on or business_date(),
                                                   annual_rate_percent=rate,
                                                   indemnity_eur=settings.late_payment_indemnity)
    cur = charges.currency
    return respond(LateChargesOut(
        invoice_id=path.invoice_id, on=charges.as_of, due_on=charges.due_on, days_late=charges.days_late,
        balance=Money.of(charges.balance, cur), annual_rate_percent=format(charges.annual_rate_percent, "f"),
        interest=Money.of(charges.interest, cur), indemnity=Money.of(charges.indemnity, cur),
        total=Money.of(charges.total, cur), explanation=charges.explanation, invoiced=False))
