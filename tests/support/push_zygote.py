"""A pre-imported parent that forks push workers on demand (for the SIGKILL test; no tests here).

Importing billsync takes seconds; forking a process that has already imported it takes
milliseconds, so ten kill trials stay fast. The parent is single-threaded and opens no
connection, so forking it is safe; each child builds its own services from the
environment (exactly as ``billsync worker`` does) and runs ``push_outbox`` once.

Protocol on stdin/stdout, one line each: ``go`` → ``pid <n>``, then ``exit <status>``
when that child ends (``-9`` when it was killed with SIGKILL).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta


def _child() -> None:
    from connector.settings import load_settings
    from connector.sync.push import push_outbox
    from connector.wiring import build_services

    services = build_services(load_settings())
    push_outbox(services, worker_id=f"kill-{os.getpid()}", batch_size=int(os.environ.get("PUSH_BATCH", "150")),
                lease=timedelta(0))
    services.engine.dispose()


def main() -> None:
    import connector.settings  # noqa: F401  (the expensive imports, once, before any fork)
    import connector.sync.push  # noqa: F401
    import connector.wiring  # noqa: F401

    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child()
            except BaseException:
                code = 1
            os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}", flush=True)


if __name__ == "__main__":
    main()
