"""What every /api/v1 route gets: API keys and scopes, problem documents, Idempotency-Key,
the audit entry in the same transaction, money as decimal strings, the OpenAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from billing_engine.use_cases import audit
from connector.api import auth
from connector.api.auth import revoke_key
from connector.database import transaction
from tests.support.api import bearer, new_key

NOTE = {"text": "first", "price": {"amount": "12.50", "currency": "EUR"}}


def _audit_count(app) -> int:
    with transaction(app.extensions["billsync"].engine) as session:
        return len(audit.list_actions(session, limit=1000))


def _is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.json if response.is_json else json.loads(response.data)
    assert body["status"] == status and body["title"] and body["instance"] == response.request.path
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# ---------------------------------------------------------------- the document


def test_the_openapi_document_is_3_1_and_describes_routes_scopes_and_problems(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    listing = spec["paths"]["/api/v1/audit-log"]["get"]
    assert listing["security"] == [{"bearer": ["read"]}]
    assert {"200", "400", "401", "403", "422"} <= set(listing["responses"])
    assert "application/problem+json" in listing["responses"]["401"]["content"]
    post = spec["paths"]["/api/v1/notes"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    money = spec["components"]["schemas"]["Money"]["properties"]["amount"]
    assert money["type"] == "string" and money["pattern"]


# ---------------------------------------------------------------- keys and scopes


def test_a_request_without_a_key_is_a_401_problem_with_a_bearer_challenge(client):
    body = _is_problem(client.get("/api/v1/audit-log"), 401)
    assert client.get("/api/v1/audit-log").headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in body["detail"]


def test_an_unknown_or_malformed_key_is_a_401(client, write_key):
    for header in ("Bearer bsk_nottherightone", "Basic abc", "Bearer " + write_key[:-1], "Bearer " + "x" * 5000):
        response = client.get("/api/v1/audit-log", headers={"Authorization": header})
        _is_problem(response, 401)
        assert "Bearer" in response.headers["WWW-Authenticate"]


def test_a_revoked_key_is_refused(app, client, write_key):
    assert client.get("/api/v1/audit-log", headers=bearer(write_key)).status_code == 200
    revoke_key(app.extensions["billsync"].engine, "finance-bot", now=datetime.now(UTC))
    body = _is_problem(client.get("/api/v1/audit-log", headers=bearer(write_key)), 401)
    assert "revoked" in body["detail"]


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(app, client, write_key, monkeypatch):
    """A web process trusts a key it read for KEY_CACHE_SECONDS; revoked elsewhere (the CLI is
    another process), it is refused once that time has passed."""
    clock = [1000.0]
    monkeypatch.setattr(auth.KEYS, "clock", lambda: clock[0])
    assert client.get("/api/v1/audit-log", headers=bearer(write_key)).status_code == 200
    with transaction(app.extensions["billsync"].engine) as session:  # as `billsync api-key revoke` elsewhere
        session.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'finance-bot'"))
    clock[0] += auth.KEY_CACHE_SECONDS - 0.5
    assert client.get("/api/v1/audit-log", headers=bearer(write_key)).status_code == 200
    clock[0] += 0.5
    body = _is_problem(client.get("/api/v1/audit-log", headers=bearer(write_key)), 401)
    assert "revoked" in body["detail"]
    clock[0] += 3600
    _is_problem(client.get("/api/v1/audit-log", headers=bearer(write_key)), 401)


def test_a_read_key_cannot_write_and_a_usage_key_cannot_read(app, client, read_key):
    body = _is_problem(client.post("/api/v1/notes", json=NOTE, headers=bearer(read_key)), 403)
    assert "'write'" in body["detail"]
    assert _audit_count(app) == 0
    usage_key = new_key(app, "meter", "usage")
    _is_problem(client.get("/api/v1/audit-log", headers=bearer(usage_key)), 403)


def test_a_write_key_may_read(client, write_key):
    assert client.get("/api/v1/audit-log", headers=bearer(write_key)).status_code == 200


def test_authentication_comes_before_validation(client):
    _is_problem(client.post("/api/v1/notes", data="not json", content_type="application/json"), 401)


def test_the_key_records_when_it_was_last_used(app, client, write_key):
    from connector.api.auth import list_keys

    client.get("/api/v1/audit-log", headers=bearer(write_key))
    (key,) = list_keys(app.extensions["billsync"].engine)
    assert key.last_used_at is not None


# ---------------------------------------------------------------- problems


def test_invalid_body_fields_are_named_by_json_pointer(client, write_key):
    response = client.post("/api/v1/notes", headers=bearer(write_key),
                           json={"text": "", "price": {"amount": 12.5, "currency": "euro"}, "extra": 1})
    body = _is_problem(response, 422)
    pointers = {e["pointer"] for e in body["errors"]}
    assert {"/text", "/price/amount", "/price/currency", "/extra"} <= pointers
    assert "12.5" not in response.get_data(as_text=True)  # input values are not echoed


def test_an_amount_must_be_a_decimal_string_never_a_number(client, write_key):
    for amount in (12.5, "1e3", "12,50", "0012", "1.1234567", "NaN"):
        body = _is_problem(client.post("/api/v1/notes", headers=bearer(write_key),
                                       json={"text": "x", "price": {"amount": amount, "currency": "EUR"}}), 422)
        assert [e["pointer"] for e in body["errors"]] == ["/price/amount"], amount


def test_a_body_that_is_not_json_is_a_400_and_a_missing_body_a_422(client, write_key):
    body = _is_problem(client.post("/api/v1/notes", headers=bearer(write_key), data="{nope",
                                   content_type="application/json"), 400)
    assert body["errors"] == [{"pointer": "", "detail": "not valid JSON"}]
    _is_problem(client.post("/api/v1/notes", headers=bearer(write_key)), 422)


def test_invalid_query_parameters_are_named(client, write_key):
    body = _is_problem(client.get("/api/v1/audit-log?limit=500", headers=bearer(write_key)), 422)
    assert body["errors"][0]["parameter"] == "limit"
    body = _is_problem(client.get("/api/v1/audit-log?limit=abc", headers=bearer(write_key)), 422)
    assert body["errors"][0]["parameter"] == "limit"


def test_engine_errors_become_422_404_409_and_nothing_is_written(app, client, write_key):
    for fail, status in (("invalid", 422), ("missing", 404), ("conflict", 409)):
        body = _is_problem(client.post("/api/v1/notes", headers=bearer(write_key), json={"text": "x", "fail": fail}),
                           status)
        if status == 422:
            assert body["errors"] == [{"pointer": "/price/amount", "detail": "must be positive"}]
    assert _audit_count(app) == 0


def test_a_write_that_records_no_audit_entry_is_refused_as_a_bug(app, client, write_key):
    body = _is_problem(client.post("/api/v1/notes", headers=bearer(write_key),
                                   json={"text": "x", "fail": "unaudited"}), 500)
    assert body["request_id"]


def test_unknown_routes_and_methods_under_the_api_are_problems(client, write_key):
    _is_problem(client.get("/api/v1/nothing-here", headers=bearer(write_key)), 404)
    response = client.delete("/api/v1/audit-log", headers=bearer(write_key))
    _is_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_routes_outside_the_api_keep_their_json_errors(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert response.json["error"] == "not_found"


# ---------------------------------------------------------------- writes, idempotency, audit


def test_a_post_records_its_audit_entry_with_who_and_the_request_id(client, write_key):
    response = client.post("/api/v1/notes", json=NOTE, headers={**bearer(write_key), "X-Request-Id": "req-1"})
    assert response.status_code == 201, response.json
    assert response.json["price"] == {"amount": "12.50", "currency": "EUR"}
    (entry,) = client.get("/api/v1/audit-log", headers=bearer(write_key)).json["data"]
    assert entry["actor"] == "api-key:finance-bot" and entry["action"] == "note.add"
    assert entry["target_type"] == "note" and entry["target_id"] == "first" and entry["request_id"] == "req-1"
    assert entry["before"] is None and entry["after"] == {"price": "12.50", "text": "first"}


def test_the_same_idempotency_key_and_body_replay_the_stored_response(app, client, write_key):
    headers = {**bearer(write_key), "Idempotency-Key": "pay-2026-001"}
    first = client.post("/api/v1/notes", json=NOTE, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # Key order and spacing do not make another request.
    again = client.post("/api/v1/notes", data=json.dumps(dict(reversed(list(NOTE.items()))), indent=2),
                        content_type="application/json", headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert _audit_count(app) == 1


def test_the_same_idempotency_key_with_another_body_is_a_409(app, client, write_key):
    headers = {**bearer(write_key), "Idempotency-Key": "pay-2026-002"}
    assert client.post("/api/v1/notes", json=NOTE, headers=headers).status_code == 201
    body = _is_problem(client.post("/api/v1/notes", json={**NOTE, "text": "other"}, headers=headers), 409)
    assert body["type"] == "urn:billsync:problem:idempotency-key-reused"
    assert _audit_count(app) == 1


def test_without_a_key_every_post_runs_again(app, client, write_key):
    for _ in range(2):
        assert client.post("/api/v1/notes", json=NOTE, headers=bearer(write_key)).status_code == 201
    assert _audit_count(app) == 2


def test_idempotency_keys_belong_to_the_api_key_that_sent_them(app, client, write_key):
    other = new_key(app, "other-bot", "write")
    for key in (write_key, other):
        response = client.post("/api/v1/notes", json=NOTE, headers={**bearer(key), "Idempotency-Key": "k1"})
        assert "Idempotent-Replayed" not in response.headers
    assert _audit_count(app) == 2


def test_a_failed_request_stores_nothing_so_its_key_can_be_used_again(app, client, write_key):
    headers = {**bearer(write_key), "Idempotency-Key": "retry-me"}
    _is_problem(client.post("/api/v1/notes", json={"text": "x", "fail": "conflict"}, headers=headers), 409)
    _is_problem(client.post("/api/v1/notes", json={"text": ""}, headers=headers), 422)
    response = client.post("/api/v1/notes", json=NOTE, headers=headers)
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers


def test_a_malformed_idempotency_key_is_a_400(client, write_key):
    for value in ("has space", "x" * 256, "é"):
        body = _is_problem(client.post("/api/v1/notes", json=NOTE,
                                       headers={**bearer(write_key), "Idempotency-Key": value}), 400)
        assert body["errors"][0]["header"] == "Idempotency-Key"


def test_expired_idempotency_keys_are_purged(app, client, write_key):
    from connector.api.framework import API_STATE
    from connector.api.idempotency import purge

    headers = {**bearer(write_key), "Idempotency-Key": "old"}
    client.post("/api/v1/notes", json=NOTE, headers=headers)
    engine = app.extensions["billsync"].engine
    assert purge(engine, older_than=datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert purge(engine, older_than=datetime.now(UTC)) == 1
    assert app.extensions[API_STATE].idempotency_hours == 24
    assert "Idempotent-Replayed" not in client.post("/api/v1/notes", json=NOTE, headers=headers).headers


# ---------------------------------------------------------------- the audit log listing


def _seed_audit(app, count: int) -> None:
    with transaction(app.extensions["billsync"].engine) as session:
        for n in range(count):
            audit.record_action(session, at=datetime(2026, 1, 1, tzinfo=UTC), actor=f"cli:user{n % 2}",
                                action="invoice.void" if n % 3 == 0 else "payment.record",
                                target_type="invoice", target_id=str(n % 4), after={"n": n})


def test_the_audit_log_pages_newest_first_with_next_links_and_filters(app, client, read_key):
    _seed_audit(app, 7)
    seen, url = [], "/api/v1/audit-log?limit=3&actor=cli:user0"
    while url:
        page = client.get(url, headers=bearer(read_key)).json
        assert len(page["data"]) <= 3
        seen += [e["after"]["n"] for e in page["data"]]
        url = page["next"]
        if url:
            assert "actor=cli%3Auser0" in url and "limit=3" in url
    assert seen == [6, 4, 2, 0]
    voids = client.get("/api/v1/audit-log?action=invoice.void&target_id=0", headers=bearer(read_key)).json
    assert [e["after"]["n"] for e in voids["data"]] == [0] and voids["next"] is None


def test_a_tampered_or_foreign_cursor_is_a_400_naming_the_parameter(app, client, read_key):
    from connector.api.pagination import encode_cursor

    for cursor in ("abc", "eyJ4Ijoz", encode_cursor("invoices", [3]), encode_cursor("audit", ["3"]),
                   encode_cursor("audit", [2**70])):
        body = _is_problem(client.get(f"/api/v1/audit-log?cursor={cursor}", headers=bearer(read_key)), 400)
        assert body["errors"][0]["parameter"] == "cursor"
