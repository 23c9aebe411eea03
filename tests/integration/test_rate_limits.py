"""Rate limits of the public pages: a limited route answers 429 with a Retry-After once its
budget is spent, counted per client address, in memory or shared through Redis."""

from __future__ import annotations

import socket
import uuid

import pytest

from connector import create_app
from connector.limits import limiter
from connector.settings import load_settings


def _app(database_url: str, storage: str, path: str):
    app = create_app(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                                    "RATE_LIMIT_STORAGE_URI": storage}))

    @limiter.limit("2 per minute")
    def limited() -> str:
        return "ok"

    app.add_url_rule(path, endpoint=f"limited-{path}", view_func=limited)
    return app


def test_a_limited_route_refuses_the_third_request_of_the_minute(database_url):
    client = _app(database_url, "memory://", "/try-limits").test_client()
    assert [client.get("/try-limits").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/try-limits")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    # Another address has its own budget.
    assert client.get("/try-limits", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 200


def _redis_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_answers(), reason="no Redis at 127.0.0.1:6379")
def test_two_web_processes_share_the_counts_through_redis(database_url):
    path = f"/try-limits-{uuid.uuid4().hex[:8]}"  # a fresh key: counts of earlier runs do not apply
    first = _app(database_url, "redis://127.0.0.1:6379/15", path).test_client()
    assert [first.get(path).status_code for _ in range(2)] == [200, 200]
    _app(database_url, "memory://", f"{path}-elsewhere")  # a process counting in memory starts from zero
    second = _app(database_url, "redis://127.0.0.1:6379/15", path).test_client()  # another web process
    assert second.get(path).status_code == 429


def test_behind_a_proxy_each_forwarded_client_has_its_own_budget(database_url):
    def app(hops: int):
        made = create_app(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", "PROXY_HOPS": str(hops)}))

        @limiter.limit("1 per minute")
        def limited() -> str:
            return "ok"

        made.add_url_rule("/try-forwarded", endpoint="limited-forwarded", view_func=limited)
        return made.test_client()

    def get(client, forwarded_for: str) -> int:
        return client.get("/try-forwarded", headers={"X-Forwarded-For": forwarded_for},
                          environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code  # the load balancer

    behind = app(1)
    assert [get(behind, "203.0.113.5"), get(behind, "203.0.113.6")] == [200, 200]  # two buyers
    assert get(behind, "203.0.113.5") == 429
    direct = app(0)  # no proxy: the header is the client's own claim, and is ignored
    assert [get(direct, "198.51.100.1"), get(direct, "198.51.100.2")] == [200, 429]
