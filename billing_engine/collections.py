"""Getting paid (pure): overdue dates, SEPA mandate fields, invoice numbers in bank remittance
text, the dunning schedule and late-payment charges (docs/payments.md).

- An open invoice with a balance becomes **overdue** on the day after its due date
  (docs/billing-rules.md §16 Payments and refunds: ``overdue`` as of the day after the due date).
- A **dunning schedule** is a list of steps, each a number of days after the due date
  (``3:reminder,15:second,30:final``); on a given day the step due is the latest one whose
  day has come, unless it or a later one was already sent: a clock that missed days sends
  one message, never a burst.
- **Late charges** (French B2B, Code de commerce L441-10 and D441-5): interest at a yearly
  rate on the balance for every day past the due date (days / 365, rounded half up once),
  plus a fixed recovery indemnity per invoice (40 EUR).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from billing_engine.errors import InvalidInputError
from billing_engine.money import round_money

ZERO = Decimal(0)

# ---------------------------------------------------------------- overdue


def overdue_on(due_on: date) -> date:
    """The first day an unpaid invoice is overdue: the day after its due date."""
    return due_on + timedelta(days=1)


def days_late(due_on: date, as_of: date) -> int:
    """Days past the due date on ``as_of`` (0 on or before it)."""
    return max((as_of - due_on).days, 0)


# ---------------------------------------------------------------- SEPA mandates

#: Sequence types billsync collects with: the first debit of a mandate, then the recurring ones.
SEQUENCE_TYPES = ("FRST", "RCUR")
MANDATE_STATUSES = ("active", "revoked")
#: The Latin character set of SEPA identifiers (EPC's implementation guidelines).
_SEPA_ID = re.compile(r"[A-Za-z0-9+?/\-:().,' ]{1,35}")


def check_mandate_reference(reference: object) -> str:
    """A mandate reference (RUM): 1–35 characters of the SEPA set, not starting or ending with
    ``/`` and without ``//``; case is kept (it identifies the mandate at the debtor's bank)."""
    if not isinstance(reference, str) or not _SEPA_ID.fullmatch(reference.strip()):
        raise InvalidInputError("reference", "must be 1 to 35 characters among letters, digits, spaces and "
                                             "+ ? / - : ( ) . , '")
    value = reference.strip()
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise InvalidInputError("reference", "must not start or end with '/' nor contain '//'")
    return value


def check_sequence_type(value: object) -> str:
    if value not in SEQUENCE_TYPES:
        raise InvalidInputError("sequence_type", f"must be one of {', '.join(SEQUENCE_TYPES)}")
    return str(value)


def check_signed_on(signed_on: object, today: date) -> date:
    if not isinstance(signed_on, date):
        raise InvalidInputError("signed_on", "must be a date")
    if signed_on > today:
        raise InvalidInputError("signed_on", f"{signed_on} is after today ({today}): a mandate is signed first")
    return signed_on


_CREDITOR_ID = re.compile(r"([A-Z]{2})(\d{2})([A-Z0-9]{3})([A-Z0-9]{1,28})")


def check_creditor_identifier(value: object) -> str:
    """A SEPA creditor identifier (AT-02; the ICS in France): country, two check digits, a 3-character
    business code (``ZZZ`` when none), the national identifier; the check digits are ISO 7064
    MOD 97-10 over the national identifier and the country, the business code left out
    (``FR72ZZZ123456``)."""
    text = value.strip().upper().replace(" ", "") if isinstance(value, str) else ""
    match = _CREDITOR_ID.fullmatch(text)
    if not match:
        raise InvalidInputError("creditor_id", "is not a SEPA creditor identifier such as FR72ZZZ123456")
    country, digits, _business, national = match.groups()
    numeric = "".join(str(int(c, 36)) for c in f"{national}{country}00")
    if f"{98 - int(numeric) % 97:02d}" != digits:
        raise InvalidInputError("creditor_id", f"{text} has wrong check digits")
    return text


