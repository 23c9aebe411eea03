"""Dunning reminders through a local SMTP capture: each carries its invoice's stored PDF, named by the
invoice number; an invoice whose document is not generated yet is reminded without it."""

from __future__ import annotations

import email
import logging
from datetime import UTC, date, datetime
from email import policy

from sqlmodel import Session, select

from billing_engine.storage.documents import InvoiceDocument
from billing_engine.use_cases.collections import set_collection_profile
from connector.collection_jobs import run_dunning
from connector.database import transaction
from connector.documents.generate import generate_documents
from connector.settings import load_settings
from connector.wiring import build_services
from tests.integration.test_mail import smtp_server  # noqa: F401  (the SMTP capture fixture)
from tests.support.collections import invoiced_customers, invoices_by_customer
from tests.support.documents import SELLER

NOW = datetime(2026, 12, 4, 8, tzinfo=UTC)


def test_a_reminder_attaches_the_stored_invoice_pdf_named_by_its_number(database_url, smtp_server, caplog):  # noqa: F811
    host, port = smtp_server.server_address
    services = build_services(load_settings({
        "DATABASE_URL": database_url, "LOG_LEVEL": "warning", "SMTP_HOST": host, "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none", "MAIL_FROM": "Billsync Demo <billing@billsync.example>", **SELLER}))
    try:
        with_pdf, without_pdf = invoiced_customers(services.engine, 2)
        with transaction(services.engine) as session:
            for cid in (with_pdf, without_pdf):
                set_collection_profile(session, cid, email=f"ap@{cid}.example", now=NOW)
        invoices = invoices_by_customer(services.engine)
        assert generate_documents(services, limit=1, now=NOW).generated == 1  # the oldest invoice's only
        with Session(services.engine) as session:
            [stored] = session.scalars(select(InvoiceDocument)).all()
        assert stored.invoice_id == invoices[with_pdf].id

        dunning_log = logging.getLogger("billsync.dunning")
        dunning_log.addHandler(caplog.handler)  # the services' logging setup replaced the root's handlers
        try:
            with caplog.at_level(logging.INFO, logger="billsync.dunning"):
                report = run_dunning(services, date(2026, 12, 4), now=NOW)
        finally:
            dunning_log.removeHandler(caplog.handler)
        assert len(report.sent) == 2 and not report.failed
        received = {m["To"]: m for m in (email.message_from_bytes(raw, policy=policy.default)
                                         for raw in smtp_server.received)}

        attached = received[f"ap@{with_pdf}.example"]
        assert [(a.get_filename(), a.get_content_type(), a.get_content()) for a in attached.iter_attachments()] == [
            (f"{invoices[with_pdf].number}.pdf", "application/pdf", stored.pdf)]
        assert "The invoice is attached." in attached.get_body(("plain",)).get_content()

        bare = received[f"ap@{without_pdf}.example"]
        assert list(bare.iter_attachments()) == []
        assert "attached" not in bare.get_body(("plain",)).get_content()
        assert f"invoice {invoices[without_pdf].id} has no document yet" in caplog.text
        # Nothing was rendered to send them: the one document is still the only one.
        with Session(services.engine) as session:
            assert session.scalars(select(InvoiceDocument)).all() == [stored]
    finally:
        services.engine.dispose()
