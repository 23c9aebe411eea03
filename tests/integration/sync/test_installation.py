"""External ids unique across installations, re-keying records pushed under the old keys, and the
org an installation is bound to (connector/sync/installation.py, connector/sync/binding.py)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update
from sqlmodel import Session

from billing_engine.storage.invoices import Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.payments import Payment
from billing_engine.use_cases.exports import requeue_exports
from billing_engine.use_cases.payments import record_payment
from connector.cli import cli
from connector.database import make_engine, transaction, upgrade
from connector.settings import load_settings
from connector.sync.binding import OrgBindingError, forget_checks
from connector.sync.installation import InstallationRow, get_installation, keys_of
from connector.sync.push import push_outbox
from connector.wiring import build_services
from tests.conftest import BACKEND
from tests.support.push import NOW, bill_customers, create_accounts, outbox_statuses, salesforce_invoices
from tests.support.sandbox import sandbox_environment

OTHER_ORG = "00D000000000009EAA"
SNAPSHOT_OBJECTS = ("Invoice__c", "Invoice_Line__c", "Payment__c", "Account")


@pytest.fixture(autouse=True)
def _fresh_checks():
    forget_checks()
    yield
    forget_checks()


@contextmanager
def another_database(test_database, tmp_path, revision: str = "head") -> Iterator[str]:
    """The URL of another billsync database, migrated to ``revision``, empty."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        engine = make_engine(url)
        upgrade(engine, revision)
        engine.dispose()
        yield url
        return
    schema = f"t_other_{uuid.uuid4().hex[:8]}"
    admin = make_engine(test_database.admin_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in test_database.admin_url else "?"
    url = f"{test_database.admin_url}{sep}options={quote('-csearch_path=' + schema)}"
    engine = make_engine(url)
    upgrade(engine, revision)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def second_database_url(test_database, tmp_path):
    """Another billsync database (migrated, empty): a rebuilt database, or a copy moved elsewhere."""
    with another_database(test_database, tmp_path) as url:
        yield url


def push(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["sync", "push"], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def snapshot(client) -> dict[str, list[tuple]]:
    """Every field of every billsync-touched record in the org, to compare before and after."""
    out = {}
    for obj in SNAPSHOT_OBJECTS:
        fields = sorted(f["name"] for f in client.describe(obj)["fields"] if f["type"] != "address")
        records = client.query_all(f"SELECT {', '.join(fields)} FROM {obj}")  # noqa: S608 - names from describe
        out[obj] = sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "attributes")) for r in records)
    return out


def keys_in_org(client) -> dict[str, list[str]]:
    return {obj: [r[field] for r in client.query_all(f"SELECT {field} FROM {obj}")]  # noqa: S608
            for obj, field in (("Invoice__c", "Billsync_Invoice_Id__c"), ("Invoice_Line__c", "Billsync_Line_Id__c"),
                               ("Payment__c", "Billsync_Payment_Id__c"))}


def billed_and_paid(services, accounts: int = 4, lines: int = 3) -> list[str]:
    account_ids = create_accounts(services.salesforce(), accounts)
    bill_customers(services.engine, account_ids, lines=lines)
    with transaction(services.engine) as session:
        invoice = session.get(Invoice, 1)
        record_payment(session, customer_id=invoice.customer_id, amount=Decimal("10.00"), currency="EUR",
                       received_on=date(2026, 11, 5), method="transfer", source="bank", external_reference="TX-1",
                       now=NOW + timedelta(days=4))
    return account_ids


# ---------------------------------------------------------------- keys


