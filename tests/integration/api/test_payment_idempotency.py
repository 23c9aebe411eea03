"""Recording a payment safely over real HTTP (docs/api.md *Idempotency*, *Customers, invoices and
payments*): 100 copies of one POST /api/v1/payments sent at once with one Idempotency-Key record
one payment and all get its answer; the key with another body is a 409; without a key each
request is a new payment, unless it carries a reference already recorded for its source.

Data: ``seed_subscriptions`` (cus-a owes its January and February invoices, billed on 2026-02-01).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from tests.support.api import bearer, live_server, seed_subscriptions

PAYMENT = {"customer_id": "cus-a", "amount": {"amount": "100.00", "currency": "EUR"}, "received_on": "2026-02-10"}


@pytest.fixture
def server(app):
    seed_subscriptions(app.extensions["billsync"].engine)
    with live_server(app) as base, requests.Session() as http:
        http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=100))
        yield base, http


def owed(http, base, key) -> Decimal:
    """What cus-a owes in EUR on the day the payments are received, net of its credit."""
    response = http.get(f"{base}/api/v1/customers/cus-a?on=2026-02-10", headers=bearer(key), timeout=30)
    [eur] = [b for b in response.json()["balances"] if b["currency"] == "EUR"]
    return Decimal(eur["net"]["amount"])


def recorded(http, base, key) -> list[dict]:
    """The payments the audit log says were recorded, oldest first."""
    response = http.get(f"{base}/api/v1/audit-log?action=payment.record&limit=200", headers=bearer(key), timeout=30)
    return list(reversed(response.json()["data"]))


def send_at_once(http, url, headers, body, copies):
    def send(_):
        return http.post(url, json=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(send, range(copies)))


def test_100_copies_of_a_payment_with_one_idempotency_key_record_it_once(server, write_key):
    base, http = server
    url, before = f"{base}/api/v1/payments", owed(http, base, write_key)
    headers = {**bearer(write_key), "Idempotency-Key": "5b0e7c1a-payment-1"}

    responses = send_at_once(http, url, headers, PAYMENT, 100)

    # Each copy gets the payment, or (documented) a 503 to retry when it waited too long for the first.
    recorded_answers = [r for r in responses if r.status_code == 201]
    busy = [r for r in responses if r.status_code == 503]
    assert len(recorded_answers) + len(busy) == 100, sorted({r.status_code for r in responses})
    assert len({r.text for r in recorded_answers}) == 1  # one answer, replayed
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in recorded_answers) == 1
    assert all(r.headers["Content-Type"] == "application/problem+json" and r.headers["Retry-After"] for r in busy)
    retried = [http.post(url, json=PAYMENT, headers=headers, timeout=60) for _ in busy]
    assert all(r.status_code == 201 and r.text == recorded_answers[0].text for r in retried)

    payment = recorded_answers[0].json()
    assert Decimal(payment["amount"]["amount"]) == Decimal("100.00") and payment["reference"] == ""
    assert owed(http, base, write_key) == before - Decimal("100.00")
    assert [(e["target_id"], e["actor"]) for e in recorded(http, base, write_key)] == [
        (str(payment["id"]), "api-key:finance-bot")]

    # The same key with another request: refused, nothing recorded.
    other = http.post(url, json={**PAYMENT, "amount": {"amount": "101.00", "currency": "EUR"}}, headers=headers,
                      timeout=60)
    assert other.status_code == 409 and other.headers["Content-Type"] == "application/problem+json"
    assert json.loads(other.text)["type"] == "urn:billsync:problem:idempotency-key-reused"
    assert owed(http, base, write_key) == before - Decimal("100.00")
    assert len(recorded(http, base, write_key)) == 1


def test_without_a_key_a_resent_payment_is_a_second_payment(server, write_key):
    base, http = server
    url, before = f"{base}/api/v1/payments", owed(http, base, write_key)
    first = http.post(url, json=PAYMENT, headers=bearer(write_key), timeout=60)
    again = http.post(url, json=PAYMENT, headers=bearer(write_key), timeout=60)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] != again.json()["id"]
    assert owed(http, base, write_key) == before - Decimal("200.00")
    assert len(recorded(http, base, write_key)) == 2


def test_without_a_key_a_payment_with_a_reference_is_recorded_once_even_sent_at_once(server, write_key):
    base, http = server
    url, before = f"{base}/api/v1/payments", owed(http, base, write_key)
    body = {**PAYMENT, "reference": "SEPA-2026-0042", "source": "bank"}

    responses = send_at_once(http, url, bearer(write_key), body, 20)

    # The first records it (201); the others answer 200 with that payment (or 503: retry), and change nothing.
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 503}, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses if r.status_code in (200, 201)}
    assert len(ids) == 1
    assert owed(http, base, write_key) == before - Decimal("100.00")
    later = http.post(url, json=body, headers=bearer(write_key), timeout=60)
    assert later.status_code == 200 and later.json()["id"] in ids
    assert owed(http, base, write_key) == before - Decimal("100.00")
    # Recording it again changes nothing, but is still an action someone took: the audit log says so.
    assert len({e["target_id"] for e in recorded(http, base, write_key)}) == 1
