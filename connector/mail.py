"""billsync's e-mail: one ``Mailer`` built from the settings (docs/payments.md, "Dunning").

With ``SMTP_HOST`` set, messages go through that server (``SMTP_SECURITY``: STARTTLS, implicit
TLS or none; ``SMTP_USERNAME``/``SMTP_PASSWORD`` to log in). Without it (the demo, the tests),
each message is written as an ``.eml`` file to ``MAIL_DIR``, which any mail program opens.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.settings import Settings

#: Headers are not folded (RFC 5322 allows 998 characters): the standard library's folding of a long
#: subject with accented words doubles a space when it is read back.
HEADERS_UNFOLDED = policy.default.clone(max_line_length=998)
#: Seconds an SMTP server has to answer.
SMTP_TIMEOUT_SECONDS = 30


class MailError(Exception):
    """A message could not be handed over (the server refused it or could not be reached)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


@dataclass(frozen=True)
class Mailer:
    sender: str
    smtp_host: str | None
    smtp_port: int
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None = field(repr=False)
    directory: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        return cls(settings.mail_from, settings.smtp_host, settings.smtp_port, settings.smtp_security,
                   settings.smtp_username, settings.smtp_password, settings.mail_dir)

    def compose(self, *, to: str, subject: str, text: str, attachments: tuple[Attachment, ...] = (),
                now: datetime | None = None, language: str = "en") -> EmailMessage:
        message = EmailMessage(policy=HEADERS_UNFOLDED)
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(now or datetime.now(UTC))
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "billsync.invalid"
        message["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:12], domain=domain)
        message.set_content(text)
        for attachment in attachments:
            message.add_attachment(attachment.content, maintype=attachment.maintype, subtype=attachment.subtype,
                                   filename=attachment.filename)
        message["Content-Language"] = language  # after the content: setting it clears the Content-* headers
        return message

    def send(self, message: EmailMessage) -> str:
        """Hand the message over (SMTP, or an ``.eml`` file); returns its Message-ID. Raises ``MailError``."""
        if self.smtp_host:
            self._smtp(message)
        else:
            self._file(message)
        return str(message["Message-ID"])

    def _file(self, message: EmailMessage) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            part = path.with_name(f".{path.name}.part")
            part.write_bytes(message.as_bytes())
            part.replace(path)
        except OSError as exc:
            raise MailError(f"cannot write the message to {self.directory}: {exc}") from None

    def _smtp(self, message: EmailMessage) -> None:
        try:
            if self.smtp_security == "ssl":
                server: smtplib.SMTP = smtplib.SMTP_SSL(self.smtp_host or "", self.smtp_port,
                                                        timeout=SMTP_TIMEOUT_SECONDS,
                                                        context=ssl.create_default_context())
            else:
                server = smtplib.SMTP(self.smtp_host or "", self.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
            with server:
                if self.smtp_security == "starttls":
                    server.starttls(context=ssl.create_default_context())
                if self.smtp_username:
                    server.login(self.smtp_username, self.smtp_password or "")
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"SMTP {self.smtp_host}:{self.smtp_port}: {exc.__class__.__name__}: {exc}") from None
