"""billsync's e-mail: through an SMTP server when SMTP_HOST is set, else as .eml files in MAIL_DIR."""

from __future__ import annotations

import email
import socketserver
import threading
from email import policy

import pytest

from connector.mail import Attachment, Mailer, MailError
from connector.settings import load_settings


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept messages (no TLS, any login)."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        data: list[bytes] = []
        reading_data = False
        while line := self.rfile.readline():
            if reading_data:
                if line == b".\r\n":
                    self.server.received.append(b"".join(data))  # type: ignore[attr-defined]
                    data, reading_data = [], False
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-test\r\n250 AUTH PLAIN LOGIN\r\n")
            elif verb == b"AUTH":
                self.server.logins.append(line.strip())  # type: ignore[attr-defined]
                self.wfile.write(b"235 ok\r\n")
            elif verb == b"DATA":
                reading_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.received, server.logins = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_without_an_smtp_host_messages_are_eml_files(tmp_path):
    mailer = Mailer.from_settings(load_settings({"MAIL_DIR": str(tmp_path / "mail"),
                                                 "MAIL_FROM": "Acme Billing <billing@acme.example>"}))
    message = mailer.compose(to="ap@client.example", subject="Rappel : facture échue", text="Bonjour,\n",
                             attachments=(Attachment("INV-1.pdf", b"%PDF-1.7 test"),), language="fr")
    message_id = mailer.send(message)
    [path] = (tmp_path / "mail").glob("*.eml")
    read = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert (read["From"], read["To"], read["Subject"], read["Message-ID"]) == (
        "Acme Billing <billing@acme.example>", "ap@client.example", "Rappel : facture échue", message_id)
    assert message_id.endswith("@acme.example>") and read["Content-Language"] == "fr"
    [attachment] = list(read.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content()) == ("INV-1.pdf", b"%PDF-1.7 test")


def test_with_an_smtp_host_messages_go_to_the_server(smtp_server):
    host, port = smtp_server.server_address
    mailer = Mailer.from_settings(load_settings({"SMTP_HOST": host, "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
                                                 "SMTP_USERNAME": "billing", "SMTP_PASSWORD": "s3cret"}))
    mailer.send(mailer.compose(to="ap@client.example", subject="Reminder", text="Hello\n"))
    [raw] = smtp_server.received
    read = email.message_from_bytes(raw, policy=policy.default)
    assert (read["To"], read["Subject"], read.get_content().strip()) == ("ap@client.example", "Reminder", "Hello")
    assert smtp_server.logins  # it logged in


def test_an_unreachable_smtp_server_is_a_mail_error():
    mailer = Mailer.from_settings(load_settings({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "1", "SMTP_SECURITY": "none"}))
    with pytest.raises(MailError, match="SMTP 127.0.0.1:1: ConnectionRefusedError"):
        mailer.send(mailer.compose(to="ap@client.example", subject="Reminder", text="Hello\n"))
