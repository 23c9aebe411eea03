"""GET an invoice's or credit note's PDF and Factur-X XML: the stored bytes, with their SHA-256."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from connector.documents.generate import generate_documents
from connector.settings import load_settings
from connector.wiring import build_services
from tests.integration.documents.conftest import bill_every_case
from tests.support.api import bearer
from tests.support.documents import SELLER


@pytest.fixture
def documented(app, database_url):
    engine = app.extensions["billsync"].engine
    bill_every_case(engine)
    services = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **SELLER}))
    try:
        generate_documents(services, now=datetime(2026, 2, 1, tzinfo=UTC))
    finally:
        services.engine.dispose()
    from sqlmodel import Session, select

    from billing_engine.storage.documents import InvoiceDocument

    with Session(engine) as s:
        return {d.number: d for d in s.scalars(select(InvoiceDocument)).all()}


def test_an_invoices_pdf_and_xml_are_the_stored_bytes_with_their_digest(documented, client, read_key):
    doc = next(d for d in documented.values() if d.invoice_id and d.xml is not None)
    r = client.get(f"/api/v1/invoices/{doc.invoice_id}/pdf", headers=bearer(read_key))
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data == doc.pdf
    assert r.headers["ETag"] == f'"{hashlib.sha256(doc.pdf).hexdigest()}"'
    assert r.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(doc.pdf).digest()).decode()}:"
    assert r.headers["Content-Disposition"] == f'inline; filename="{doc.number}.pdf"'
    again = client.get(f"/api/v1/invoices/{doc.invoice_id}/pdf",
                       headers={**bearer(read_key), "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    x = client.get(f"/api/v1/invoices/{doc.invoice_id}/facturx.xml", headers=bearer(read_key))
    assert x.status_code == 200 and x.mimetype == "application/xml" and x.data == doc.xml


def test_a_credit_notes_documents_are_served_too(documented, client, read_key):
    doc = next(d for d in documented.values() if d.credit_note_id)
    assert client.get(f"/api/v1/credit-notes/{doc.credit_note_id}/pdf", headers=bearer(read_key)).data == doc.pdf
    assert client.get(f"/api/v1/credit-notes/{doc.credit_note_id}/facturx.xml",
                      headers=bearer(read_key)).data == doc.xml


def test_missing_documents_and_xml_are_404_problems_that_say_why(documented, client, read_key):
    kwd = next(d for d in documented.values() if d.xml is None and d.invoice_id and "KWD" in d.note)
    r = client.get(f"/api/v1/invoices/{kwd.invoice_id}/facturx.xml", headers=bearer(read_key))
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert r.json["detail"].startswith(f"{kwd.number} has no Factur-X XML: EN 16931 allows at most two decimals")
    r = client.get("/api/v1/invoices/99999/pdf", headers=bearer(read_key))
    assert r.status_code == 404 and "has no document" in r.json["detail"]
    assert client.get(f"/api/v1/invoices/{kwd.invoice_id}/pdf").status_code == 401
