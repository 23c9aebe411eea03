"""GET /api/v1/subscriptions, a subscription, its timeline, and the MRR metrics."""

from __future__ import annotations

import pytest

from tests.support.api import bearer, seed_subscriptions


@pytest.fixture
def seeded(app):
    seed_subscriptions(app.extensions["billsync"].engine)
    return app


def _get(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


def test_subscriptions_page_by_id_with_their_status_and_mrr(seeded, client, read_key):
    first = _get(client, read_key, "/api/v1/subscriptions?limit=2&on=2026-06-30")
    assert [s["id"] for s in first["data"]] == ["sub-a", "sub-b"]
    assert first["data"][0]["mrr"] == {"amount": "2475.00", "currency": "EUR"}
    assert first["data"][0]["arr"] == {"amount": "29700.00", "currency": "EUR"}
    assert first["data"][1]["status"] == "ended" and first["data"][1]["ends_before"] == "2026-04-15"
    assert first["data"][1]["mrr"] == {"amount": "0.00", "currency": "USD"}
    rest = _get(client, read_key, first["next"])
    assert [s["id"] for s in rest["data"]] == ["sub-c"] and rest["next"] is None
    assert rest["data"][0]["status"] == "pending"


@pytest.mark.parametrize(("on", "status", "ids"), [
    ("2026-06-30", "active", ["sub-a"]), ("2026-06-30", "ended", ["sub-b"]), ("2026-06-30", "pending", ["sub-c"]),
    ("2026-02-01", "cancelled", ["sub-b"]), ("2026-10-01", "active", ["sub-a", "sub-c"]),
])
def test_subscriptions_filter_by_status_on_a_date(seeded, client, read_key, on, status, ids):
    page = _get(client, read_key, f"/api/v1/subscriptions?on={on}&status={status}")
    assert [s["id"] for s in page["data"]] == ids


def test_subscriptions_filter_by_customer(seeded, client, read_key):
    page = _get(client, read_key, "/api/v1/subscriptions?customer_id=cus-b")
    assert [s["id"] for s in page["data"]] == ["sub-b"]
    assert _get(client, read_key, "/api/v1/subscriptions?customer_id=nobody")["data"] == []


def test_a_subscription_with_its_items_amendments_and_mrr(seeded, client, read_key):
    sub = _get(client, read_key, "/api/v1/subscriptions/sub-a?on=2026-06-30")
    assert sub["status"] == "active" and sub["as_of"] == "2026-06-30"
    items = {i["item_id"]: i for i in sub["items"]}
    assert items["a-seats"]["quantity"] == "15" and items["a-seats"]["product_code"] == "SEATS"
    assert items["a-seats"]["monthly_amount"] == {"amount": "2250.00", "currency": "EUR"}
    assert items["a-support"]["monthly_amount"] == {"amount": "225.00", "currency": "EUR"}
    assert sub["mrr"] == {"amount": "2475.00", "currency": "EUR"}
    assert sub["amendments"] == [{"amendment_id": "a1", "sequence": 1, "action": "change_quantity",
                                  "effective_on": "2026-03-01", "item_id": "a-seats", "quantity": "15",
                                  "unit_price": None, "immediate": False, "reason": "more staff"}]
    before = _get(client, read_key, "/api/v1/subscriptions/sub-a?on=2026-02-15")
    assert {i["item_id"]: i["quantity"] for i in before["items"]}["a-seats"] == "12"
    assert before["mrr"]["amount"] == "2145.00"


def test_an_unknown_subscription_is_a_404_problem(seeded, client, read_key):
    response = client.get("/api/v1/subscriptions/sub-zz", headers=bearer(read_key))
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert response.json["detail"] == "subscription 'sub-zz' not found"
    assert client.get("/api/v1/subscriptions/sub-zz/timeline", headers=bearer(read_key)).status_code == 404


def test_the_timeline_tells_the_subscription_s_life_in_date_order(seeded, client, read_key):
    timeline = _get(client, read_key, "/api/v1/subscriptions/sub-a/timeline?on=2026-06-30")
    events = [(e["on"], e["kind"]) for e in timeline["events"]]
    assert events[:2] == [("2026-01-01", "started"), ("2026-01-01", "mrr_changed")]
    assert ("2026-03-01", "amended") in events and ("2026-03-01", "mrr_changed") in events
    assert events == sorted(events, key=lambda e: e[0])
    changes = [(e["before"]["amount"], e["amount"]["amount"]) for e in timeline["events"] if e["kind"] == "mrr_changed"]
    assert changes == [("0.00", "2145.00"), ("2145.00", "2475.00")]
    invoices = [e for e in timeline["events"] if e["kind"] == "invoice_issued"]
    assert invoices and all(e["invoice_number"] and e["amount"]["currency"] == "EUR" for e in invoices)

    ended = _get(client, read_key, "/api/v1/subscriptions/sub-b/timeline?on=2026-02-01")
    kinds = [(e["on"], e["kind"]) for e in ended["events"]]
    assert ("2026-04-15", "cancelled") in kinds and ("2026-04-15", "ended") in kinds
    assert [e["amount"]["amount"] for e in ended["events"] if e["kind"] == "mrr_changed"] == ["300.00", "0.00"]


def test_the_mrr_bridge_by_month_with_totals_per_currency(seeded, client, read_key):
    bridge = _get(client, read_key, "/api/v1/metrics/mrr?from=2026-01&to=2026-06")
    rows = {(r["month"], r["currency"]): r for r in bridge["months"]}
    assert rows[("2026-01", "EUR")]["new"] == {"amount": "2145.00", "currency": "EUR"}
    assert rows[("2026-03", "EUR")]["expansion"]["amount"] == "330.00"
    assert rows[("2026-04", "USD")]["churn"]["amount"] == "300.00"
    totals = {r["currency"]: r for r in bridge["totals"]}
    assert totals["EUR"]["month"] == "2026-01..2026-06"
    assert totals["EUR"]["opening"]["amount"] == "0.00" and totals["EUR"]["closing"]["amount"] == "2475.00"
    assert totals["EUR"]["new"]["amount"] == "2145.00" and totals["EUR"]["expansion"]["amount"] == "330.00"
    assert totals["USD"]["closing"]["amount"] == "0.00" and totals["USD"]["customers"] == 0
    only_usd = _get(client, read_key, "/api/v1/metrics/mrr?from=2026-01&to=2026-02&currency=USD")
    assert {r["currency"] for r in only_usd["months"]} == {"USD"}


def test_a_month_s_movements_per_customer(seeded, client, read_key):
    jan = _get(client, read_key, "/api/v1/metrics/mrr/2026-01/movements?limit=1")
    assert [(m["customer_id"], m["kind"]) for m in jan["data"]] == [("cus-a", "new")]
    more = _get(client, read_key, jan["next"])
    assert [(m["customer_id"], m["kind"], m["after"]["amount"]) for m in more["data"]] == [("cus-b", "new", "300.00")]
    march = _get(client, read_key, "/api/v1/metrics/mrr/2026-03/movements?kind=expansion")
    assert march["data"] == [{"customer_id": "cus-a", "currency": "EUR", "kind": "expansion",
                              "before": {"amount": "2145.00", "currency": "EUR"},
                              "after": {"amount": "2475.00", "currency": "EUR"},
                              "change": {"amount": "330.00", "currency": "EUR"}}]


def test_bad_metric_queries_are_problems_naming_the_parameter(client, read_key):
    for url, parameter in (("/api/v1/metrics/mrr?from=2026-13&to=2026-12", "from"),
                           ("/api/v1/metrics/mrr?from=2026-05&to=2026-01", "to"),
                           ("/api/v1/metrics/mrr?to=2026-01", "from")):
        response = client.get(url, headers=bearer(read_key))
        assert response.status_code == 422 and response.mimetype == "application/problem+json", url
        assert response.json["errors"][0]["parameter"] == parameter, response.json
