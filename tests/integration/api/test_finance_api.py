"""Invoices, payments, customers and statements through /api/v1 only: the finance journey
(partial payment, overpayment into credit, refund, a credit note on one line, a void, a held
draft finalized), aging on a fixed date, the statement's running balance, filters and pages.

Rules: docs/billing-rules.md §13 Invoices, §15 Credit notes and customer credit, §16 Payments
and refunds.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.charges import ChargeLine
from billing_engine.use_cases.billing import run_billing
from tests.support.api import bearer, new_key, seed_subscriptions
from tests.support.billing import StaticSource, account, seed_source, snapshot

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
TODAY = date(2026, 2, 10)


def eur(amount: str) -> dict:
    return {"amount": amount, "currency": "EUR"}


def charge(key, amount, *, sub="sub-a", item="seats", starts_on=JAN, ends_before=FEB, description="Seats",
           explanation="", currency="EUR"):
    return ChargeLine(key, sub, item, item.upper(), item.title(), "recurring", starts_on, ends_before, D(1),
                      D(amount), D(amount), D(0), currency, explanation, description)


@pytest.fixture
def today(monkeypatch):
    """The API's business date (actions are dated today in BILLSYNC_TIMEZONE), held fixed."""
    import connector.api.invoices
    import connector.api.payments

    for module in (connector.api.invoices, connector.api.payments):
        monkeypatch.setattr(module, "business_date", lambda: TODAY)
    return TODAY


@pytest.fixture
def billed(app, today):
    """INV-2026-000001 cus-a 179.99 (Seats 100.00 + Support 49.99, 20 %), INV-2026-000002 cus-b
    11.00, INV-2026-000003 cus-b 1,100 JPY, INV-2026-000004 cus-a 120.00 (Feb); a Feb draft of
    cus-b held for review (id 5)."""
    engine = app.extensions["billsync"].engine
    source = StaticSource(
        [account("cus-a"), account("cus-b", "10")],
        {"cus-a": [charge("a:1", "100.00", explanation="Seats 10 × 10.00"),
                   charge("a:2", "49.99", item="support", description="Support"),
                   charge("a:3", "100.00", starts_on=FEB, ends_before=MAR)],
         "cus-b": [charge("b:1", "10.00", sub="sub-b"), charge("b:2", "1000", sub="sub-b2", currency="JPY"),
                   charge("b:3", "10.00", sub="sub-b", starts_on=FEB, ends_before=MAR)]})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source)
    source.accounts = [account("cus-a")]
    run_billing(engine, FEB, source=source)
    source.accounts = [account("cus-b", "10")]
    run_billing(engine, FEB, source=source, hold_for_review=True)
    return engine


