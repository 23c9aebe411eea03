"""The e-mail that carries a portal link, in the customer's language (their billing contact's,
else from the billing country), sent through ``connector.mail`` (SMTP, or an ``.eml`` file in
``MAIL_DIR``)."""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage

from billing_engine.use_cases import collections as collections_uc
from billing_engine.use_cases import customers as customers_uc
from connector.mail import Mailer, MailError
from connector.portal.links import IssuedLink
from connector.settings import Settings

log = logging.getLogger("billsync.portal")

TEXTS = {
    "en": ("Your billing portal link",
           "Hello,\n\nHere is the link to the billing portal of {name}:\n\n{url}\n\n"
           "It opens the portal once, until {expires} (UTC). If you did not ask for it, ignore this message.\n"),
    "fr": ("Votre lien vers l'espace de facturation",
           "Bonjour,\n\nVoici le lien vers l'espace de facturation de {name} :\n\n{url}\n\n"
           "Il ouvre l'espace une seule fois, jusqu'au {expires} (UTC). Si vous ne l'avez pas demandé, ignorez ce "
           "message.\n"),
}


def link_message(settings: Settings, session, link: IssuedLink, *, now: datetime) -> EmailMessage | None:
    """The message carrying ``link`` to the customer's billing contact (None without one)."""
    profile = collections_uc.get_collection_profile(session, link.customer_id)
    if not profile.email:
        return None
    subject, text = TEXTS.get(profile.language, TEXTS["en"])
    name = customers_uc.get_customer(session, link.customer_id).name
    return Mailer.from_settings(settings).compose(
        to=profile.email, subject=subject, language=profile.language, now=now,
        text=text.format(name=name, url=link.url, expires=link.expires_at.strftime("%Y-%m-%d %H:%M")))


def send(settings: Settings, message: EmailMessage) -> bool:
    """Hand the message over; False (logged) when it could not be."""
    try:
        Mailer.from_settings(settings).send(message)
    except MailError as exc:
        log.warning("portal link not sent: %s", exc)
        return False
    return True
