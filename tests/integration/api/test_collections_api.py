"""``/api/v1`` collection routes: SEPA mandates, bank statement entries (docs/payments.md)."""

from __future__ import annotations

from decimal import Decimal

from connector.collection_jobs import import_statement
from tests.support.api import bearer
from tests.support.camt import Entry, Tx, statement
from tests.support.collections import iban, invoiced_customers, invoices_by_customer


def post(client, key, url, body, idem=None):
    headers = {**bearer(key), **({"Idempotency-Key": idem} if idem else {})}
    return client.post(url, json=body, headers=headers)


def test_finance_records_lists_and_revokes_a_mandate(app, client, write_key, read_key):
    [cid] = invoiced_customers(app.extensions["billsync"].engine, 1)
    body = {"reference": "RUM-2026-001", "signed_on": "2026-10-15", "iban": iban(3).lower(), "bic": "COBADEFFXXX"}
    created = post(client, write_key, f"/api/v1/customers/{cid}/mandates", body, "m-1")
    assert created.status_code == 201, created.json
    mandate = created.json
    assert created.headers["Location"] == f"/api/v1/mandates/{mandate['id']}"
    assert {k: mandate[k] for k in ("customer_id", "reference", "iban", "bic", "sequence_type", "status",
                                    "account_holder")} == {
        "customer_id": cid, "reference": "RUM-2026-001", "iban": iban(3), "bic": "COBADEFFXXX",
        "sequence_type": "FRST", "status": "active", "account_holder": cid}
    replay = post(client, write_key, f"/api/v1/customers/{cid}/mandates", body, "m-1")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"

    listed = client.get(f"/api/v1/customers/{cid}/mandates", headers=bearer(read_key))
    assert listed.status_code == 200 and [m["reference"] for m in listed.json["data"]] == ["RUM-2026-001"]
    assert client.get("/api/v1/mandates?status=revoked", headers=bearer(read_key)).json["data"] == []
    one = client.get(f"/api/v1/mandates/{mandate['id']}", headers=bearer(read_key))
    assert one.status_code == 200 and one.json == mandate

    second = post(client, write_key, f"/api/v1/customers/{cid}/mandates", {**body, "reference": "RUM-2026-002"})
    assert second.status_code == 409 and "already has an active mandate" in second.json["detail"]
    revoked = post(client, write_key, f"/api/v1/mandates/{mandate['id']}/revoke", {"reason": "new bank"})
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked"
    assert revoked.json["revoked_reason"] == "new bank"
    audit = client.get("/api/v1/audit-log?target_type=mandate", headers=bearer(read_key)).json["data"]
    assert [e["action"] for e in audit] == ["mandate.revoke", "mandate.create"]


def test_a_bad_mandate_is_refused_naming_each_field(app, client, write_key, read_key):
    [cid] = invoiced_customers(app.extensions["billsync"].engine, 1)
    bad_iban = post(client, write_key, f"/api/v1/customers/{cid}/mandates",
                    {"reference": "RUM-1", "signed_on": "2026-10-15", "iban": "DE89370400440532013001"})
    assert bad_iban.status_code == 422
    assert bad_iban.json["errors"][0]["pointer"] == "/iban" and "checksum" in bad_iban.json["errors"][0]["detail"]
    shape = post(client, write_key, f"/api/v1/customers/{cid}/mandates",
                 {"reference": "RUM-1", "signed_on": "15/10/2026", "iban": iban(1), "sequence_type": "OOFF"})
    assert shape.status_code == 422
    assert {e["pointer"] for e in shape.json["errors"]} == {"/signed_on", "/sequence_type"}
    unknown = post(client, write_key, "/api/v1/customers/nobody/mandates",
                   {"reference": "RUM-1", "signed_on": "2026-10-15", "iban": iban(1)})
    assert unknown.status_code == 404
    assert post(client, read_key, f"/api/v1/customers/{cid}/mandates",
                {"reference": "RUM-1", "signed_on": "2026-10-15", "iban": iban(1)}).status_code == 403
    assert client.get("/api/v1/mandates/999", headers=bearer(read_key)).status_code == 404