def test_every_pushed_record_is_keyed_by_the_installation(services, org):
    billed_and_paid(services)
    report = push_outbox(services, worker_id="w1", now=NOW + timedelta(days=4))
    assert report.dead == report.retrying == 0

    state = get_installation(services.engine)
    assert len(state.installation_id) == 10 and state.installation_id.isalnum()
    assert state.org_id[:15] == org.org_id[:15] and state.bound_at is not None and state.adopted_at is None
    keys = keys_in_org(services.salesforce())
    assert len(keys["Invoice__c"]) == 4 and len(keys["Invoice_Line__c"]) == 12 and len(keys["Payment__c"]) == 1
    assert sorted(keys["Invoice__c"]) == sorted(f"{state.installation_id}-inv-{i}" for i in range(1, 5))
    assert sorted(keys["Invoice_Line__c"]) == sorted(f"{state.installation_id}-line-{i}" for i in range(1, 13))
    assert keys["Payment__c"] == [f"{state.installation_id}-pay-1"]
    assert all(len(k) <= 64 for ks in keys.values() for k in ks)  # Text(64) external id fields
    env = sandbox_environment(org, services.settings.database_url)
    output = CliRunner().invoke(cli, ["sync", "status"], env=env, catch_exceptions=False).output
    assert (f"  installation {state.installation_id}, bound to org {state.org_id} since "
            f"{state.bound_at.isoformat(timespec='seconds')}\n") in output


# ---------------------------------------------------------------- one installation per org


def test_a_second_database_on_the_same_org_refuses_to_push_and_changes_nothing(services, org, second_database_url):
    billed_and_paid(services)
    assert push_outbox(services, worker_id="w1", now=NOW + timedelta(days=4)).dead == 0
    client = services.salesforce()

    second_env = sandbox_environment(org, second_database_url)
    second = build_services(load_settings(second_env))
    try:
        create_accounts(client, 2, prefix="Other")
        accounts = [r["Id"] for r in client.query_all("SELECT Id FROM Account WHERE Name LIKE 'Other%'")]
        bill_customers(second.engine, accounts, lines=2, first=100)
        before = snapshot(client)
        pending = outbox_statuses(second.engine)

        code, output = push(second_env)

        assert code == 2
        [line] = output.splitlines()
        assert line.startswith(f"error: Salesforce org {get_installation(services.engine).org_id} holds billsync "
                               "records written by another installation (Invoice__c ")
        assert line.endswith(f"run `billsync sync adopt --org {get_installation(services.engine).org_id}`")
        assert snapshot(client) == before, "nothing in the org changed"
        assert outbox_statuses(second.engine) == pending, "the rows are left untouched, to push once adopted"
        with Session(second.engine) as session:
            assert not session.scalars(select(OutboxRow).where(OutboxRow.attempts > 0)).all()
        assert get_installation(second.engine).org_id is None

        # The admin adopts the org: the second installation pushes alongside, overwriting nothing.
        result = CliRunner().invoke(cli, ["sync", "adopt", "--org", org.org_id], env=second_env)
        assert result.exit_code == 0, result.output
        assert f"adopted Salesforce org {org.org_id}" in result.output
        code, output = push(second_env)
        assert code == 0, output
        keys = keys_in_org(client)
        first_prefix, second_prefix = keys_of(services.engine).prefix, keys_of(second.engine).prefix
        assert Counter(k.split("-")[0] + "-" for k in keys["Invoice__c"]) == {first_prefix: 4, second_prefix: 2}
        after = {obj: [r for r in records if any(v.startswith(first_prefix) for _, v in r)]
                 for obj, records in snapshot(client).items() if obj != "Account"}
        assert after == {obj: records for obj, records in before.items() if obj != "Account"}
    finally:
        second.engine.dispose()


def test_adopting_needs_the_org_billsync_is_logged_in_to(services, org):
    env = sandbox_environment(org, services.settings.database_url)
    result = CliRunner().invoke(cli, ["sync", "adopt", "--org", OTHER_ORG], env=env)
    assert result.exit_code == 2
    assert result.output == (f"error: billsync is logged in to Salesforce org {org.org_id}, not {OTHER_ORG}: "
                             "nothing was adopted; check the SF_ settings\n")
    result = CliRunner().invoke(cli, ["sync", "adopt", "--org", "00Dnope"], env=env)
    assert result.exit_code == 2 and result.output.startswith("error: --org: '00Dnope' is not an organization id")
    assert get_installation(services.engine).adopted_at is None


