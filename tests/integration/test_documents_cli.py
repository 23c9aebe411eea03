"""``billsync documents generate`` and the worker's documents drain."""

from __future__ import annotations

import threading
from datetime import timedelta

from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.storage.documents import InvoiceDocument
from billing_engine.storage.outbox import OutboxRow
from connector.cli import cli
from connector.settings import load_settings
from connector.wiring import build_services
from connector.worker import drains_for, run_worker
from tests.integration.documents.conftest import bill_every_case
from tests.support.documents import SELLER


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def documents(engine) -> list[InvoiceDocument]:
    with Session(engine) as s:
        return list(s.scalars(select(InvoiceDocument).order_by(InvoiceDocument.id)).all())


def test_generate_refuses_one_line_per_missing_setting_and_writes_nothing(engine, database_url):
    bill_every_case(engine)
    code, output = run(["documents", "generate"], {"DATABASE_URL": database_url,
                                                   **{k: v for k, v in SELLER.items() if k != "SELLER_BIC"},
                                                   "SELLER_IBAN": ""})
    assert code == 2
    assert output.splitlines() == ["error: SELLER_IBAN: not set; invoice documents need the account customers pay into",
                                   "error: SELLER_BIC: not set; invoice documents need the bank of that account"]
    assert documents(engine) == []


def test_generate_on_both_cores_stores_each_document_once(engine, database_url):
    bill_every_case(engine)
    env = {"DATABASE_URL": database_url, **SELLER}
    code, output = run(["documents", "generate", "--processes", "2"], env)
    assert code == 0, output
    stored = documents(engine)
    assert output.splitlines()[0].startswith(f"{len(stored)} documents generated in ")
    assert ", 3 without Factur-X" in output.splitlines()[0]  # two KWD invoices and the one left without lines
    assert len({d.number for d in stored}) == len(stored) == 15  # 14 invoices and a credit note
    code, output = run(["documents", "generate"], env)
    assert (code, output.splitlines()[0].split(" in ")[0]) == (0, "0 documents generated")
    with Session(engine) as s:
        events = s.scalars(select(OutboxRow).where(OutboxRow.topic == "document.stored")).all()
    assert sorted(int(e.aggregate_id) for e in events) == [d.id for d in stored]


def test_the_worker_generates_documents_when_the_seller_is_set(engine, database_url):
    bill_every_case(engine)
    services = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **SELLER}))
    try:
        drains = drains_for(services, worker_id="w1", batch_size=100, lease=timedelta(minutes=5))
        assert [d.name for d in drains] == ["console jobs", "documents"]
        handled = run_worker(drains, once=True, poll_seconds=0.1, stop=threading.Event())
    finally:
        services.engine.dispose()
    assert handled == len(documents(engine)) == 15
    plain = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning"}))
    try:
        assert [d.name for d in drains_for(plain, worker_id="w1", batch_size=100,
                                           lease=timedelta(minutes=5))] == ["console jobs"]
    finally:
        plain.engine.dispose()


def test_a_batch_stores_only_the_documents_not_stored_yet(engine):
    from datetime import UTC, datetime

    from billing_engine.storage.invoices import Invoice
    from billing_engine.use_cases.documents import INVOICE, RenderedDocument, store_documents
    from connector.database import transaction

    bill_every_case(engine)
    with Session(engine) as s:
        first, second, third = [(i.id, i.number) for i in s.scalars(select(Invoice).where(
            Invoice.number.is_not(None)).order_by(Invoice.id)).all()[:3]]

    def doc(invoice, pdf: bytes) -> RenderedDocument:
        return RenderedDocument(INVOICE, invoice[0], invoice[1], "fr", pdf)

    now = datetime(2026, 2, 1, 6, tzinfo=UTC)
    with transaction(engine) as s:
        kept = store_documents(s, [doc(first, b"%PDF first"), doc(second, b"%PDF second")], now=now)
    with transaction(engine) as s:  # a second generator's batch: the first invoice again, and a new one
        added = store_documents(s, [doc(first, b"%PDF first again"), doc(third, b"%PDF third")], now=now)
    stored = documents(engine)
    assert [(d.id, d.number, bytes(d.pdf)) for d in stored] == [
        (kept[0], first[1], b"%PDF first"), (kept[1], second[1], b"%PDF second"), (added[0], third[1], b"%PDF third")]
    assert len(added) == 1
    with Session(engine) as s:
        events = s.scalars(select(OutboxRow).where(OutboxRow.topic == "document.stored")).all()
    assert sorted(int(e.aggregate_id) for e in events) == [d.id for d in stored]
