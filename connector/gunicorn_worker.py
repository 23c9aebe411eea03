"""The web process's gunicorn worker: threaded, and slow clients never hold a thread.

gunicorn's threaded worker (``gthread``) lends a connection one of its threads as soon
as the connection has a byte to read, and that thread then blocks until the request
line, the headers and the body have all arrived; gunicorn bounds none of that. A
client trickling its headers or body keeps a thread as long as it likes, and as many
such clients as there are threads leave none for ``/healthz`` or the webhooks.

``ThreadWorker`` changes two things:

- **Requests are read by the poller, not by a thread.** A connection's bytes are
  gathered by the worker's event loop, without blocking, until its headers and its
  whole body (``Content-Length`` or chunked, up to ``WEBHOOK_MAX_BODY_BYTES``) have
  arrived; only then does a thread parse and serve it. A request not received in full
  within ``WEB_READ_TIMEOUT_SECONDS`` of the connection becoming ready for it is
  dropped without an answer (nothing has been read by billsync yet).
- **What a thread still reads from the socket has the same deadline**: what follows a
  body larger than the limit (refused with 413 unread, then drained by gunicorn), TLS
  served by gunicorn itself. A watchdog shuts the reading side of a connection still
  being served after ``WEB_READ_TIMEOUT_SECONDS``, so a blocked read returns at once
  (a webhook then answers 408, ``connector.webhooks.routes``).

docs/operations.md (*Timeouts*) lists every bound; ``gunicorn.conf.py`` selects this worker.
"""

from __future__ import annotations

import re
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn.workers import gthread

from connector.settings import load_settings

#: How often the watchdog looks for connections past their deadline, at most.
CHECK_EVERY_SECONDS = 0.25
_RECV_BYTES = 64 * 1024
_HEADERS_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,19})[ \t]*(?=\r\n)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r]*chunked", re.IGNORECASE)
_MAX_CHUNK_LINE = 1024


def request_is_complete(data: bytes, max_body: int, max_head: int) -> bool:
    """Whether ``data`` holds a whole request a thread can serve without waiting for
    the client: its headers and its body (``Content-Length`` or chunked). A body
    larger than ``max_body`` is not waited for (the app refuses it with 413 unread),
    nor are headers longer than ``max_head`` (gunicorn refuses them with 400)."""
    end = data.find(_HEADERS_END)
    if end < 0:
        return len(data) > max_head
    head, body = data[:end + 2], data[end + len(_HEADERS_END):]
    if _CHUNKED.search(head):
        return _chunked_body_is_complete(body, max_body)
    length = _CONTENT_LENGTH.search(head)
    if not length or int(length.group(1)) > max_body:
        return True
    return len(body) >= int(length.group(1))


def _chunked_body_is_complete(body: bytes, max_body: int) -> bool:
    """Whether a chunked body has arrived up to its last chunk and trailers, or is
    malformed or larger than ``max_body`` (then the thread's reader refuses it)."""
    position = total = 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return len(body) - position > _MAX_CHUNK_LINE
        try:
            size = int(body[position:line_end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return True
        if size == 0:
            return body.find(_HEADERS_END, line_end) >= 0
        total += size
        if total > max_body:
            return True
        position = line_end + 2 + size + 2
        if position > len(body):
            return False


class ReadDeadlines:
    """The connections being served by a thread, by file descriptor, with their deadlines."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}

    def arm(self, fd: int) -> None:
        with self._lock:
            self._deadlines[fd] = time.monotonic() + self.seconds

    def disarm(self, fd: int) -> None:
        with self._lock:
            self._deadlines.pop(fd, None)

    def expire(self, now: float) -> int:
        """Shut the reading side of every connection past its deadline; how many."""
        with self._lock:  # held throughout: a disarmed descriptor is never touched (nor reused)
            late = [fd for fd, deadline in self._deadlines.items() if deadline <= now]
            for fd in late:
                del self._deadlines[fd]
                _shut_reading(fd)
        return len(late)

    def watch(self, stop: threading.Event) -> None:
        interval = min(CHECK_EVERY_SECONDS, self.seconds / 4)
        while not stop.wait(interval):
            self.expire(time.monotonic())


def _shut_reading(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RD)  # a blocked recv() on it returns b"" at once
    except OSError:
        pass  # already closed by the client
    finally:
        sock.detach()  # the connection still belongs to gunicorn


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's ``gthread`` worker; requests are gathered by the poller, reads have a deadline."""

    def run(self) -> None:
        settings = load_settings()
        self.read_seconds = settings.web_read_timeout_seconds
        self.max_buffered_body = settings.webhook_max_body_bytes
        self.max_head = (self.cfg.limit_request_line + 2
                         + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2) + 2)
        self.gathering: dict[object, float] = {}  # connection -> deadline (event loop only)
        self.read_deadlines = ReadDeadlines(self.read_seconds)
        stop = threading.Event()
        watchdog = threading.Thread(target=self.read_deadlines.watch, args=(stop,), name="read-deadlines",
                                    daemon=True)
        watchdog.start()
        try:
            super().run()
        finally:
            stop.set()

    # ---------------------------------------------------------------- in the event loop

    def enqueue_req(self, conn) -> None:
        """Every request passes here on its way to a thread: gather it first."""
        if self.cfg.is_ssl or (conn.parser is not None and conn.parser.unreader.buf.getvalue()):
            super().enqueue_req(conn)  # TLS records, or bytes gunicorn already holds
            return
        conn.gathered = None
        conn.received = bytearray()
        conn.sock.setblocking(False)
        self.gathering[conn] = time.monotonic() + self.read_seconds
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending a whole request
            self._drop(conn)
            return
        conn.received += data
        if request_is_complete(conn.received, self.max_buffered_body, self.max_head):
            self._stop_gathering(conn)
            conn.gathered = bytes(conn.received)
            conn.received = None
            super().enqueue_req(conn)

    def _stop_gathering(self, conn) -> None:
        del self.gathering[conn]
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _drop(self, conn) -> None:
        self._stop_gathering(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        """gunicorn's sweep of idle connections (at least once a second), plus the
        requests not received in full in time: closed without an answer."""
        super().murder_keepalived(force)
        now = time.monotonic()
        for conn in [c for c, deadline in self.gathering.items() if force or deadline <= now]:
            self._drop(conn)

    # ---------------------------------------------------------------- in a thread

    def handle(self, conn):
        gathered = getattr(conn, "gathered", None)
        if gathered is not None:
            conn.gathered = None
            conn.data_ready = True
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(gathered)
        fd = conn.sock.fileno()
        self.read_deadlines.arm(fd)
        try:
            return super().handle(conn)
        finally:
            self.read_deadlines.disarm(fd)