def get(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


def post(client, key, url, body=None, status=201, **headers):
    response = client.post(url, json=body, headers={**bearer(key), **headers})
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json if response.is_json else json.loads(response.data)


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return json.loads(response.data)


def pay(client, key, amount, *, customer="cus-a", on="2026-02-10", **extra):
    return post(client, key, "/api/v1/payments", {"customer_id": customer, "amount": eur(amount),
                                                  "received_on": on, **extra})


def test_the_finance_journey(billed, client, write_key):
    # A partial payment of the January invoice.
    first = pay(client, write_key, "100.00", reference="TX-1", invoice_ids=[1])
    assert first["allocations"] == [{"invoice_id": 1, "number": "INV-2026-000001", "amount": eur("100.00")}]
    assert first["unapplied"] == eur("0.00")
    inv = get(client, write_key, "/api/v1/invoices/1?on=2026-01-20")
    assert (inv["payment_status"], inv["amount_due"]) == ("partially_paid", eur("79.99"))

    # An overpayment: 79.99 closes January, 120.00 February, 0.02 becomes credit.
    second = pay(client, write_key, "200.01", reference="TX-2")
    assert [(a["number"], a["amount"]) for a in second["allocations"]] == [
        ("INV-2026-000001", eur("79.99")), ("INV-2026-000004", eur("120.00"))]
    assert second["unapplied"] == eur("0.02")
    customer = get(client, write_key, "/api/v1/customers/cus-a?on=2026-02-10")
    assert customer["balances"][0]["credit"] == eur("0.02")
    assert customer["balances"][0]["balance_due"] == eur("0.00")

    # A refund: the credit first, then February reopens.
    refund = post(client, write_key, "/api/v1/payments/2/refunds",
                  {"amount": eur("20.02"), "reason": "double charge", "refunded_on": "2026-02-12"})
    assert (refund["from_credit"], refund["reopened"]) == (
        eur("0.02"), [{"invoice_id": 4, "number": "INV-2026-000004", "amount": eur("20.00")}])
    assert get(client, write_key, "/api/v1/payments/2")["refundable"] == eur("179.99")
    feb = get(client, write_key, "/api/v1/invoices/4")
    assert (feb["status"], feb["amount_due"]) == ("open", eur("20.00"))

    # A credit note on one line of February: 10.00 + 2.00 tax settles it to 8.00.
    note = post(client, write_key, "/api/v1/invoices/4/credit-notes",
                {"reason": "late start", "lines": [{"line": 1, "amount": eur("10.00")}]})
    assert (note["number"], note["total"], note["applied_to_invoice"]) == ("CN-2026-000001", eur("12.00"),
                                                                            eur("12.00"))
    assert note["lines"] == [{"description": "Seats", "net": eur("10.00"), "tax_percent": "20", "line": 1}]
    feb = get(client, write_key, "/api/v1/invoices/4")
    assert feb["amount_due"] == eur("8.00") and feb["lines"][0]["credited"] == eur("10.00")

    # The held draft: finalized today, numbered next; then cus-b's January invoice voided.
    done = post(client, write_key, "/api/v1/invoices/5/finalize", status=200)
    assert (done["number"], done["status"], done["issued_on"]) == ("INV-2026-000005", "open", "2026-02-10")
    void = post(client, write_key, "/api/v1/invoices/2/void", {"reason": "duplicate order"}, status=200)
    assert (void["status"], void["amount_due"]) == ("void", eur("0.00"))
    assert void["credit_notes"][0]["total"] == eur("11.00")

    # Every change is in the audit log, by the key that made it.
    log = get(client, write_key, "/api/v1/audit-log?limit=200")["data"]
    assert [e["action"] for e in reversed(log)] == [
        "payment.record", "payment.record", "payment.refund", "invoice.credit", "invoice.finalize", "invoice.void"]
    assert {e["actor"] for e in log} == {"api-key:finance-bot"}


def test_the_statement_runs_a_balance_through_every_movement(billed, client, write_key):
    pay(client, write_key, "200.00", reference="TX-1", on="2026-01-20")
    post(client, write_key, "/api/v1/invoices/4/credit-notes",
         {"reason": "late start", "lines": [{"line": 1, "amount": eur("10.00")}], "issued_on": "2026-02-02"})
    post(client, write_key, "/api/v1/payments/1/refunds",
         {"amount": eur("15.00"), "reason": "overpaid", "refunded_on": "2026-02-05"})
    statement = get(client, write_key, "/api/v1/customers/cus-a/statement?from=2026-01-15&to=2026-02-28")
    [part] = statement["currencies"]
    assert part["opening"] == eur("179.99")
    assert [(e["on"], e["kind"], e["reference"], e["amount"]["amount"], e["balance"]["amount"])
            for e in part["entries"]] == [
        ("2026-01-20", "payment", "TX-1", "-200.00", "-20.01"),
        ("2026-02-01", "invoice", "INV-2026-000004", "120.00", "99.99"),
        ("2026-02-02", "credit_note", "CN-2026-000001", "-12.00", "87.99"),
        ("2026-02-05", "refund", "TX-1", "15.00", "102.99")]
    assert (part["invoiced"], part["credited"], part["paid"], part["refunded"], part["closing"]) == (
        eur("120.00"), eur("12.00"), eur("200.00"), eur("15.00"), eur("102.99"))
    net = get(client, write_key, "/api/v1/customers/cus-a?on=2026-02-28")["balances"][0]["net"]
    assert net == part["closing"]
    refused = client.get("/api/v1/customers/cus-a/statement?from=2026-03-01&to=2026-02-01",
                         headers=bearer(write_key))
    assert problem(refused, 422)["errors"] == [{"parameter": "to", "detail": "2026-02-01 is before the "
                                                                             "statement's first day 2026-03-01"}]


def test_a_payment_without_a_reference_has_none_and_is_named_by_its_id(billed, client, write_key):
    first = pay(client, write_key, "10.00", invoice_ids=[1])
    second = pay(client, write_key, "10.00", invoice_ids=[1])
    assert first["id"] != second["id"] and first["reference"] == second["reference"] == ""
    assert [p["reference"] for p in get(client, write_key, "/api/v1/invoices/1")["payments"]] == ["", ""]
    statement = get(client, write_key, "/api/v1/customers/cus-a/statement?from=2026-02-01&to=2026-02-28")
    assert [(e["kind"], e["reference"]) for e in statement["currencies"][0]["entries"] if e["kind"] == "payment"] \
        == [("payment", f"PAY-2026-{first['id']:06d}"), ("payment", f"PAY-2026-{second['id']:06d}")]
    before = snapshot(billed)
    refused = client.post("/api/v1/payments", json={"customer_id": "cus-a", "amount": eur("1.00"),
                                                    "received_on": "2026-02-10", "reference": "unreferenced:1"},
                          headers=bearer(write_key))
    assert problem(refused, 422)["errors"] == [{"pointer": "/reference",
                                                "detail": "must not start with 'unreferenced:'"}]
    assert snapshot(billed) == before


def test_aging_buckets_on_a_fixed_date(billed, client, read_key):
    # On Apr 15 2026: cus-a's Jan invoice (due Jan 31) is 74 days late, Feb (due Mar 3) 43 days.
    customer = get(client, read_key, "/api/v1/customers/cus-a?on=2026-04-15")
    [eur_balance] = customer["balances"]
    assert eur_balance["aging"] == {"current": eur("0.00"), "days_0_30": eur("0.00"),
                                    "days_31_60": eur("120.00"), "days_61_90": eur("179.99"),
                                    "days_over_90": eur("0.00")}
    assert (eur_balance["open_invoices"], eur_balance["overdue_invoices"]) == (2, 2)
    early = get(client, read_key, "/api/v1/customers/cus-a?on=2026-01-31")["balances"][0]["aging"]
    assert (early["current"], early["days_0_30"]) == (eur("120.00"), eur("179.99"))  # due today counts as 0 days
    b = get(client, read_key, "/api/v1/customers/cus-b?on=2026-04-15")
    assert [(x["currency"], x["aging"]["days_61_90"]["amount"]) for x in b["balances"]] == [
        ("EUR", "11.00"), ("JPY", "1100")]


def test_customers_page_by_id_with_their_balances(billed, client, read_key):
    first = get(client, read_key, "/api/v1/customers?limit=1&on=2026-02-10")
    assert [c["id"] for c in first["data"]] == ["cus-a"] and first["next"]
    assert first["data"][0]["balances"][0]["balance_due"] == eur("299.99")
    rest = get(client, read_key, first["next"])
    assert [c["id"] for c in rest["data"]] == ["cus-b"] and rest["next"] is None
    assert problem(client.get("/api/v1/customers/nobody", headers=bearer(read_key)), 404)


def test_next_links_walk_every_invoice_exactly_once(billed, client, read_key):
    seen, url, pages = [], "/api/v1/invoices?limit=2", 0
    while url:
        page = get(client, read_key, url)
        seen.extend(i["id"] for i in page["data"])
        url, pages = page["next"], pages + 1
    assert pages == 3 and seen == [5, 4, 3, 2, 1]  # the draft first, then the newest issued
    first = get(client, read_key, "/api/v1/invoices?limit=1")["data"][0]
    assert (first["number"], first["status"], first["total"]) == (None, "draft", eur("11.00"))


@pytest.mark.parametrize(("query", "ids"), [
    ("status=open&customer_id=cus-b", [3, 2]),
    ("status=draft,paid", [5]),
    ("currency=JPY", [3]),
    ("issued_from=2026-02-01&issued_to=2026-02-28", [4]),
    ("issued_to=2026-01-31&customer_id=cus-a", [1]),
    ("number=INV-2026-00000", [4, 3, 2, 1]),
    ("customer_id=nobody", []),
])
def test_invoice_filters(billed, client, read_key, query, ids):
    assert [i["id"] for i in get(client, read_key, f"/api/v1/invoices?{query}")["data"]] == ids


def test_a_filtered_walk_keeps_its_filters_in_the_next_links(billed, client, read_key):
    page = get(client, read_key, "/api/v1/invoices?status=open&limit=2")
    assert "status=open" in page["next"]
    assert [i["id"] for i in get(client, read_key, page["next"])["data"]] == [2, 1]


@pytest.mark.parametrize(("query", "status", "where"), [
    ("status=unpaid", 422, {"parameter": "status"}),
    ("currency=XYZ", 422, {"parameter": "currency"}),
    ("issued_from=2026-02-01&issued_to=2026-01-01", 422, {"parameter": "issued_to"}),
    ("limit=0", 422, {"parameter": "limit"}),
    ("cursor=WyJhdWRpdCIsWzQyXV0", 400, {"parameter": "cursor"}),  # another listing's cursor
    ("cursor=WyJpbnZvaWNlcyIsWyJub3BlIl1d", 400, {"parameter": "cursor"}),  # ["invoices", ["nope"]]
])
def test_bad_list_queries_are_problems_naming_the_parameter(billed, client, read_key, query, status, where):
    body = problem(client.get(f"/api/v1/invoices?{query}", headers=bearer(read_key)), status)
    assert where.items() <= body["errors"][0].items()


def test_an_invoice_in_full(billed, client, read_key):
    inv = get(client, read_key, "/api/v1/invoices/1?on=2026-02-10")
    assert (inv["number"], inv["status"], inv["payment_status"], inv["customer_name"]) == (
        "INV-2026-000001", "open", "overdue", "cus-a")
    assert [(ln["line"], ln["description"], ln["explanation"], ln["net"]) for ln in inv["lines"]] == [
        (1, "Seats", "Seats 10 × 10.00", eur("100.00")), (2, "Support", "", eur("49.99"))]
    assert inv["taxes"] == [{"percent": "20", "net": eur("149.99"), "tax": eur("30.00")}]
    assert (inv["total"], inv["amount_due"], inv["discount"]) == (eur("179.99"), eur("179.99"), eur("0.00"))
    assert problem(client.get("/api/v1/invoices/999", headers=bearer(read_key)), 404)["detail"] == \
        "invoice 999 not found"


@pytest.mark.parametrize(("url", "body", "status", "pointer"), [
    ("/api/v1/invoices/1/credit-notes", {"reason": "x", "lines": [{"line": 2, "amount": eur("50.00")}]}, 422,
     "/lines/0/amount"),
    ("/api/v1/invoices/1/credit-notes", {"reason": "x", "lines": [{"line": 9}]}, 422, "/lines/0/line"),
    ("/api/v1/invoices/1/credit-notes", {"reason": "x", "amount": {"amount": "5.00", "currency": "USD"}}, 422,
     "/amount/currency"),
    ("/api/v1/invoices/1/credit-notes", {"reason": " "}, 422, "/reason"),
    ("/api/v1/invoices/5/credit-notes", {"reason": "a draft"}, 409, None),
    ("/api/v1/payments", {"customer_id": "cus-a", "amount": eur("10.00"), "received_on": "2026-02-10",
                          "allocations": [{"invoice_id": 1, "amount": {"amount": "10.00", "currency": "USD"}}]},
     422, "/allocations/0/amount/currency"),
    ("/api/v1/payments", {"customer_id": "cus-a", "amount": eur("10.00"), "received_on": "2026-02-10",
                          "allocations": [{"invoice_id": 1, "amount": eur("180.00")}]}, 422,
     "/allocations/0/amount"),
    ("/api/v1/payments", {"customer_id": "cus-a", "amount": {"amount": "10.00", "currency": "USD"},
                          "received_on": "2026-02-10"}, 422, "/currency"),
    ("/api/v1/payments", {"customer_id": "cus-a", "amount": eur("-1.00"), "received_on": "2026-02-10"}, 422,
     "/amount"),
    ("/api/v1/payments", {"customer_id": "cus-x", "amount": eur("1.00"), "received_on": "2026-02-10"}, 422,
     "/customer_id"),
    ("/api/v1/payments", {"customer_id": "cus-a", "amount": 10.0, "received_on": "2026-02-10"}, 422,
     "/amount"),
    ("/api/v1/invoices/2/void", {"reason": "duplicate"}, 200, None),
    ("/api/v1/invoices/4/mark-uncollectible", None, 200, None),
    ("/api/v1/invoices/5/mark-uncollectible", None, 409, None),
])
def test_refused_actions_write_nothing(billed, client, write_key, url, body, status, pointer):
    before = snapshot(billed)
    response = client.post(url, json=body, headers=bearer(write_key))
    if status == 200:
        assert response.status_code == 200, response.json
        return
    body = problem(response, status)
    if pointer:
        assert pointer in [e.get("pointer") for e in body["errors"]], body
    assert snapshot(billed) == before


def test_a_refund_larger_than_the_payment_is_refused(billed, client, write_key):
    pay(client, write_key, "50.00", reference="TX-1")
    before = snapshot(billed)
    body = problem(client.post("/api/v1/payments/1/refunds", json={"amount": eur("50.01"), "reason": "x"},
                               headers=bearer(write_key)), 422)
    assert body["errors"] == [{"pointer": "/amount", "detail": "refund 50.01 is larger than what is left of the "
                                                               "payment (50.00)"}]
    assert snapshot(billed) == before


def test_a_payment_by_amounts_and_the_same_reference_again(billed, client, write_key):
    created = pay(client, write_key, "200.00", reference="TX-9",
                  allocations=[{"invoice_id": 4, "amount": eur("120.00")}, {"invoice_id": 1, "amount": eur("50.00")}])
    assert [(a["invoice_id"], a["amount"]) for a in created["allocations"]] == [(4, eur("120.00")),
                                                                                (1, eur("50.00"))]
    assert created["unapplied"] == eur("30.00")
    again = post(client, write_key, "/api/v1/payments", {"customer_id": "cus-a", "amount": eur("200.00"),
                                                         "received_on": "2026-02-10", "reference": "TX-9"},
                 status=200)
    assert again["id"] == created["id"] and again["allocations"] == created["allocations"]


def test_an_idempotency_key_replays_the_payment_instead_of_recording_it_twice(billed, client, write_key):
    body = {"customer_id": "cus-a", "amount": eur("10.00"), "received_on": "2026-02-10"}
    first = client.post("/api/v1/payments", json=body, headers={**bearer(write_key), "Idempotency-Key": "pay-1"})
    again = client.post("/api/v1/payments", json=body, headers={**bearer(write_key), "Idempotency-Key": "pay-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    other = client.post("/api/v1/payments", json={**body, "amount": eur("11.00")},
                        headers={**bearer(write_key), "Idempotency-Key": "pay-1"})
    assert problem(other, 409)
    without = pay(client, write_key, "10.00")  # no key, no reference: a second payment (documented)
    assert without["id"] != first.json["id"]


def test_a_read_key_reads_but_cannot_act(billed, app, client, read_key):
    assert get(client, read_key, "/api/v1/invoices/1")["id"] == 1
    for url, body in (("/api/v1/invoices/5/finalize", None), ("/api/v1/payments", {}),
                      ("/api/v1/invoices/1/credit-notes", {"reason": "x"})):
        assert problem(client.post(url, json=body, headers=bearer(read_key)), 403)
    usage = new_key(app, "meter", "usage")
    assert problem(client.get("/api/v1/invoices", headers=bearer(usage)), 403)


def test_drafts_held_by_the_bill_run_are_finalized_through_the_api(settings, client, write_key, today):
    """HOLD_INVOICES_FOR_REVIEW=true: the bill run leaves drafts, with no number, that finance
    finalizes one by one."""
    from connector.billing_jobs import run_bill_run
    from connector.settings import load_settings
    from connector.wiring import build_services

    services = build_services(load_settings({"DATABASE_URL": settings.database_url, "LOG_LEVEL": "warning",
                                             "HOLD_INVOICES_FOR_REVIEW": "true"}))
    try:
        seed_subscriptions(services.engine)  # Jan and Feb billed and finalized
        run_bill_run(services, MAR)
    finally:
        services.engine.dispose()
    drafts = get(client, write_key, "/api/v1/invoices?status=draft")["data"]
    assert {(d["customer_id"], d["number"]) for d in drafts} == {("cus-a", None), ("cus-b", None)}
    held = next(d for d in drafts if d["customer_id"] == "cus-a")
    done = post(client, write_key, f"/api/v1/invoices/{held['id']}/finalize", status=200)
    assert done["number"] == "INV-2026-000003" and done["status"] == "open" and done["issued_on"] == "2026-02-10"
    assert done["total"] == held["total"]
    assert [d["customer_id"] for d in get(client, write_key, "/api/v1/invoices?status=draft")["data"]] == ["cus-b"]
    again = client.post(f"/api/v1/invoices/{held['id']}/finalize", headers=bearer(write_key))
    assert problem(again, 409)["detail"].endswith("cannot go from open to open")
    other = next(d for d in drafts if d["customer_id"] == "cus-b")
    dropped = post(client, write_key, f"/api/v1/invoices/{other['id']}/void", {"reason": "deal lost"}, status=200)
    assert (dropped["status"], dropped["number"], dropped["credit_notes"]) == ("void", None, [])
    assert get(client, write_key, "/api/v1/invoices?status=draft")["data"] == []