#: What the return and reject reason codes of SEPA direct debits mean (ISO 20022 ExternalReturnReason).
RETURN_REASONS = {
    "AC01": "incorrect account number",
    "AC04": "account closed",
    "AC06": "account blocked",
    "AC13": "debtor account is a consumer account",
    "AG01": "transaction forbidden on this account",
    "AG02": "invalid bank operation code",
    "AM04": "insufficient funds",
    "AM05": "duplicate collection",
    "BE05": "unrecognised creditor",
    "CNOR": "creditor bank not registered",
    "DNOR": "debtor bank not registered",
    "FF01": "invalid file format",
    "MD01": "no mandate",
    "MD02": "missing mandate information",
    "MD06": "refund requested by the debtor",
    "MD07": "debtor deceased",
    "MS02": "refused by the debtor",
    "MS03": "reason not specified by the bank",
    "RC01": "bank identifier incorrect",
    "RR01": "missing debtor account or identification",
    "RR02": "missing debtor name or address",
    "RR03": "missing creditor name or address",
    "RR04": "regulatory reason",
    "SL01": "specific service offered by the debtor's bank",
}
#: Returns after which the mandate cannot be used again: it is revoked.
MANDATE_ENDING_REASONS = frozenset({"AC01", "AC04", "AC06", "AC13", "AG01", "MD01", "MD07", "MS02", "SL01"})
_REASON_CODE = re.compile(r"[A-Z0-9]{4}")


def check_return_reason(code: object) -> str:
    """A return or reject reason code: four upper-case letters or digits (``AM04``)."""
    if not isinstance(code, str) or not _REASON_CODE.fullmatch(code.strip().upper()):
        raise InvalidInputError("reason", "must be a four-character ISO 20022 reason code such as AM04")
    return code.strip().upper()


def describe_return(code: str) -> str:
    """``AM04 insufficient funds`` (the code alone when it is not a known one)."""
    meaning = RETURN_REASONS.get(code)
    return f"{code} {meaning}" if meaning else code


# ---------------------------------------------------------------- invoice numbers in remittance text

# "INV-2026-000123", "inv 2026 123", "INV/2026/123", "inv2026000123", "Invoice INV-2026-123", in
# any case, anywhere in a longer text. Seven or more digits after the year are not a number of ours.
_INVOICE_NUMBER = re.compile(r"(?<![A-Z0-9])INV(?:OICE)?[\s\-_/.:#°]*(?:N[O°]?\.?\s*)?(\d{4})[\s\-_/.:#]*(\d{1,6})(?!\d)",
                             re.IGNORECASE)


def find_invoice_numbers(text: str) -> list[str]:
    """The invoice numbers (``INV-YYYY-NNNNNN``) a remittance text names, in order, each once."""
    found: list[str] = []
    for match in _INVOICE_NUMBER.finditer(text or ""):
        number = f"INV-{match.group(1)}-{int(match.group(2)):06d}"
        if number not in found:
            found.append(number)
    return found


# ---------------------------------------------------------------- dunning

DUNNING_STEPS = ("reminder", "second", "final")
LANGUAGES = ("en", "fr")
#: Billing countries whose customers are written to in French unless their profile says otherwise.
FRENCH_COUNTRIES = frozenset({"FR", "MC", "BE", "LU", "CH", "CA"})


@dataclass(frozen=True, slots=True)
class DunningStage:
    days: int  # after the due date
    step: str


class DunningSchedule(tuple[DunningStage, ...]):
    """The stages of a dunning schedule, in day order; shown as ``3:reminder,15:second,30:final``."""

    def __str__(self) -> str:
        return format_dunning_schedule(self) or "none"


def parse_dunning_schedule(text: str) -> DunningSchedule:
    """``"3:reminder,15:second,30:final"`` → stages in day order; raises ``InvalidInputError``.

    Days are whole days after the due date (1 to 365), strictly increasing; each step is one
    of ``reminder``, ``second``, ``final``, once. An empty text is an empty schedule (no dunning).
    """
    stages: list[DunningStage] = []
    if not text.strip():
        return DunningSchedule()
    for part in text.split(","):
        days_text, sep, step = part.strip().partition(":")
        if not sep or not days_text.strip().isdigit():
            raise InvalidInputError("schedule", f"{part.strip()!r} is not DAYS:STEP (e.g. 3:reminder)")
        days, step = int(days_text), step.strip().lower()
        if not 1 <= days <= 365:
            raise InvalidInputError("schedule", f"{part.strip()!r}: days must be between 1 and 365")
        if step not in DUNNING_STEPS:
            raise InvalidInputError("schedule", f"{part.strip()!r}: the step must be one of {', '.join(DUNNING_STEPS)}")
        if any(s.step == step for s in stages):
            raise InvalidInputError("schedule", f"{step} appears twice")
        if stages and days <= stages[-1].days:
            raise InvalidInputError("schedule", f"{part.strip()!r}: days must increase from one step to the next")
        stages.append(DunningStage(days, step))
    return DunningSchedule(stages)


def format_dunning_schedule(stages: Sequence[DunningStage]) -> str:
    return ",".join(f"{s.days}:{s.step}" for s in stages)


