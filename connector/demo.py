"""The whole stack on one machine, as ``scripts/run`` starts it: one supervised group.

``python -m connector.demo`` (after ``billsync db upgrade``) starts:

- **sandbox** — only in demo mode: ``billsync sandbox serve --data small`` (a local
  Salesforce org on HTTPS, kept in ``instance/sandbox/org.db``). Its connection
  variables (``SF_*``) are read from what it prints and given to the other processes;
- **web** — ``gunicorn "connector:create_app()"`` on ``HOST:PORT``: the API, the webhooks and the
  web console; in demo mode a finance and an admin console user are created on the first
  start and their passwords printed once;
- **worker** — ``billsync worker``;
- **clock** — ``billsync clock`` (pulls at once, then every PULL_INTERVAL_SECONDS; pushes
  every PUSH_INTERVAL_SECONDS; the demo makes them 30 s and 10 s unless they are set).

Demo mode is the default. It is off when ``BILLSYNC_DEMO=0`` or when ``SF_AUTH`` is set
(a real org): then no sandbox starts and the processes use the environment as it is.

In demo mode the environment of the processes is written to ``instance/demo.env``, so a
shell can run the same commands through ``scripts/billsync`` (which loads it).

In demo mode the sandbox's Outbound Messages are wired to the web process: a deal closed
in the sandbox is posted to ``/webhooks/salesforce/outbound-message/<WEBHOOK_TOKEN>`` and
the worker makes it a subscription within seconds, without waiting for the next pull
(``WEBHOOK_TOKEN`` is generated unless set; ``SF_ORG_ID`` is the sandbox's).

One demo per folder: the supervisor holds an OS lock on ``instance/billsync.pid`` (its pid
and web URL) for as long as it runs, and checks that the web port is free before starting
anything. A second ``scripts/run`` in the same folder refuses in one line and leaves the
first one and ``instance/demo.env`` alone (``--check`` runs only these checks).

Every child runs in its own session, with its output prefixed by its name. SIGINT and
SIGTERM are forwarded to all of them; when any child exits, the others are stopped and
the demo exits non-zero, saying which one it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.error import URLError
from urllib.request import Request, urlopen
from zoneinfo import ZoneInfo

INSTANCE = Path("instance")
SANDBOX_STATE = INSTANCE / "sandbox"
DEMO_ENV = INSTANCE / "demo.env"
LOCK_FILE = INSTANCE / "billsync.pid"
DEMO_INTERVALS = {"PULL_INTERVAL_SECONDS": "30", "PUSH_INTERVAL_SECONDS": "10"}
#: The demo's seller (a fictitious French company; its numbers pass their checks): its invoices are
#: issued as PDF/A-3 with Factur-X XML and attached to their Invoice__c (docs/invoices.md).
DEMO_SELLER = {
    "SELLER_NAME": "Billsync Demo SAS", "SELLER_STREET": "10 rue de la Paix", "SELLER_POSTAL_CODE": "75002",
    "SELLER_CITY": "Paris", "SELLER_COUNTRY": "FR", "SELLER_COMPANY_ID": "123456782",
    "SELLER_VAT_ID": "FR11123456782", "SELLER_IBAN": "FR7630006000011234567890189", "SELLER_BIC": "AGRIFRPP",
    "LATE_INTEREST_RATE": "12.15", "SELLER_EARLY_PAYMENT_DISCOUNT": "none",
    "SELLER_LEGAL_FORM": "SAS au capital de 10 000 EUR, RCS Paris 123 456 782",
}
SANDBOX_ENV_KEYS = ("SF_AUTH", "SF_LOGIN_URL", "SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_USERNAME",
                    "SF_PRIVATE_KEY_FILE", "SF_CA_BUNDLE", "SF_ORG_ID", "SF_API_VERSION")
STARTUP_SECONDS = 60
STOP_SECONDS = 15
ADMIN_TOKEN_LINE = re.compile(r"X-Sandbox-Admin-Token: (\S+?)\)?$")
OUTBOUND_MESSAGE_PATH = "/webhooks/salesforce/outbound-message/"
#: The deals the sandbox tells billsync about as they change (docs/webhooks.md: Id is enough,
#: billsync reads the record again).
DEMO_OUTBOUND_MESSAGES = ({"object": "Opportunity", "fields": ["Id"], "condition": "IsWon = true",
                           "name": "billsync_won_deals"},)
DEMO_WORKER_POLL_SECONDS = "2"


class DemoError(Exception):
    """The demo cannot start; the message is one line for people."""


def require_sandbox() -> None:
    """The demo's org is the local sandbox, an optional extra: fail with one line without it."""
    try:
        import sfsandbox  # noqa: F401  (only its package: the server runs in its own process)
    except ImportError as exc:
        if exc.name != "sfsandbox":
            raise
        raise DemoError("the demo needs the local Salesforce sandbox: pip install 'billsync[sandbox]' "
                        "(scripts/run installs it), or set SF_AUTH for a real org or BILLSYNC_DEMO=0") from None