def test_a_database_bound_to_another_org_refuses_to_push(services, org):
    billed_and_paid(services, accounts=2)
    get_installation(services.engine)
    with transaction(services.engine) as session:
        session.execute(update(InstallationRow).values(org_id=OTHER_ORG, bound_at=NOW))
    client = services.salesforce()
    before, pending = snapshot(client), outbox_statuses(services.engine)

    with pytest.raises(OrgBindingError, match=f"is bound to Salesforce org {OTHER_ORG}, but it is logged in to org "
                                              f"{org.org_id}: nothing was pushed"):
        push_outbox(services, worker_id="w1", now=NOW)
    assert snapshot(client) == before
    assert outbox_statuses(services.engine) == pending


def test_the_worker_logs_a_refusal_and_keeps_running(services, org, caplog):
    from connector.worker import drains_for, run_worker

    billed_and_paid(services, accounts=1)
    installation_id = get_installation(services.engine).installation_id
    with transaction(services.engine) as session:
        session.execute(update(InstallationRow).values(org_id=OTHER_ORG, bound_at=NOW))
    pending = outbox_statuses(services.engine)
    drains = drains_for(services, worker_id="w1", batch_size=100, lease=timedelta(minutes=5))
    with caplog.at_level(logging.ERROR, logger="billsync.worker"):
        assert run_worker(drains, once=True, poll_seconds=1, stop=threading.Event()) == 0
    [record] = [r for r in caplog.records if r.name == "billsync.worker"]
    assert record.getMessage().startswith(f"push refused: this billsync installation ({installation_id}) is bound "
                                          f"to Salesforce org {OTHER_ORG}")
    assert outbox_statuses(services.engine) == pending


# ---------------------------------------------------------------- re-keying records pushed under the old keys


def _as_pushed_by_the_old_version(services) -> None:
    """What a database that pushed before installations had ids looks like after the migration: its
    records keyed by bare engine ids in Salesforce, and an installation to re-key them."""
    client = services.salesforce()
    keys = keys_of(services.engine)
    base = f"/services/data/v{client.api_version}/composite/sobjects"
    subrequests = []
    for n, (obj, field, kind) in enumerate((("Invoice__c", "Billsync_Invoice_Id__c", "invoice"),
                                            ("Invoice_Line__c", "Billsync_Line_Id__c", "line"),
                                            ("Payment__c", "Billsync_Payment_Id__c", "payment"))):
        records = [{"attributes": {"type": obj}, "Id": r["Id"], field: str(keys.engine_id(kind, r[field]))}
                   for r in client.query_all(f"SELECT Id, {field} FROM {obj}")]  # noqa: S608
        subrequests.append({"method": "PATCH", "url": base, "referenceId": f"r{n}",
                            "body": {"allOrNone": True, "records": records}})
    assert all(a.success for a in client.composite(subrequests, all_or_none=True))
    with transaction(services.engine) as session:
        session.execute(update(InstallationRow).values(org_id=None, bound_at=None, rekey_pending=True))
    forget_checks()


