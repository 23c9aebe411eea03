"""Dunning with the clock on a fixed calendar: the reminders of a 30-day schedule go out on the right
days, in the customer's language, stop when the invoice is paid or the customer paused, and each
step shows on Invoice__c in the sandbox (docs/payments.md)."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime, timedelta
from email import policy

from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.storage.collections import DunningStep
from billing_engine.storage.invoices import Invoice
from billing_engine.use_cases.collections import set_collection_profile
from billing_engine.use_cases.payments import record_payment
from connector import scheduler as clock_module
from connector.cli import cli
from connector.database import transaction
from connector.salesforce.soql import build_soql
from connector.sync.push import push_outbox
from tests.support.push import NOW, bill_customers, create_accounts, invoice_key
from tests.support.sandbox import sandbox_environment


def mails(folder) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def shown(client, engine, invoice_id: int) -> tuple[str, str | None, str | None]:
    [record] = client.query_page(build_soql(
        "SELECT Payment_Status__c, Dunning_Step__c, Dunning_Step_Date__c FROM Invoice__c "
        "WHERE Billsync_Invoice_Id__c = {}", invoice_key(engine, invoice_id)))["records"]
    return record["Payment_Status__c"], record["Dunning_Step__c"], record["Dunning_Step_Date__c"]


def test_a_30_day_schedule_sends_each_reminder_on_its_day_and_salesforce_shows_each_step(services, org,
                                                                                        virtual_clock, tmp_path):
    services.settings = services.settings.replace(mail_dir=tmp_path / "mail")
    client = services.salesforce()
    accounts = create_accounts(client, 3)
    bill_customers(services.engine, accounts, lines=1)  # INV-2026-000001..3, issued Nov 1, due Dec 1
    with Session(services.engine) as session:
        invoices = {inv.customer_id: inv for inv in session.scalars(select(Invoice))}
    late, payer, paused = (invoices[c] for c in ("c000000", "c000001", "c000002"))
    now = NOW
    with transaction(services.engine) as session:
        set_collection_profile(session, "c000000", email="compta@client.fr", language="fr", now=now)
        set_collection_profile(session, "c000001", email="ap@payer.example", now=now)
        set_collection_profile(session, "c000002", email="ap@paused.example", paused=True, reason="dispute", now=now)
    push_outbox(services, worker_id="w1", now=now)

    sent_on: dict[date, list[tuple[str, str]]] = {}
    steps_in_salesforce: dict[date, tuple] = {}
    day = date(2026, 12, 1)
    while day <= date(2027, 1, 5):
        if day == date(2026, 12, 10):  # the second customer pays after its first reminder
            with transaction(services.engine) as session:
                record_payment(session, customer_id="c000001", amount=payer.total, currency="EUR", received_on=day,
                               method="transfer", source="bank", external_reference="TR-1")
        before = len(mails(tmp_path / "mail")) if (tmp_path / "mail").exists() else 0
        virtual_clock.now = datetime(day.year, day.month, day.day, 0, 31, tzinfo=UTC)
        clock_module.run_job("collections", services)
        virtual_clock.now = datetime(day.year, day.month, day.day, 9, 1, tzinfo=UTC)
        clock_module.run_job("dunning", services)
        push = push_outbox(services, worker_id="w1", now=virtual_clock.now + timedelta(minutes=1))
        assert push.dead == push.retrying == 0
        new = mails(tmp_path / "mail")[before:]
        if new:
            sent_on[day] = [(m["To"], m["Subject"]) for m in new]
            steps_in_salesforce[day] = shown(client, services.engine, late.id)
        day += timedelta(days=1)

    assert sent_on == {
        date(2026, 12, 4): [("compta@client.fr", "Rappel : la facture INV-2026-000001 est échue"),
                            ("ap@payer.example", "Reminder: invoice INV-2026-000002 is overdue")],
        date(2026, 12, 16): [("compta@client.fr", "Deuxième rappel : facture INV-2026-000001 impayée depuis 15 "
                                                  "jours")],
        date(2026, 12, 31): [("compta@client.fr", "Dernier rappel avant recouvrement : facture INV-2026-000001 "
                                                  "impayée depuis 30 jours")],
    }
    assert steps_in_salesforce == {
        date(2026, 12, 4): ("overdue", "reminder", "2026-12-04"),
        date(2026, 12, 16): ("overdue", "second", "2026-12-16"),
        date(2026, 12, 31): ("overdue", "final", "2026-12-31"),
    }
    assert shown(client, services.engine, payer.id) == ("paid", "reminder", "2026-12-04")
    assert shown(client, services.engine, paused.id) == ("overdue", None, None)

    final = mails(tmp_path / "mail")[-1]
    body = final.get_body().get_content()
    assert final["From"] == "billsync <billing@localhost>" and final["Content-Language"] == "fr"
    assert "Montant dû : " in body and "INV-2026-000001" in body
    assert "indemnité forfaitaire pour frais de recouvrement de 40 EUR" in body
    with Session(services.engine) as session:
        steps = [(s.invoice_id, s.step, s.sent_on, s.days_late) for s in session.scalars(
            select(DunningStep).order_by(DunningStep.id))]
    assert steps == [(late.id, "reminder", date(2026, 12, 4), 3), (payer.id, "reminder", date(2026, 12, 4), 3),
                     (late.id, "second", date(2026, 12, 16), 15), (late.id, "final", date(2026, 12, 31), 30)]


def test_dunning_commands(services, org, tmp_path):
    client = services.salesforce()
    bill_customers(services.engine, create_accounts(client, 2), lines=1)
    env = sandbox_environment(org, str(services.engine.url.render_as_string(hide_password=False)),
                              MAIL_DIR=str(tmp_path / "mail"))
    runner = CliRunner()
    profile = runner.invoke(cli, ["payments", "dunning-profile", "c000000"], env=env)
    assert profile.exit_code == 0
    assert profile.output == ("customer c000000: reminders to (no e-mail address), in en (from the billing "
                              "country), dunning active\n")
    bad = runner.invoke(cli, ["payments", "dunning-profile", "c000000", "--email", "not-an-address"], env=env)
    assert bad.exit_code == 2 and "email: is not an e-mail address" in bad.output
    set_ = runner.invoke(cli, ["payments", "dunning-profile", "c000000", "--email", "ap@c0.example", "--language",
                               "fr"], env=env)
    assert set_.output == "customer c000000: reminders to ap@c0.example, in fr, dunning active\n"
    paused = runner.invoke(cli, ["payments", "dunning-profile", "c000001", "--pause", "--reason", "payment plan"],
                           env=env)
    assert paused.output.endswith("dunning paused (payment plan)\n")

    dry = runner.invoke(cli, ["payments", "dunning", "--as-of", "2026-12-20", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "dunning as of 2026-12-20 (dry run, nothing sent): 1 reminders due; 1 customers paused",
        "would send: second for INV-2026-000001 (c000000, 19 days late, 12.00 EUR) to ap@c0.example in fr"]
    assert not (tmp_path / "mail").exists()
    sent = runner.invoke(cli, ["payments", "dunning", "--as-of", "2026-12-20"], env=env)
    assert sent.exit_code == 0, sent.output
    assert "sent: second for INV-2026-000001 (c000000) to ap@c0.example in fr" in sent.output
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    again = runner.invoke(cli, ["payments", "dunning", "--as-of", "2026-12-21"], env=env)
    assert again.output.startswith("dunning as of 2026-12-21: 0 reminders sent")

    resumed = runner.invoke(cli, ["payments", "dunning-profile", "c000001", "--resume"], env=env)
    assert resumed.output.endswith("dunning active\n")
    no_email = runner.invoke(cli, ["payments", "dunning", "--as-of", "2026-12-22"], env=env)
    assert ("no e-mail address: customer c000001 (INV-2026-000002, second); set one with 'billsync payments "
            "dunning-profile c000001 --email ...'") in no_email.output