def say(line: str) -> None:
    print(line, flush=True)


def is_demo(env: Mapping[str, str]) -> bool:
    """Demo mode unless BILLSYNC_DEMO=0 or the user configured Salesforce (SF_AUTH)."""
    if env.get("BILLSYNC_DEMO", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not env.get("SF_AUTH", "").strip()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _lock_holder(handle: IO[str]) -> tuple[str, str]:
    """(pid, web URL) written by the supervisor that holds the lock."""
    deadline = time.monotonic() + 2  # it writes them right after taking the lock
    while True:
        handle.seek(0)
        pid, _, url = handle.read().strip().partition(" ")
        if pid or time.monotonic() > deadline:
            return pid or "unknown", url or "its web URL unknown"
        time.sleep(0.05)


def hold_demo_lock(web_url: str, path: Path = LOCK_FILE, *, keep: bool = True) -> IO[str] | None:
    """Take the folder's lock for this supervisor (released by the OS when it exits, however it
    exits), and write its pid and web URL there. Raises ``DemoError`` while another holds it.
    ``keep=False`` only checks: the lock is released at once and nothing is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the supervisor's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, url = _lock_holder(handle)
        handle.close()
        raise DemoError(f"billsync is already running from this folder (pid {pid}, {url}); "
                        "stop it with Ctrl-C there") from None
    if not keep:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {web_url}\n")
    handle.flush()
    return handle


def check_web_port(host: str, port: str) -> None:
    if not port_is_free(host, int(port)):
        raise DemoError(f"port {port} on {host} is taken by another program (another billsync from another "
                        "folder?); stop it or set PORT")


def webhook_endpoint(host: str, port: str, token: str) -> str:
    """The URL the sandbox posts Outbound Messages to: the web process on loopback."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - reading the bind address, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{OUTBOUND_MESSAGE_PATH}{token}"


def register_outbound_messages(sandbox_url: str, admin_token: str, ca_bundle: str, endpoint: str) -> None:
    """Configure the sandbox's Outbound Messages to post to billsync (its admin API)."""
    context = ssl.create_default_context(cafile=ca_bundle)
    for action in DEMO_OUTBOUND_MESSAGES:
        request = Request(f"{sandbox_url}/_sandbox/outbound-messages", method="POST",
                          data=json.dumps({**action, "endpoint": endpoint}).encode(),
                          headers={"X-Sandbox-Admin-Token": admin_token, "Content-Type": "application/json"})
        try:
            with urlopen(request, timeout=30, context=context) as response:  # noqa: S310 - the sandbox's https URL
                response.read()
        except (URLError, OSError) as exc:
            raise DemoError(f"the sandbox did not accept billsync's Outbound Message endpoint: {exc}") from None


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    relay: threading.Thread | None = None
    lines: list[str] = field(default_factory=list)  # kept until ``keep_lines`` is cleared
    keep_lines: bool = False

    def start(self, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True)
        self.relay = threading.Thread(target=self._relay, name=f"relay-{self.name}", daemon=True)
        self.relay.start()

    def _relay(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if self.keep_lines:
                self.lines.append(line)
            say(f"{self.name:<8}| {line}")

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)  # its own session: gunicorn's workers too
            except ProcessLookupError:
                pass


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.reason = ""

    def start(self, child: Child, env: Mapping[str, str]) -> Child:
        child.start(env)
        self.children.append(child)
        return child

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping.is_set():
            self.reason = signal.Signals(signum).name
            self.stopping.set()

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.exit_code() is not None), None)

    def wait(self) -> int:
        """Until a signal or a child's exit; then stop everyone. Returns the exit code."""
        code = 0
        while not self.stopping.wait(0.2):
            dead = self.dead_child()
            if dead is not None:
                say(f"==> {dead.name} exited with code {dead.exit_code()}; stopping the others")
                code = 1
                break
        else:
            say(f"==> {self.reason} received; stopping {', '.join(c.name for c in self.children)}")
        self.stop_all()
        return code

    def stop_all(self) -> None:
        """SIGTERM the processes, then the sandbox they talk to; SIGKILL what is still up after a while."""
        sandbox = [c for c in self.children if c.name == "sandbox"]
        others = [c for c in self.children if c.name != "sandbox"]
        for group in (others, sandbox):
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            for child in group:
                if child.process is None:
                    continue
                try:
                    child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    say(f"==> {child.name} did not stop within {STOP_SECONDS} s; killing it")
                    child.signal(signal.SIGKILL)
                    child.process.wait(timeout=5)
        for child in self.children:
            if child.relay is not None:
                child.relay.join(timeout=2)
        say("==> billsync stopped")


