"""Custom attributes from a deal to its invoices, against a sandbox org with the admin's own fields:
pull → subscription → bill run → invoice → Factur-X XML (still valid) and PDF → Invoice__c; an
Amendment deal moves the value for the next invoices and leaves the issued one alone."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from lxml import etree
from pypdf import PdfReader
from sqlmodel import Session, select

from billing_engine.storage.documents import InvoiceDocument
from billing_engine.storage.invoices import Invoice
from billing_engine.use_cases.invoices import get_invoice
from billing_engine.use_cases.subscriptions import get_subscription, get_subscription_overview
from connector.api.invoices import invoice_out
from connector.api.subscriptions import _detail
from connector.billing_jobs import run_bill_run
from connector.documents.generate import generate_documents
from connector.settings import load_settings
from connector.sync.apply import subscription_id_for
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from connector.wiring import build_services
from mappings.spec import DEFAULTS_DIR
from sfsandbox.server import SandboxServer
from tests.integration.sync.test_deal_previews import open_deal, shown, sync
from tests.integration.sync.test_pull import _amendment_of, salesforce, won_opportunities
from tests.support.documents import SELLER, embedded_xml, errors, schematron_failures
from tests.support.sandbox import sandbox_environment

NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
# The admin's own fields: a cost centre and a project code on the deal, a cost centre on Invoice__c.
EXTENSION = {"objects": {
    "Opportunity": {"fields": {"Cost_Centre__c": {"type": "string", "length": 80},
                               "Project_Code__c": {"type": "string", "length": 40}}},
    "Invoice__c": {"fields": {"Cost_Centre__c": {"type": "string", "length": 80}}},
}}
ATTRIBUTES = """\
    attributes:
      cost_centre:
        from: Cost_Centre__c
        transform: string
        max_length: 80
        label: {en: Cost centre, fr: Centre de coûts}
        en16931: buyer_accounting_reference
      project:
        from: Project_Code__c
        transform: string
        label: {en: Project, fr: Projet}