def step_due(stages: Sequence[DunningStage], due_on: date, as_of: date, sent: Iterable[str]) -> DunningStage | None:
    """The stage to send on ``as_of`` for an unpaid invoice due on ``due_on``: the latest stage whose
    day (due date + days) has come, unless that stage or a later one was already sent."""
    sent_steps = set(sent)
    late = (as_of - due_on).days
    reached = [s for s in stages if s.days <= late]
    if not reached:
        return None
    latest = reached[-1]
    order = [s.step for s in stages]
    if any(step in sent_steps and order.index(step) >= order.index(latest.step) for step in order):
        return None
    return latest


def check_language(value: object) -> str:
    if value not in LANGUAGES:
        raise InvalidInputError("language", f"must be one of {', '.join(LANGUAGES)}")
    return str(value)


def language_for(chosen: str | None, country: str) -> str:
    """The customer's language: the one chosen for it, else French for a French-speaking billing
    country (FR, MC, BE, LU, CH, CA), else English."""
    if chosen in LANGUAGES:
        return str(chosen)
    return "fr" if (country or "").upper() in FRENCH_COUNTRIES else "en"


_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


def check_email(value: object) -> str:
    if not isinstance(value, str) or len(value.strip()) > 254 or not _EMAIL.fullmatch(value.strip()):
        raise InvalidInputError("email", "is not an e-mail address such as billing@example.com")
    return value.strip()


# ---------------------------------------------------------------- late charges

#: The fixed recovery indemnity of French B2B invoices (Code de commerce D441-5), per invoice, in euros.
RECOVERY_INDEMNITY_EUR = Decimal(40)
DAYS_IN_YEAR = 365


@dataclass(frozen=True, slots=True)
class LateCharges:
    currency: str
    balance: Decimal
    due_on: date
    as_of: date
    days_late: int
    annual_rate_percent: Decimal
    interest: Decimal  # balance × rate × days / 365, rounded half up
    indemnity: Decimal  # the fixed indemnity (EUR invoices only)
    total: Decimal
    explanation: str


def late_charges(*, balance: Decimal, currency: str, due_on: date, as_of: date, annual_rate_percent: Decimal,
                 indemnity_eur: Decimal = RECOVERY_INDEMNITY_EUR) -> LateCharges:
    """Late-payment interest and the fixed recovery indemnity of an unpaid invoice on ``as_of``.

    Interest = balance × rate / 100 × days late / 365, rounded once, half up, to the currency;
    the indemnity is due once per invoice paid late, in euros, so it applies to EUR invoices
    only. Nothing is due on or before the due date, or on a balance of zero.
    """
    if annual_rate_percent < 0 or annual_rate_percent > 100:
        raise InvalidInputError("rate", f"must be a yearly percentage between 0 and 100, got {annual_rate_percent}")
    days = days_late(due_on, as_of)
    owed = balance if balance > 0 else ZERO
    interest = round_money(owed * annual_rate_percent / 100 * days / DAYS_IN_YEAR, currency) if days and owed \
        else round_money(ZERO, currency)
    indemnity = round_money(indemnity_eur, currency) if days and owed and currency == "EUR" \
        else round_money(ZERO, currency)
    if not days or not owed:
        explanation = "not late: nothing is due"
    else:
        explanation = (f"{owed} × {annual_rate_percent} % × {days}/{DAYS_IN_YEAR} days = {interest} {currency}"
                       + (f"; fixed recovery indemnity {indemnity} EUR" if currency == "EUR"
                          else "; the fixed 40 EUR indemnity applies to EUR invoices only"))
    return LateCharges(currency=currency, balance=owed, due_on=due_on, as_of=as_of, days_late=days,
                       annual_rate_percent=annual_rate_percent, interest=interest, indemnity=indemnity,
                       total=interest + indemnity, explanation=explanation)


# ---------------------------------------------------------------- bank statements


@dataclass(frozen=True, slots=True)
class BankTransaction:
    """One booked movement of a bank statement (camt.053 entry or transaction detail, or a CSV row).

    ``entry_key`` identifies it at the bank (the account and the bank's entry reference): a
    statement imported twice has the same keys. ``amount`` is positive; ``direction`` says which
    way it went. ``return_reason`` is set on a returned direct debit (an ISO 20022 reason code).
    """

    entry_key: str
    statement_id: str
    account_iban: str
    booked_on: date
    direction: str  # credit | debit
    amount: Decimal
    currency: str
    counterparty_name: str = ""
    counterparty_iban: str = ""
    remittance: str = ""
    end_to_end_id: str = ""
    batch_id: str = ""  # the PmtInfId of a direct-debit batch credited in one amount
    return_reason: str = ""
