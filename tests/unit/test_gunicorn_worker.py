"""When the web worker's event loop holds a whole request, ready for a thread to serve."""

from __future__ import annotations

import pytest

from connector.gunicorn_worker import request_is_complete

HEAD = b"POST /webhooks/salesforce/cdc HTTP/1.1\r\nHost: billsync\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
MAX_BODY, MAX_HEAD = 100, 1000


@pytest.mark.parametrize(("data", "complete"), [
    (HEAD, False),  # headers still coming
    (HEAD + b"\r\n", True),  # no body
    (HEAD + b"Content-Length: 5\r\n\r\nabc", False),
    (HEAD + b"content-length:5\r\n\r\nabcde", True),
    (HEAD + b"Content-Length: 101\r\n\r\n", True),  # over the limit: refused unread, not waited for
    (CHUNKED + b"3\r\nabc\r\n", False),
    (CHUNKED + b"3;ext=1\r\nabc\r\n0\r\n\r\n", True),
    (CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n", False),
    (CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", True),
    (CHUNKED + b"65\r\n", True),  # 101 bytes announced: over the limit
    (CHUNKED + b"zz\r\n", True),  # malformed: gunicorn answers 400
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, True),  # headers too long: gunicorn answers 400
])
def test_a_request_is_complete_once_its_headers_and_body_are_in(data, complete):
    assert request_is_complete(data, MAX_BODY, MAX_HEAD) is complete