def test_finance_lists_unmatched_entries_with_candidates_and_matches_them(app, client, write_key, read_key, tmp_path):
    services = app.extensions["billsync"]
    customers = invoiced_customers(services.engine, 2)
    invoices = invoices_by_customer(services.engine)
    path = tmp_path / "stmt.xml"
    path.write_bytes(statement([
        Entry(invoices[customers[1]].total, "U1", details=[Tx(name="Unknown", iban=iban(9), remittance=("order 5",))]),
        Entry(Decimal("3.00"), "U2", details=[Tx(name="Someone", remittance=("refund",))]),
    ]))
    import_statement(services, path)

    listed = client.get("/api/v1/bank-entries?status=unmatched&limit=1", headers=bearer(read_key))
    assert listed.status_code == 200 and listed.json["next"]
    [first] = listed.json["data"]
    assert (first["amount"], first["status"], first["counterparty_iban"]) == (
        {"amount": str(invoices[customers[1]].total), "currency": "EUR"}, "unmatched", iban(9))
    assert [(c["number"], c["why"]) for c in first["candidates"]] == [
        ("INV-2026-000002", "an open invoice of the same amount")]
    second = client.get(listed.json["next"], headers=bearer(read_key)).json["data"][0]

    matched = post(client, write_key, f"/api/v1/bank-entries/{first['id']}/match",
                   {"invoice_numbers": ["INV-2026-000002"]}, "match-1")
    assert matched.status_code == 200, matched.json
    assert (matched.json["status"], matched.json["rule"], matched.json["customer_id"]) == (
        "matched", "manual", customers[1])
    again = post(client, write_key, f"/api/v1/bank-entries/{first['id']}/match", {"customer_id": customers[0]})
    assert again.status_code == 409
    aside = post(client, write_key, f"/api/v1/bank-entries/{second['id']}/set-aside", {"reason": "bank refund"})
    assert aside.status_code == 200 and aside.json["status"] == "ignored"
    assert client.get("/api/v1/bank-entries?status=unmatched", headers=bearer(read_key)).json["data"] == []
    one = client.get(f"/api/v1/bank-entries/{first['id']}", headers=bearer(read_key)).json
    assert one["payment_id"] == matched.json["payment_id"] and one["note"] == "matched by hand to INV-2026-000002"
    assert client.get("/api/v1/bank-entries/99", headers=bearer(read_key)).status_code == 404


def test_a_customers_dunning_profile_is_read_and_changed(app, client, write_key, read_key):
    [cid] = invoiced_customers(app.extensions["billsync"].engine, 1)
    url = f"/api/v1/customers/{cid}/dunning-profile"
    assert client.get(url, headers=bearer(read_key)).json == {
        "customer_id": cid, "email": None, "language": "en", "language_chosen": None, "dunning_paused": False,
        "paused_reason": ""}
    changed = post(client, write_key, url, {"email": "compta@client.fr", "language": "fr", "paused": True,
                                             "reason": "disputed invoice"})
    assert changed.status_code == 200 and changed.json == {
        "customer_id": cid, "email": "compta@client.fr", "language": "fr", "language_chosen": "fr",
        "dunning_paused": True, "paused_reason": "disputed invoice"}
    resumed = post(client, write_key, url, {"paused": False, "language": None})
    assert resumed.json["dunning_paused"] is False and resumed.json["email"] == "compta@client.fr"
    assert resumed.json["language_chosen"] is None
    bad = post(client, write_key, url, {"email": "compta"})
    assert bad.status_code == 422 and bad.json["errors"][0]["pointer"] == "/email"
    assert post(client, write_key, "/api/v1/customers/nobody/dunning-profile", {"paused": True}).status_code == 404


def test_an_overdue_invoice_shows_its_collection_state_and_its_late_charges(app, client, read_key):
    from datetime import date

    from billing_engine.use_cases.collections import mark_overdue_invoices
    from connector.database import transaction

    engine = app.extensions["billsync"].engine
    [cid] = invoiced_customers(engine, 1)
    invoice = invoices_by_customer(engine)[cid]
    with transaction(engine) as session:
        mark_overdue_invoices(session, date(2026, 12, 5))
    state = client.get(f"/api/v1/invoices/{invoice.id}/collection", headers=bearer(read_key))
    assert state.status_code == 200
    assert (state.json["overdue_on"], state.json["dunning_step"], state.json["steps"], state.json["direct_debit"]) == (
        "2026-12-02", None, [], None)

    charges = client.get(f"/api/v1/invoices/{invoice.id}/late-charges?on=2026-12-31&rate=12.15",
                         headers=bearer(read_key))
    assert charges.status_code == 200, charges.json
    interest = (invoice.total * Decimal("12.15") / 100 * 30 / 365).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    assert (charges.json["days_late"], charges.json["interest"], charges.json["indemnity"], charges.json["total"],
            charges.json["invoiced"]) == (
        30, {"amount": str(interest), "currency": "EUR"}, {"amount": "40.00", "currency": "EUR"},
        {"amount": str(interest + 40), "currency": "EUR"}, False)
    no_rate = client.get(f"/api/v1/invoices/{invoice.id}/late-charges?on=2026-12-31", headers=bearer(read_key))
    assert no_rate.status_code == 422 and no_rate.json["errors"] == [
        {"parameter": "rate", "detail": "required: the LATE_INTEREST_RATE setting is not set"}]
    too_high = client.get(f"/api/v1/invoices/{invoice.id}/late-charges?rate=150", headers=bearer(read_key))
    assert too_high.status_code == 422
    on_time = client.get(f"/api/v1/invoices/{invoice.id}/late-charges?on=2026-12-01&rate=10", headers=bearer(read_key))
    assert on_time.json["total"] == {"amount": "0.00", "currency": "EUR"}
    assert client.get("/api/v1/invoices/999/late-charges?rate=10", headers=bearer(read_key)).status_code == 404
