"""The reminders of the dunning schedule, in English and French (docs/payments.md, "Dunning").

``render(notice, seller)`` gives the subject and text of one step for one invoice in the
customer's language; ``invoice_document(services, invoice_id)`` gives the invoice's stored PDF,
attached to the message (none while its document is not generated yet).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parseaddr
from typing import TYPE_CHECKING

from billing_engine.use_cases.collections import DunningNotice

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.dunning")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


def amount_text(amount: Decimal, currency: str, language: str) -> str:
    """``1,234.50 EUR`` in English, ``1 234,50 EUR`` in French."""
    shown = f"{amount:,.2f}" if currency not in ("JPY", "KRW", "CLP", "ISK", "VND", "XOF", "XAF", "PYG", "UGX") \
        else f"{amount:,.0f}"
    if language == "fr":
        shown = shown.replace(",", "\u202f").replace(".", ",")
    return f"{shown} {currency}"


def _date(day, language: str) -> str:
    return day.strftime("%d/%m/%Y") if language == "fr" else day.isoformat()


SUBJECTS = {
    ("en", "reminder"): "Reminder: invoice {number} is overdue",
    ("en", "second"): "Second reminder: invoice {number} is {days} days overdue",
    ("en", "final"): "Final notice: invoice {number} is {days} days overdue",
    ("fr", "reminder"): "Rappel : la facture {number} est échue",
    ("fr", "second"): "Deuxième rappel : facture {number} impayée depuis {days} jours",
    ("fr", "final"): "Dernier rappel avant recouvrement : facture {number} impayée depuis {days} jours",
}

OPENINGS = {
    ("en", "reminder"): "Our records show that invoice {number} of {issued}, due on {due}, is still unpaid. "
                        "Perhaps it escaped your attention.",
    ("en", "second"): "Despite our reminder, invoice {number} of {issued}, due on {due}, is still unpaid "
                      "{days} days after its due date.",
    ("en", "final"): "Invoice {number} of {issued}, due on {due}, is still unpaid {days} days after its due date. "
                     "Without payment, we will have to start recovery proceedings.",
    ("fr", "reminder"): "Sauf erreur de notre part, la facture {number} du {issued}, échue le {due}, reste impayée. "
                        "Elle a peut-être échappé à votre attention.",
    ("fr", "second"): "Malgré notre précédent rappel, la facture {number} du {issued}, échue le {due}, reste "
                      "impayée {days} jours après son échéance.",
    ("fr", "final"): "La facture {number} du {issued}, échue le {due}, reste impayée {days} jours après son "
                     "échéance. Sans règlement de votre part, nous engagerons une procédure de recouvrement.",
}

BODY = {
    "en": ("Hello {customer},\n\n{opening}\n\nAmount due: {balance} (invoice total {total}).\n\n"
           "Please pay it by bank transfer quoting the invoice number {number}{penalties}. If you have paid "
           "it in the meantime, please ignore this message.\n\n{attached}Best regards,\n{seller}\n"),
    "fr": ("Bonjour {customer},\n\n{opening}\n\nMontant dû : {balance} (total de la facture {total}).\n\n"
           "Merci de la régler par virement en indiquant le numéro de facture {number}{penalties}. Si vous "
           "l'avez réglée entre-temps, merci de ne pas tenir compte de ce message.\n\n{attached}"
           "Cordialement,\n{seller}\n"),
}

PENALTIES = {
    "en": (". Late payments bear interest and, for businesses, a fixed recovery indemnity of 40 EUR "
           "(French Commercial Code, L441-10 and D441-5)"),
    "fr": (". Tout retard de paiement entraîne des pénalités de retard et, entre professionnels, une indemnité "
           "forfaitaire pour frais de recouvrement de 40 EUR (Code de commerce, art. L441-10 et D441-5)"),
}

ATTACHED = {"en": "The invoice is attached.\n\n", "fr": "La facture est jointe à ce message.\n\n"}


def seller_name(sender: str) -> str:
    """The name the reminders are signed with: MAIL_FROM's display name, else its address."""
    name, address = parseaddr(sender)
    return name or address


def render(notice: DunningNotice, seller: str, *, attached: bool = False) -> Rendered:
    """The subject and text of ``notice``'s step in its customer's language (English or French)."""
    language = notice.language if notice.language in ("en", "fr") else "en"
    values = {"number": notice.number, "days": notice.days_late, "issued": _date(notice.issued_on, language),
              "due": _date(notice.due_on, language)}
    penalties = PENALTIES[language] if notice.step == "final" and notice.currency == "EUR" else ""
    text = BODY[language].format(
        customer=notice.customer_name, opening=OPENINGS[(language, notice.step)].format(**values),
        balance=amount_text(notice.balance, notice.currency, language),
        total=amount_text(notice.total, notice.currency, language), number=notice.number, penalties=penalties,
        attached=ATTACHED[language] if attached else "", seller=seller)
    return Rendered(SUBJECTS[(language, notice.step)].format(**values), text)


def invoice_document(services: Services, invoice_id: int) -> bytes | None:
    """The invoice's stored PDF (its Factur-X XML inside), which the reminder attaches; None, logged,
    when its document is not generated yet: the reminder then goes without it. A document is never
    rendered here: the one attached is the one stored when the invoice was finalized."""
    from sqlmodel import Session

    from billing_engine.errors import NotFoundError
    from billing_engine.use_cases.documents import get_document

    with Session(services.engine) as session:
        try:
            return get_document(session, invoice_id=invoice_id).pdf
        except NotFoundError:
            log.info("dunning: invoice %s has no document yet; its reminder goes without the PDF", invoice_id)
            return None