def read_sandbox_env(sandbox: Child, supervisor: Supervisor) -> tuple[dict[str, str], str]:
    """The SF_* lines the sandbox prints once it listens, and its admin token."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not supervisor.stopping.is_set():
        found = {}
        admin_token = ""
        for line in list(sandbox.lines):
            key, sep, value = line.partition("=")
            if sep and key in SANDBOX_ENV_KEYS:
                found[key] = value
            elif match := ADMIN_TOKEN_LINE.search(line):
                admin_token = match.group(1)
        if len(found) == len(SANDBOX_ENV_KEYS) and admin_token:
            sandbox.keep_lines = False
            sandbox.lines.clear()
            return found, admin_token
        if sandbox.exit_code() is not None:
            raise DemoError(f"the sandbox exited with code {sandbox.exit_code()} before it was ready "
                            f"(is port {sandbox.argv[sandbox.argv.index('--port') + 1]} taken? set SANDBOX_PORT)")
        time.sleep(0.05)
    raise DemoError(f"the sandbox did not print its connection settings within {STARTUP_SECONDS} s")


def wait_for_web(url: str, supervisor: Supervisor) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not supervisor.stopping.is_set() and supervisor.dead_child() is None:
        try:
            with urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 - our own http URL
                if response.status == 200:
                    return True
        except (URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def write_demo_env(values: Mapping[str, str], path: Path = DEMO_ENV) -> None:
    lines = ["# Written by scripts/run (connector/demo.py) for the demo: the environment of its processes.",
             "# scripts/billsync loads it (each variable not already set) to run billsync commands against",
             "# the sandbox; a shell can also load it: set -a; . instance/demo.env; set +a"]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


#: The console users the demo creates on its first start (their passwords are printed then, once).
DEMO_USERS = (("finance@demo.billsync.local", "finance"), ("admin@demo.billsync.local", "admin"))


def create_demo_users(billsync: str, environ: Mapping[str, str]) -> list[str]:
    """Create the demo's console users (``billsync users create --generate``) and say how to sign
    in: each new user's password once; a user created by an earlier start is only named."""
    lines = []
    for email, role in DEMO_USERS:
        done = subprocess.run([billsync, "users", "create", "--email", email, "--role", role, "--generate"],
                              env=dict(environ), capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            lines.append(f"      {role:<8} {email}   password {done.stdout.strip()}")
        elif "already exists" in done.stderr:
            lines.append(f"      {role:<8} {email}   (created before: its password was printed then)")
        else:
            lines.append(f"      {role:<8} {email}   could not be created: {done.stderr.strip()[:200]}")
    return lines


def bin_path(name: str) -> str:
    """An executable of this virtualenv (billsync, gunicorn), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def banner(web_url: str, sandbox_url: str | None, env: Mapping[str, str], demo: bool,
           console_users: Sequence[str] = ()) -> list[str]:
    zone = ZoneInfo(env.get("BILLSYNC_TIMEZONE") or "UTC")  # checked by 'billsync config' before
    today = datetime.now(UTC).astimezone(zone).date().isoformat()
    month = today[:7]
    lines = ["==> billsync is running (Ctrl-C stops every process)",
             f"    console:  {web_url}/   (invoices, payments and customers for finance and admins; docs/console.md)"]
    if console_users:
        lines.append("      sign in as (shown once; 'scripts/billsync users list' lists the users):")
        lines += list(console_users)
    lines.append(f"    web:      {web_url}   (health {web_url}/healthz, readiness {web_url}/readyz)")
    lines.append(f"    buy:      {web_url}/buy   (the self-service plans and checkout; in demo mode the sandbox's "
                 "Licences plans, e.g. 12 LIC seats for 1,950.00 EUR a month; docs/self-service.md)")
    if sandbox_url:
        lines.append(f"    sandbox:  {sandbox_url}   (a local Salesforce org: 20 accounts, 30 opportunities, "
                     "12 Closed Won; CA instance/sandbox/ca.pem)")
        lines.append(f"    notify:   the sandbox posts won deals to {web_url}{OUTBOUND_MESSAGE_PATH}<WEBHOOK_TOKEN> "
                     "(Outbound Messages): in billsync within seconds")
    if env.get("BILLING_STARTS_ON"):
        lines.append(f"    billing:  from {env['BILLING_STARTS_ON']} (BILLING_STARTS_ON, the cut-over): nothing before "
                     "it is invoiced; MRR keeps each deal's true start")
    lines.append(f"    clock:    pulls now and every {env.get('PULL_INTERVAL_SECONDS', '300')} s, "
                 f"pushes every {env.get('PUSH_INTERVAL_SECONDS', '60')} s; worker drains the queues")
    wrapper = "billsync with the demo's settings" if demo else "billsync from .venv"
    lines.append(f"    try, in another shell in this folder (scripts/billsync: {wrapper}):")
    lines += ["      scripts/billsync sync status                  # customers and subscriptions billsync holds",
              f"      scripts/billsync bill-run --as-of {today}    # invoice what is due today",
              "      scripts/billsync sync status                  # after one push interval: invoices sent",
              f"      scripts/billsync metrics mrr --from {today[:4]}-01 --to {month}",
              f"      scripts/billsync reconcile --period {month}"]
    if sandbox_url:
        lines.append("      scripts/billsync sandbox query \"SELECT Name, Total__c, Status__c FROM Invoice__c\""
                     "   # the invoices in Salesforce")
    lines += [f"    api:      {web_url}/api/v1   (document {web_url}/api/v1/openapi.json; guide docs/api.md)",
              "      export KEY=$(scripts/billsync api-key create --name \"me-$(date +%s)\" --scope write)",
              f"      curl -s -H \"Authorization: Bearer $KEY\" {web_url}/api/v1/subscriptions"]
    return lines


def preflight(host: str, port: str, *, keep: bool) -> IO[str] | None:
    """No other demo runs from this folder and the web port is free; with ``keep`` the folder's
    lock is taken for this process."""
    lock = hold_demo_lock(f"http://{host}:{port}", keep=keep)
    try:
        check_web_port(host, port)
    except DemoError:
        if lock is not None:
            lock.close()
        raise
    return lock


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)
    environ["PYTHONUNBUFFERED"] = "1"
    demo = is_demo(environ)
    host = environ.get("HOST", "127.0.0.1")
    port = environ.get("PORT", "5000")
    try:
        if demo:
            require_sandbox()
        lock = preflight(host, port, keep=args != ["--check"])
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    if args == ["--check"]:
        return 0
    supervisor = Supervisor()
    signal.signal(signal.SIGINT, supervisor.on_signal)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    billsync = bin_path("billsync")
    sandbox_url = None
    admin_token = ""
    try:
        if demo:
            sandbox_port = int(environ.get("SANDBOX_PORT", "8443"))
            if "SANDBOX_PORT" not in environ and not port_is_free("127.0.0.1", sandbox_port):
                say(f"==> port {sandbox_port} is taken; the sandbox takes a free port (set SANDBOX_PORT to choose)")
                sandbox_port = 0
            SANDBOX_STATE.mkdir(parents=True, exist_ok=True)
            say("==> demo mode: starting the local Salesforce sandbox (BILLSYNC_DEMO=0 or SF_AUTH turns it off)")
            sandbox = Child("sandbox", [billsync, "sandbox", "serve", "--data", "small", "--port", str(sandbox_port),
                                        "--state-dir", str(SANDBOX_STATE), "--db", str(SANDBOX_STATE / "org.db")],
                            keep_lines=True)
            supervisor.start(sandbox, environ)
            sf_env, admin_token = read_sandbox_env(sandbox, supervisor)
            sandbox_url = sf_env["SF_LOGIN_URL"]
            demo_env = {**sf_env, **{k: environ.get(k) or v for k, v in DEMO_INTERVALS.items()}}
            if not any(environ.get(k) for k in DEMO_SELLER):  # an admin's own seller settings win, all of them
                demo_env.update(DEMO_SELLER)
            # The web process accepts the sandbox's Outbound Messages (SF_ORG_ID is the sandbox's).
            demo_env["WEBHOOK_TOKEN"] = environ.get("WEBHOOK_TOKEN") or secrets.token_urlsafe(32)
            if environ.get("DATABASE_URL"):
                demo_env["DATABASE_URL"] = environ["DATABASE_URL"]
            # The cut-over: the demo bills from the first of this month, not every deal from its start.
            demo_env["BILLING_STARTS_ON"] = environ.get("BILLING_STARTS_ON") or datetime.now(UTC).astimezone(
                ZoneInfo(environ.get("BILLSYNC_TIMEZONE") or "UTC")).date().replace(day=1).isoformat()
            write_demo_env(demo_env)
            environ.update(demo_env)
            say(f"==> sandbox ready at {sandbox_url}; its settings are in {DEMO_ENV}")
        elif not environ.get("SF_AUTH", "").strip() or environ.get("SF_AUTH", "").strip() == "none":
            say("==> Salesforce is not configured (SF_AUTH): billsync runs unconnected; see README 'Connect a real org'")
        else:
            say(f"==> connecting to Salesforce at {environ.get('SF_LOGIN_URL', 'https://login.salesforce.com')} "
                f"(SF_AUTH={environ['SF_AUTH']})")
        if supervisor.stopping.is_set():
            supervisor.stop_all()
            return 0
        web_url = f"http://{host}:{port}"
        supervisor.start(Child("web", [bin_path("gunicorn"), "--config", "gunicorn.conf.py",
                                       "--bind", f"{host}:{port}", "--workers",
                                       environ.get("WEB_CONCURRENCY", "2"),
                                       # load the app before listening: no request waits on a booting worker
                                       "--preload", "connector:create_app()"]), environ)
        # The worker and the clock start once the web answers: on a small machine their start-up
        # (and the first pull) would otherwise slow the web's.
        if wait_for_web(web_url, supervisor):
            worker = [billsync, "worker"]
            if sandbox_url:
                register_outbound_messages(sandbox_url, admin_token, environ["SF_CA_BUNDLE"],
                                           webhook_endpoint(host, port, environ["WEBHOOK_TOKEN"]))
                worker += ["--poll-seconds", DEMO_WORKER_POLL_SECONDS]  # a notified deal is in within seconds
            supervisor.start(Child("worker", worker), environ)
            supervisor.start(Child("clock", [billsync, "clock"]), environ)
            console_users = create_demo_users(billsync, environ) if demo else []
            for line in banner(web_url, sandbox_url, environ, demo, console_users):
                say(line)
        elif not supervisor.stopping.is_set() and supervisor.dead_child() is None:
            raise DemoError(f"the web process did not answer on {web_url}/healthz within {STARTUP_SECONDS} s")
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        supervisor.stop_all()
        return 1
    try:
        return supervisor.wait()
    finally:
        if lock is not None:
            lock.close()  # after every child stopped: the next demo may start


if __name__ == "__main__":
    raise SystemExit(main())
