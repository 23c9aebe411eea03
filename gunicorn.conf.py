"""gunicorn's settings for the web process: ``gunicorn --config gunicorn.conf.py "connector:create_app()"``
(the Procfile and scripts/run). docs/operations.md (*Timeouts*) says what each bound does
and what a client sees when it fires; command-line flags win over this file.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT') or '5000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or "2")
# Threaded (gthread) workers, each request read within WEB_READ_TIMEOUT_SECONDS of its first
# byte: slow clients cannot take every thread (connector/gunicorn_worker.py).
worker_class = "connector.gunicorn_worker.ThreadWorker"
threads = int(os.environ.get("WEB_THREADS") or "4")
# Open connections per worker; each may hold up to WEBHOOK_MAX_BODY_BYTES while its request
# is gathered, so this also bounds that memory (200 MiB per worker at the 1 MiB default).
worker_connections = 200
# A worker that stops answering its arbiter for this long is killed and replaced. Requests
# themselves are bounded well below it (database timeouts, the read deadline).
timeout = 30
graceful_timeout = 20
# An idle kept-alive connection, or a new one that has sent nothing, is closed after this.
keepalive = 2
# Request line, header count and header size: larger requests get 400 before any app code runs.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
