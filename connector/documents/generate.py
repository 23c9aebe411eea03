"""Producing the documents of finalized invoices and credit notes: ``generate_documents``.

It reads what is due (``billing_engine.use_cases.documents``) in batches by id, renders each
batch (``render.render_document``), on ``processes`` worker processes when more than one, and
stores each batch in one transaction (the documents and their ``document.stored`` events). A
document is stored once: a second generator racing the first stores nothing more. It refuses to
start without the seller's identity (``SellerIdentityError``, one line per missing setting), so no
document is ever produced without it. The worker runs it between the inbox and the outbox;
``billsync documents generate`` runs it by hand (``--processes 2`` uses both cores).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from billing_engine.use_cases import documents as documents_uc
from billing_engine.use_cases.documents import DocumentSource, RenderedDocument
from connector.database import transaction
from connector.documents.attributes import attribute_declarations
from connector.documents.render import render_document
from connector.documents.seller import Seller, seller_identity

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.documents")
BATCH_SIZE = 100


@dataclass
class GenerationReport:
    generated: int = 0
    without_facturx: int = 0  # stored as a PDF alone (a currency EN 16931 cannot express)
    failed: dict[str, str] = field(default_factory=dict)  # document number → why it could not be rendered
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        out = [f"{self.generated} documents generated in {self.seconds:.1f} s ({self.per_second:.0f}/s)"
               + (f", {self.without_facturx} without Factur-X" if self.without_facturx else "")]
        out += [f"{number}: {reason}" for number, reason in sorted(self.failed.items())]
        return out


_seller: Seller | None = None


def _init(seller: Seller) -> None:
    global _seller
    _seller = seller


def _render_batch(sources: list[DocumentSource]) -> list[tuple[str, RenderedDocument | str]]:
    """Render a batch in a worker process: ``(number, document or why it failed)``."""
    out: list[tuple[str, RenderedDocument | str]] = []
    for source in sources:
        try:
            out.append((source.number, render_document(source, _seller)))  # type: ignore[arg-type]
        except Exception as exc:  # one bad document never stops the others  # noqa: BLE001
            out.append((source.number, f"{type(exc).__name__}: {exc}"))
    return out


def _batches(services: Services, batch_size: int, limit: int | None) -> Iterator[list[DocumentSource]]:
    """The due documents' sources, batch by batch, by id; each batch read in its own session, after the
    ids of the previous one (so a batch still being rendered is not read again)."""
    declarations = attribute_declarations(services.settings.mappings_dir)
    after = {documents_uc.INVOICE: 0, documents_uc.CREDIT_NOTE: 0}
    given = 0
    while limit is None or given < limit:
        size = batch_size if limit is None else min(batch_size, limit - given)
        with Session(services.engine) as session:
            refs = documents_uc.documents_due(session, size, after_invoice=after[documents_uc.INVOICE],
                                              after_credit_note=after[documents_uc.CREDIT_NOTE])[:size]
            if not refs:
                return
            sources = documents_uc.document_sources(session, refs, declarations)
            session.rollback()
        for kind, record_id in refs:
            after[kind] = max(after[kind], record_id)
        given += len(refs)
        yield sources


def generate_documents(services: Services, *, processes: int = 1, batch_size: int = BATCH_SIZE,
                       limit: int | None = None, now: datetime | None = None) -> GenerationReport:
    """Render and store every due document (at most ``limit``); raises ``SellerIdentityError`` first
    when the seller's identity is incomplete."""
    seller = seller_identity(services.settings)
    report = GenerationReport()
    started = time.perf_counter()
    if processes > 1:
        from connector.documents.fonts import warm_up

        warm_up(seller.font_dir)  # once, before the processes are forked
        context = multiprocessing.get_context("fork")
        with context.Pool(processes, initializer=_init, initargs=(seller,)) as pool:
            # While the processes render a batch, this one reads the next and stores the last.
            for results in pool.imap(_render_batch, _batches(services, batch_size, limit)):
                _store(services, results, report, now)
    else:
        _init(seller)
        for sources in _batches(services, batch_size, limit):
            _store(services, _render_batch(sources), report, now)
    report.seconds = time.perf_counter() - started
    return report


def _store(services: Services, results: list[tuple[str, Any]], report: GenerationReport,
           now: datetime | None) -> None:
    rendered = [doc for _, doc in results if isinstance(doc, RenderedDocument)]
    for number, doc in results:
        if not isinstance(doc, RenderedDocument):
            report.failed[number] = doc
            log.warning("document %s not generated: %s", number, doc)
    if not rendered:
        return
    with transaction(services.engine) as session:
        written = documents_uc.store_documents(session, rendered, now=now or datetime.now(UTC))
    report.generated += len(written)
    report.without_facturx += sum(1 for doc in rendered if doc.xml is None)