"""
OUTBOUND = "      Cost_Centre__c:      {from: attributes.cost_centre, transform: string, max_length: 80}\n"
NOW = datetime(2026, 2, 1, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def custom_sandbox(tmp_path_factory) -> Iterator[SandboxServer]:
    server = SandboxServer(port=0, data="none", state_dir=tmp_path_factory.mktemp("sandbox-attributes"),
                           schema_extensions=[EXTENSION]).start()
    yield server
    server.stop()


@pytest.fixture
def services(custom_sandbox, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    custom_sandbox.reset()
    custom_sandbox.seed("small", 0)
    folder = tmp_path / "mappings"
    folder.mkdir()
    opportunity = (DEFAULTS_DIR / "opportunity.yaml").read_text()
    (folder / "opportunity.yaml").write_text(opportunity.replace("    lines:\n", ATTRIBUTES + "    lines:\n", 1))
    invoice = (DEFAULTS_DIR / "invoice.yaml").read_text()
    (folder / "invoice.yaml").write_text(invoice.replace("      PO_Number__c:", OUTBOUND + "      PO_Number__c:", 1))
    env = sandbox_environment(custom_sandbox, database_url, MAPPINGS_DIR=str(folder), BILL_RUN_MAX_PERIODS="1000",
                              SF_RETRY_MAX_SECONDS="1", **SELLER)
    built = build_services(load_settings(env))
    yield built
    built.engine.dispose()


def invoices_of(services, cost_centre: str) -> list[Invoice]:
    with Session(services.engine) as session:
        return [inv for inv in session.scalars(select(Invoice).order_by(Invoice.id)).all()
                if inv.attributes.get("cost_centre") == cost_centre]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_a_deals_cost_centre_reaches_its_invoice_pdf_xml_and_invoice__c(services, custom_sandbox: SandboxServer):
    sf = salesforce(custom_sandbox)
    won = won_opportunities(sf)[0]
    sf.Opportunity.update(won["Id"], {"Cost_Centre__c": "CC-42", "Project_Code__c": "Apollo"})
    pull_changes(services)
    sub_id = subscription_id_for(won["Id"])
    with Session(services.engine) as session:
        assert get_subscription(session, sub_id).attributes == (("cost_centre", "CC-42"), ("project", "Apollo"))

    result = run_bill_run(services, date(2026, 2, 1), now=NOW)
    assert result.invoices_finalized > 0 and not result.failures, result.failures
    [first] = invoices_of(services, "CC-42")
    assert first.attributes == {"cost_centre": "CC-42", "project": "Apollo"}
    with Session(services.engine) as session:  # others' invoices carry nothing
        others = session.scalars(select(Invoice).where(Invoice.id != first.id)).all()
        assert others and all(inv.attributes == {} for inv in others)
        assert invoice_out(get_invoice(session, first.id, as_of=date(2026, 2, 1))).attributes == {"cost_centre": "CC-42",
                                                                          "project": "Apollo"}

    assert push_outbox(services, now=NOW).dead == 0
    assert generate_documents(services, now=NOW).failed == {}
    with Session(services.engine) as session:
        doc = session.scalars(select(InvoiceDocument).where(InvoiceDocument.invoice_id == first.id)).one()
    # The XML: the cost centre is the buyer's accounting reference (BT-19), the project a note; still valid.
    xml = embedded_xml(doc.pdf)
    tree = etree.fromstring(xml)
    assert tree.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ReceivableSpecifiedTradeAccountingAccount/ram:ID"
                      "/text()", namespaces=NS) == ["CC-42"]
    project = "Projet : Apollo" if doc.language == "fr" else "Project: Apollo"
    assert tree.xpath("//rsm:ExchangedDocument/ram:IncludedNote[ram:SubjectCode = 'ACB']/ram:Content/text()",
                      namespaces=NS) == [project]
    assert errors(schematron_failures(xml, "en16931")) == []
    # The PDF: each value under its label in the customer's language, in the references block.
    text = pdf_text(doc.pdf)
    labels = ("CENTRE DE COÛTS", "PROJET") if doc.language == "fr" else ("COST CENTRE", "PROJECT")
    assert all(label in text for label in labels) and "CC-42" in text and "Apollo" in text
    # Invoice__c: the admin's own field, through the outbound mapping.
    pushed = sf.query_all(f"SELECT Name, Cost_Centre__c FROM Invoice__c WHERE Name = '{first.number}'")["records"]
    assert [(r["Name"], r["Cost_Centre__c"]) for r in pushed] == [(first.number, "CC-42")]
    everyone_else = sf.query_all(f"SELECT Cost_Centre__c FROM Invoice__c WHERE Name != '{first.number}'")["records"]
    assert everyone_else and {r["Cost_Centre__c"] for r in everyone_else} == {None}

    # An Amendment deal with a new cost centre: the subscription and the next invoices take it; the issued
    # invoice, its document and its Invoice__c keep theirs. The project, empty on the amendment, stays.
    amendment = _amendment_of(sf, won, 15)
    sf.Opportunity.update(amendment, {"Cost_Centre__c": "CC-77"})
    pull_changes(services)
    with Session(services.engine) as session:
        overview = get_subscription_overview(session, sub_id, date(2026, 2, 20))
        assert _detail(overview).attributes == {"cost_centre": "CC-77", "project": "Apollo"}
    run_bill_run(services, date(2026, 3, 1), now=datetime(2026, 3, 1, 6, tzinfo=UTC))
    assert [inv.id for inv in invoices_of(services, "CC-42")] == [first.id]
    [second] = invoices_of(services, "CC-77")
    assert second.attributes == {"cost_centre": "CC-77", "project": "Apollo"}
    assert push_outbox(services, now=datetime(2026, 3, 1, 6, tzinfo=UTC)).dead == 0
    rows = sf.query_all(f"SELECT Name, Cost_Centre__c FROM Invoice__c WHERE Opportunity__c = '{won['Id']}' "
                        "ORDER BY Name")["records"]
    assert [(r["Name"], r["Cost_Centre__c"]) for r in rows] == [(first.number, "CC-42"), (second.number, "CC-77")]
    with Session(services.engine) as session:
        kept = session.scalars(select(InvoiceDocument).where(InvoiceDocument.invoice_id == first.id)).one()
    assert kept.pdf == doc.pdf


def test_an_open_deals_preview_says_what_its_invoices_would_carry(services, custom_sandbox, database_url):
    sf = salesforce(custom_sandbox)
    deal, _ = open_deal(sf, Cost_Centre__c="CC-OPEN", Project_Code__c="Hermes")
    sync(services)
    note = shown(sf, deal)["Billsync_Preview_Note__c"]
    assert note.startswith("First invoice on 2026-07-01: ")
    assert note.endswith("By billsync; billed once won. Cost centre: CC-OPEN. Project: Hermes.")
    # `billsync mappings preview` shows the values read and what the first invoice would carry.
    from click.testing import CliRunner

    from connector.cli import cli

    env = sandbox_environment(custom_sandbox, database_url, MAPPINGS_DIR=str(services.settings.mappings_dir))
    result = CliRunner().invoke(cli, ["mappings", "preview", deal], env=env)
    assert result.exit_code == 0, result.output
    assert "  attributes.cost_centre: CC-OPEN" in result.output
    assert "  invoiced with cost_centre: CC-OPEN, project: Hermes" in result.output


def test_the_mappings_check_names_each_bad_attribute_declaration(services, custom_sandbox, database_url):
    from click.testing import CliRunner

    from connector.cli import cli

    folder = services.settings.mappings_dir
    file = folder / "opportunity.yaml"
    file.write_text(file.read_text().replace("from: Cost_Centre__c", "from: Cost_Center__c")
                    .replace("      project:", "      Project:"))
    text = file.read_text().splitlines()
    env = sandbox_environment(custom_sandbox, database_url, MAPPINGS_DIR=str(folder))
    result = CliRunner().invoke(cli, ["mappings", "check"], env=env)
    assert result.exit_code == 1, result.output
    assert [line for line in result.stdout.splitlines() if "attributes" in line] == [
        f"{file}:{text.index('        from: Cost_Center__c') + 1}: attributes.cost_centre: no field "
        "'Cost_Center__c' on Opportunity (did you mean 'Cost_Centre__c'?)",
        f"{file}:{text.index('      Project:') + 1}: attributes.Project: is not an attribute name: lower_case "
        "letters, digits and _, starting with a letter, at most 40 characters (like cost_centre)",
    ]
