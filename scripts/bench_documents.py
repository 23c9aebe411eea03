#!/usr/bin/env python
"""Benchmark invoice documents: PDF/A-3 + Factur-X XML generated per second after a bill run.

    .venv/bin/python scripts/bench_documents.py --invoices 10000 --processes 2 \
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--batch-size 100]

Creates its own PostgreSQL schema (dropped at the end), a French seller's catalog (a licence at
20 %, an e-book library at 5.5 %) and N customers with one monthly subscription of both products:
70 % in France, 15 % businesses in Germany (reverse charge), 15 % in the United States (export).
Bills them for 2026-01-01 (``bill_customers``, every invoice finalized), then runs
``connector.documents.generate.generate_documents`` on ``--processes`` processes: it reads the
invoices in batches, renders each PDF (fpdf2) with its EN 16931 XML (checked against the XSD,
embedded as Factur-X by fpdf2) and stores each batch with its ``document.stored`` events.
Prints documents/s, the average PDF size, the peak RSS of this process, the CPU a document cost
(this process reading and storing, the rendering processes, the PostgreSQL backends serving the
run when the server is on this machine) and the load average seen during the run (sampled every
second: other work on the machine slows the run down, the CPU per document much less).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from billing_engine.catalog import Product, make_price  # noqa: E402
from billing_engine.storage.catalog import CustomerRow  # noqa: E402
from billing_engine.storage.documents import InvoiceDocument  # noqa: E402
from billing_engine.storage.subscriptions import SubscriptionItemRow, SubscriptionRow  # noqa: E402
from billing_engine.tax import ProductTax, TaxCategory  # noqa: E402
from billing_engine.use_cases.billing import bill_customers  # noqa: E402
from billing_engine.use_cases.catalog import upsert_price, upsert_product  # noqa: E402
from connector.database import make_engine, upgrade  # noqa: E402
from connector.documents.generate import generate_documents  # noqa: E402
from connector.settings import load_settings  # noqa: E402
from connector.wiring import build_services  # noqa: E402

START = date(2026, 1, 1)
LIC = make_price("d-lic", Product("p-lic", "LIC", "Licences", tax=ProductTax(TaxCategory.STANDARD)),
                 currency="EUR", model="per_unit", unit_price="10.04")
BOOK = make_price("d-book", Product("p-book", "BOOK", "E-book library", tax=ProductTax(TaxCategory.REDUCED,
                                                                                     Decimal("5.5"))),
                  currency="EUR", model="flat", unit_price="100")
SELLER = {
    "SELLER_NAME": "Billsync Demo SAS", "SELLER_STREET": "10 rue de la Paix", "SELLER_POSTAL_CODE": "75002",
    "SELLER_CITY": "Paris", "SELLER_COUNTRY": "FR", "SELLER_COMPANY_ID": "123456782",
    "SELLER_VAT_ID": "FR11123456782", "SELLER_IBAN": "FR7630006000011234567890189", "SELLER_BIC": "AGRIFRPP",
    "LATE_INTEREST_RATE": "12.15", "SELLER_EARLY_PAYMENT_DISCOUNT": "none",
    "SELLER_LEGAL_FORM": "SAS au capital de 10 000 EUR, RCS Paris 123 456 782",
}
PLACES = [("FR", "Paris", "75001", "FR11123456782")] * 14 + [("DE", "Berlin", "10115", "DE136695976")] * 3 \
    + [("US", "Austin", "73301", None)] * 3


def seed(engine, n: int) -> None:
    with Session(engine) as session, session.begin():
        for price in (LIC, BOOK):
            upsert_product(session, price.product)
            upsert_price(session, price)
    for lo in range(0, n, 5000):
        numbers = range(lo, min(n, lo + 5000))
        with Session(engine) as session, session.begin():
            session.execute(insert(CustomerRow.__table__), [
                {"id": f"c{i:08d}", "name": f"Client {i:05d} SARL", "currency": "EUR", "timezone": "UTC",
                 "address_line1": f"{i % 200 + 1} rue de Rivoli", "address_line2": "", "city": place[1],
                 "postal_code": place[2], "region": "", "country": place[0], "payment_terms_days": 30,
                 "tax_rate_percent": Decimal(20) if place[0] == "FR" else None, "vat_id": place[3]}
                for i in numbers for place in [PLACES[i % len(PLACES)]]])
            session.execute(insert(SubscriptionRow.__table__), [
                {"id": f"s{i:08d}", "customer_id": f"c{i:08d}", "currency": "EUR", "starts_on": START,
                 "interval": "month", "billing_anchor_on": START, "term_months": 12, "auto_renew": True,
                 "renewal_uplift_percent": Decimal(0), "status": "active", "purchase_order": f"PO-{i:06d}",
                 "buyer_reference": ""} for i in numbers])
            session.execute(insert(SubscriptionItemRow.__table__), [
                {"subscription_id": f"s{i:08d}", "item_id": item, "position": pos, "price_id": price,
                 "quantity": Decimal(qty)}
                for i in numbers for pos, (item, price, qty) in enumerate([("lic", "d-lic", 3 + i % 20),
                                                                          ("book", "d-book", 1)])])


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def backend_cpu(engine, application_name: str) -> float | None:
    """CPU seconds of the PostgreSQL backends serving ``application_name`` (None: not on this machine)."""
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                            {"name": application_name}).scalars().all()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


class LoadSampler(threading.Thread):
    """The 1-minute load average, every second, while the documents are made."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.samples.append(os.getloadavg()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    schema = f"bench_documents_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{sep}options={quote('-csearch_path=' + schema)}&application_name={schema}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        seed(engine, args.invoices)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        print(f"seeded {args.invoices} customers in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        run = bill_customers(engine, START, seller_country="FR", default_tax_percent=Decimal(20))
        print(f"bill run: {run.invoices_finalized} invoices finalized in {time.perf_counter() - started:.1f} s "
              f"({len(run.failures)} failures)", flush=True)
        engine.dispose()
        services = build_services(load_settings({"DATABASE_URL": url, "LOG_LEVEL": "warning", **SELLER}))
        load = LoadSampler()
        load.start()
        own, children = _cpu(resource.getrusage(resource.RUSAGE_SELF)), _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
        report = generate_documents(services, processes=args.processes, batch_size=args.batch_size,
                                    now=datetime(2026, 1, 1, 6, tzinfo=UTC))
        own = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - own
        children = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - children  # the pool's processes, reaped
        load.stopped.set()
        database = backend_cpu(services.engine, schema)
        with Session(services.engine) as session:
            count, size = session.execute(select(func.count(), func.avg(func.length(InvoiceDocument.pdf)))).one()
        services.engine.dispose()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"documents: {report.generated} generated ({count} stored) in {report.seconds:.1f} s on "
              f"{args.processes} processes: {report.per_second:.0f} documents/s; average PDF {size / 1024:.1f} KiB; "
              f"failed {len(report.failed)}; peak RSS of the parent {rss:.0f} MiB", flush=True)
        n = max(report.generated, 1)
        if args.processes > 1:
            rendering = f"rendering processes {children * 1000 / n:.1f} ms"
        else:
            rendering = "rendering in this process"
        total = own + (children if args.processes > 1 else 0) + (database or 0)
        print(f"CPU per document: {total * 1000 / n:.1f} ms = this process {own * 1000 / n:.1f} ms (reading, "
              f"storing{'' if args.processes > 1 else ', rendering'}) + {rendering} + PostgreSQL "
              + (f"{database * 1000 / n:.1f} ms" if database is not None else "not measured (another machine)")
              + f"; {total / report.seconds:.2f} cores busy on average; two cores of its own would make about "
              f"{2000 / (total * 1000 / n):.0f} documents/s", flush=True)
        if load.samples:
            print(f"load average during the run: {min(load.samples):.1f}–{max(load.samples):.1f} "
                  f"(mean {sum(load.samples) / len(load.samples):.1f}, this run's processes included)", flush=True)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
