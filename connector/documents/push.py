"""Attaching each stored PDF to its ``Invoice__c`` (a credit note's to its ``Credit_Note__c``) in
Salesforce, exactly once.

A ``document.stored`` outbox row (written with the document) is delivered here by the push
(``connector.sync.push``), after the rows claimed with it, so the invoice it belongs to has been
sent first. For each document, the mapping ``document`` (``mappings/defaults/document.yaml``) makes
a ``ContentVersion`` keyed by ``Billsync_Document_Id__c`` (``<installation>-doc-<id>``) whose
``FirstPublishLocationId`` is that record: Salesforce creates the file and links it to the record in
one step.

A file's bytes cannot be updated in Salesforce, so the key is looked up first: a document already
there (sent by a worker that died before settling its row, or by the same push retried) is done
without sending anything, and only a missing one is upserted. Calls: one composite per 12
documents for the look-ups (the file by its key, its record by its key), one per 10
documents for the uploads (JSON, base64 ``VersionData``; Salesforce takes 37.5 MB of base64 per
file this way, far above an invoice's PDF).

Outcomes per row: done (with the ContentVersion's id), transient (the record is not in
Salesforce yet, a lock, an unavailable Salesforce), failed (Salesforce refused the file). A limit
pause or an unavailable Salesforce stops the delivery: the rows not sent are released or retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simple_salesforce.format import format_external_id
from sqlmodel import Session

from billing_engine.use_cases.documents import DocumentExport, documents_for_export
from connector.queue import Outcome
from connector.salesforce.errors import (
    RETRYABLE_CODES,
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceRetryableError,
)
from connector.sync.installation import Keys
from connector.sync.outbox_claims import ClaimedRow, Settlement, unsent
from mappings import InvalidRecordError, MappingsError, apply_outbound

log = logging.getLogger("billsync.push")

SOURCE = "document"
LOOKUPS_PER_CALL = 12  # two subrequests each: 24 of a composite's 25
UPLOADS_PER_CALL = 10


@dataclass
class _Document:
    row: ClaimedRow
    export: DocumentExport | None
    key: str = ""
    parent: tuple[str, str, str] = ("", "", "")  # the record it is attached to: (object, key field, key)
    parent_record: str | None = None
    existing: str | None = None
    outcome: Settlement | None = None


@dataclass
class DocumentDelivery:
    settlements: list[Settlement] = field(default_factory=list)
    stop: SalesforceError | None = None
    sent: int = 0
    calls: int = 0


def deliver_documents(client: Any, specs: Any, engine: Any, keys: Keys, rows: Sequence[ClaimedRow],
                      now: datetime) -> DocumentDelivery:
    """Attach the PDFs of these ``document.stored`` rows; one settlement per row."""
    result = DocumentDelivery()
    with Session(engine) as session:
        exports = documents_for_export(session, [int(r.aggregate_id) for r in rows])
        session.rollback()
    documents = [_Document(r, exports.get(int(r.aggregate_id))) for r in rows]
    todo: list[_Document] = []
    for doc in documents:
        if doc.export is None:
            doc.outcome = Settlement(doc.row.id, Outcome.FAILED, f"document {doc.row.aggregate_id} not found")
        else:
            doc.key = keys.document(doc.export.document.document_id)
            if doc.export.kind == "credit_note":
                doc.parent = ("Credit_Note__c", "Billsync_Credit_Note_Id__c", keys.credit_note(doc.export.record_id))
            else:
                doc.parent = ("Invoice__c", "Billsync_Invoice_Id__c", keys.invoice(doc.export.record_id))
            todo.append(doc)
    base = f"/services/data/v{client.api_version}/sobjects"
    try:
        for start in range(0, len(todo), LOOKUPS_PER_CALL):
            _look_up(client, base, todo[start:start + LOOKUPS_PER_CALL], result)
        uploads = [d for d in todo if d.outcome is None]
        for start in range(0, len(uploads), UPLOADS_PER_CALL):
            _upload(client, base, specs, uploads[start:start + UPLOADS_PER_CALL], result)
    except (SalesforceLimitError, SalesforceRetryableError, SalesforceAuthError) as stop:
        result.stop = stop
    for doc in documents:
        result.settlements.append(doc.outcome or unsent(doc.row, result.stop, now))
    return result


def _look_up(client: Any, base: str, docs: list[_Document], result: DocumentDelivery) -> None:
    subrequests = []
    for n, doc in enumerate(docs):
        subrequests.append({"method": "GET", "referenceId": f"file{n}",
                            "url": f"{base}/ContentVersion/{format_external_id('Billsync_Document_Id__c', doc.key)}"
                                   "?fields=Id"})
        obj, key_field, key = doc.parent
        subrequests.append({"method": "GET", "referenceId": f"parent{n}",
                            "url": f"{base}/{obj}/{format_external_id(key_field, key)}?fields=Id"})
    answers = {a.reference_id: a for a in client.composite(subrequests, all_or_none=False)}
    result.calls += 1
    for n, doc in enumerate(docs):
        file, invoice = answers.get(f"file{n}"), answers.get(f"parent{n}")
        if file is not None and file.success and isinstance(file.body, dict):
            doc.existing = file.body.get("Id")
            doc.outcome = Settlement(doc.row.id, Outcome.DONE, "already attached", result=doc.existing)
        elif invoice is not None and invoice.success and isinstance(invoice.body, dict):
            doc.parent_record = invoice.body.get("Id")
        elif invoice is not None and invoice.status == 404:
            doc.outcome = Settlement(doc.row.id, Outcome.TRANSIENT, f"{doc.parent[0]} {doc.parent[2]} is not in "
                                                                    "Salesforce yet; the PDF waits for it")
        else:
            answer = invoice if invoice is not None and not invoice.success else file
            doc.outcome = Settlement(doc.row.id, Outcome.TRANSIENT, "look-up failed: "
                                     + _describe(answer.body if answer else None, answer.status if answer else 0))


def _record(specs: Any, doc: _Document) -> dict[str, Any]:
    d = doc.export.document  # type: ignore[union-attr]
    engine_record = {
        "id": doc.key, "number": d.number, "kind": d.kind, "title": d.number, "file_name": f"{d.number}.pdf",
        "pdf": d.pdf, "sha256": d.pdf_sha256,
        "description": f"{d.number}: PDF/A-3 with its Factur-X XML, issued by billsync; SHA-256 {d.pdf_sha256}"
        if d.xml is not None else f"{d.number}: PDF/A-3 issued by billsync; SHA-256 {d.pdf_sha256}",
        "salesforce_record_id": doc.parent_record,
    }
    [spec] = specs.outbound_for(SOURCE)
    return apply_outbound(spec, engine_record)


def _upload(client: Any, base: str, specs: Any, docs: list[_Document], result: DocumentDelivery) -> None:
    subrequests = []
    sending = []
    for n, doc in enumerate(docs):
        try:
            record = _record(specs, doc)
        except (InvalidRecordError, MappingsError, ValueError) as exc:
            doc.outcome = Settlement(doc.row.id, Outcome.FAILED, f"mapping {SOURCE!r}: {exc}")
            continue
        body = {k: v for k, v in record.items() if k not in ("attributes", "Billsync_Document_Id__c")}
        subrequests.append({"method": "PATCH", "referenceId": f"upload{n}", "body": body,
                            "url": f"{base}/ContentVersion/{format_external_id('Billsync_Document_Id__c', doc.key)}"})
        sending.append((n, doc))
    if not subrequests:
        return
    answers = {a.reference_id: a for a in client.composite(subrequests, all_or_none=False)}
    result.calls += 1
    for n, doc in sending:
        answer = answers.get(f"upload{n}")
        if answer is not None and answer.success:
            record_id = answer.body.get("id") if isinstance(answer.body, dict) else None
            doc.outcome = Settlement(doc.row.id, Outcome.DONE, None, result=record_id)
            result.sent += 1
            continue
        code, message = answer_error(answer.body if answer else None, answer.status if answer else 0)
        transient = answer is None or code in RETRYABLE_CODES or answer.status >= 500
        doc.outcome = Settlement(doc.row.id, Outcome.TRANSIENT if transient else Outcome.FAILED,
                                 f"ContentVersion {doc.key}: {code}: {message}")


def answer_error(body: Any, status: int) -> tuple[str, str]:
    """The error code and message of a refused subrequest."""
    item = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        return (str(item.get("errorCode") or item.get("statusCode") or f"HTTP_{status}"),
                str(item.get("message") or ""))
    return f"HTTP_{status}", str(body)[:200]


def _describe(body: Any, status: int) -> str:
    code, message = answer_error(body, status)
    return f"{code}: {message}" if message else code
