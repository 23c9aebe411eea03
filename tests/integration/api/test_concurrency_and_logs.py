"""Over real HTTP: 100 identical POSTs sent at once with one Idempotency-Key make one change,
and API keys never reach the logs."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import requests

from billing_engine.use_cases import audit
from connector.database import transaction
from tests.support.api import bearer, live_server

NOTE = {"text": "concurrent", "price": {"amount": "99.99", "currency": "USD"}}


def test_100_concurrent_identical_posts_with_one_key_record_one_change(app, write_key):
    headers = {**bearer(write_key), "Idempotency-Key": "burst-1"}
    with live_server(app) as base, requests.Session() as http:
        http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=100))

        def send(_):
            return http.post(f"{base}/api/v1/notes", json=NOTE, headers=headers, timeout=60)

        with ThreadPoolExecutor(max_workers=100) as pool:
            responses = list(pool.map(send, range(100)))
        other = http.post(f"{base}/api/v1/notes", json={**NOTE, "text": "other"}, headers=headers, timeout=60)
    assert sorted({r.status_code for r in responses}) == [201], [r.text for r in responses if r.status_code != 201]
    assert len({r.text for r in responses}) == 1  # every answer is the one stored response
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 99
    assert other.status_code == 409 and other.headers["Content-Type"] == "application/problem+json"
    with transaction(app.extensions["billsync"].engine) as session:
        assert [e.action for e in audit.list_actions(session, limit=1000)] == ["note.add"]


def test_api_keys_never_reach_the_logs(app, write_key, read_key, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    with live_server(app) as base:
        requests.get(f"{base}/api/v1/audit-log", headers=bearer(read_key), timeout=10)
        requests.post(f"{base}/api/v1/notes", json=NOTE, headers=bearer(read_key), timeout=10)  # 403
        requests.post(f"{base}/api/v1/notes", json={"text": "x", "fail": "unaudited"},  # 500, logged
                      headers=bearer(write_key), timeout=10)
        requests.get(f"{base}/api/v1/audit-log?limit=abc", headers=bearer(write_key), timeout=10)
        revoked = write_key[:-4] + "AAAA"
        requests.get(f"{base}/api/v1/audit-log", headers=bearer(revoked), timeout=10)
    text = "\n".join(r.getMessage() + repr(getattr(r, "fields", {})) + (r.exc_text or "") for r in caplog.records)
    assert "GET /api/v1/audit-log 401" in text and "unhandled error" in text
    for key in (write_key, read_key, revoked):
        assert key not in text and key[12:] not in text