def test_records_pushed_under_the_old_keys_are_rekeyed_without_duplicates_or_orphans(services, org):
    billed_and_paid(services)
    push_outbox(services, worker_id="w1", now=NOW + timedelta(days=4))
    client = services.salesforce()
    counts = {obj: len(ks) for obj, ks in keys_in_org(client).items()}
    _as_pushed_by_the_old_version(services)
    # A line left behind under invoice 2 by another database that once wrote the same bare key.
    invoice_2 = client.query_page("SELECT Id FROM Invoice__c WHERE Billsync_Invoice_Id__c = '2'")["records"][0]["Id"]
    [created] = client.composite([{
        "method": "POST", "url": f"/services/data/v{client.api_version}/sobjects/Invoice_Line__c",
        "referenceId": "stale", "body": {"Invoice__c": invoice_2, "Billsync_Line_Id__c": "999", "Amount__c": "1.00"}}])
    assert created.success, created.body
    # Invoice 3 was pushed before the engine kept Salesforce ids: it is known by number and Account.
    with transaction(services.engine) as session:
        session.execute(update(Invoice).where(Invoice.id == 3).values(salesforce_id=None))
        requeue_exports(session, [("invoice", i) for i in range(1, 5)] + [("payment", 1)], now=NOW)

    report = push_outbox(services, worker_id="w1", now=NOW + timedelta(days=5))

    assert report.dead == report.retrying == 0
    assert report.rekeyed == ("re-keyed 4 invoices, 12 lines and 1 payments to this installation's keys, "
                              "deleted 1 stale lines")
    keys = keys_in_org(client)
    assert {obj: len(ks) for obj, ks in keys.items()} == counts, "the same records, no duplicates"
    prefix = keys_of(services.engine).prefix
    assert all(k.startswith(prefix) for ks in keys.values() for k in ks), keys
    state, duplicates = salesforce_invoices(client)
    assert duplicates == [] and all(lines == 3 for _, _, lines in state.values()), "no orphan or stale line"
    installation = get_installation(services.engine)
    assert not installation.rekey_pending and installation.org_id[:15] == org.org_id[:15]
    with Session(services.engine) as session:
        assert session.get(Invoice, 3).salesforce_id is not None
        assert session.get(Payment, 1).salesforce_id == next(iter(client.query_all("SELECT Id FROM Payment__c")))["Id"]


def test_rekeying_that_stops_halfway_is_finished_by_the_next_push(services, org):
    billed_and_paid(services, accounts=3, lines=2)
    push_outbox(services, worker_id="w1", now=NOW + timedelta(days=4))
    client = services.salesforce()
    _as_pushed_by_the_old_version(services)
    with transaction(services.engine) as session:
        requeue_exports(session, [("invoice", i) for i in range(1, 4)], now=NOW)
    real = client.composite
    calls = []

    def composite(subrequests, **kw):  # Salesforce goes away after the invoices were re-keyed
        calls.append(subrequests)
        if any(s["method"] == "PATCH" and "Invoice_Line__c" in str(s.get("body")) for s in subrequests):
            from connector.salesforce.errors import SalesforceRetryableError

            raise SalesforceRetryableError("503 Service Unavailable", code="HTTP_503")
        return real(subrequests, **kw)

    client.composite = composite
    stopped = push_outbox(services, worker_id="w1", now=NOW + timedelta(days=5))
    assert stopped.stop_reason and stopped.done == 0 and stopped.records_sent == 0
    assert get_installation(services.engine).rekey_pending
    keys = keys_in_org(client)
    assert all(k.startswith(keys_of(services.engine).prefix) for k in keys["Invoice__c"])
    assert all(k.isdigit() for k in keys["Invoice_Line__c"])

    client.composite = real
    report = push_outbox(services, worker_id="w1", now=NOW + timedelta(days=5, hours=1))
    assert report.rekeyed.startswith("re-keyed 0 invoices, 6 lines and 1 payments")
    assert report.dead == report.retrying == 0 and not get_installation(services.engine).rekey_pending
    keys = keys_in_org(client)
    assert {obj: len(ks) for obj, ks in keys.items()} == {"Invoice__c": 3, "Invoice_Line__c": 6, "Payment__c": 1}
    assert all(k.startswith(keys_of(services.engine).prefix) for ks in keys.values() for k in ks)


def test_the_migration_gives_a_database_that_pushed_an_installation_to_rekey(test_database, tmp_path):
    with another_database(test_database, tmp_path, "0009_clock_runs") as url:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(OutboxRow.__table__.insert().values(
                    topic="invoice.finalized", aggregate_type="invoice", aggregate_id="1", payload="{}",
                    status="done", attempts=1, created_at=datetime(2026, 11, 1, tzinfo=UTC)))
            upgrade(engine)
            state = get_installation(engine)
            assert state.rekey_pending and state.org_id is None and len(state.installation_id) == 10
        finally:
            engine.dispose()
    with another_database(test_database, tmp_path) as url:
        empty = make_engine(url)
        try:
            with Session(empty) as session:
                assert session.get(InstallationRow, 1) is None  # created on first use, with nothing to re-key
            assert not get_installation(empty).rekey_pending
        finally:
            empty.dispose()
