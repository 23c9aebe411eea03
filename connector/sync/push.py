"""The push (engine → Salesforce): drain the outbox with upserts by external id.

``push_outbox`` claims due outbox rows (``outbox_claims``), reads the **current**
engine state they are about (``records``), turns it into Salesforce records through
the outbound mappings, and sends them through sObject Collections subrequests packed
into ``composite`` calls:

- records are grouped per (object, key field): upserts by External ID go to
  ``PATCH composite/sobjects/{Object}/{ExtField}``, updates by Id (the account
  summary) to ``PATCH composite/sobjects``; at most 200 records per collection;
- at most ``COLLECTIONS_PER_COMPOSITE`` (5) collection subrequests per composite call:
  Salesforce allows 25 subrequests of which at most 5 may be sObject Collections or
  queries (Salesforce REST API Developer Guide, "Composite"); 60,000 records are 300 collections in 60 calls;
- parents go first, and a composite never holds a child collection after its parents'
  in the same call (Invoice_Line__c, Payment__c and Credit_Note__c reference Invoice__c by
  external id, Refund__c its Payment__c, Credit_Note_Line__c its Credit_Note__c and the
  Invoice_Line__c it credits; with ``collateSubrequests`` Salesforce may reorder "unrelated"
  subrequests), so children are only sent once their parents' call has returned;
- ``allOrNone`` is false: each record succeeds or fails alone.

A ``credit_note.issued`` row writes the credit note, its lines and the invoice it credits (its
credited amount, balance and payment status changed); a ``payment.refunded`` row writes the
refund, its payment and the invoices the payment paid.
A ``document.stored`` row attaches an invoice's PDF to its ``Invoice__c`` (``connector.documents.push``),
after the other rows claimed with it; the customer portal's ``subscription.self_service_changed``,
``customer.sales_requested`` and ``customer.billing_details_changed`` rows write their deal, task or
Account fields the same way (``connector.portal.salesforce``).

A ``subscription.sold_online`` row (an order placed on the self-service checkout) writes its
Account, its Closed Won Opportunity and the Opportunity's lines (``connector.sync.deals``), before
the other rows claimed with it.

A ``customer.summary_changed`` row writes the Account summary and, with it, the subscription
link (status and end date) of each of the customer's deals: one event refreshes both, so a
cancellation recorded or taking effect shows on the Account and on its Opportunities together.

Subscription records (``Billsync_Subscription__c`` and its items, upserted by external id): a
``subscription.*`` row writes its subscription's record; a ``customer.summary_changed`` row
rewrites the records of the customer's deals too, so status, next invoice date and MRR follow
bill runs, cancellations and renewals.

Per-record outcome → per outbox row: done (with the Salesforce id of its main record; the ids of
every invoice, payment, credit note and refund written are kept on the engine's records),
transient (UNABLE_TO_LOCK_ROW: resent up to ``TRANSIENT_ROUNDS`` times in the same
push, then retried soon), failed (attempts + 1, backoff, dead letter after
``queue.MAX_ATTEMPTS``). Whole-call failures: a limit stop releases the rows untouched until
the pause ends and stops the push; a 5xx/timeout that survived the client's retries
releases them with a short delay and stops; an auth failure releases them and raises.

Before the first send, ``binding.check_push_target`` makes sure this installation may write
to the org (the org it is bound to, holding no other installation's records unless adopted)
and moves records pushed under the old keys to this installation's keys; a refusal releases
the claimed rows untouched and raises ``OrgBindingError``: nothing is sent.

After the outbox, the push writes the review marks (``connector.sync.review_marks``): the
review flag and its reason on the Opportunities and Accounts whose open reviews changed.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from billing_engine import outbox as ob
from connector.queue import DEFAULT_LEASE, TRANSIENT_DELAY, Outcome
from connector.salesforce.errors import (
    RETRYABLE_CODES,
    RecordResult,
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceRetryableError,
)
from connector.sync import records as rec
from connector.sync.binding import check_push_target
from connector.sync.installation import Keys
from connector.sync.outbox_claims import ClaimedRow, Settlement, claim_rows, settle_rows
from mappings import InvalidRecordError, MappingsError, SpecError, load_specs

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.push")

COLLECTION_SIZE = 200
COLLECTIONS_PER_COMPOSITE = 5
TRANSIENT_ROUNDS = 2
DEFAULT_BATCH_SIZE = 1000
DEFAULT_CONCURRENCY = 2
#: Sources in the order Salesforce must receive them (parents first).
SOURCE_ORDER = ("invoice", "invoice_line", "payment", "refund", "credit_note", "credit_note_line", "account_summary",
                "subscription_link", "subscription", "subscription_item")
#: A collection of these sources references records of the listed sources (by external id).
DEPENDS_ON = {"invoice_line": frozenset({"invoice"}), "payment": frozenset({"invoice"}),
              "refund": frozenset({"payment"}), "credit_note": frozenset({"invoice"}),
              "credit_note_line": frozenset({"credit_note", "invoice_line"}),
              "subscription_item": frozenset({"subscription"})}
#: The external-id fields of the records whose Salesforce ids the engine keeps, and their kinds.
PUSHED_KEYS = {"Billsync_Invoice_Id__c": "invoice", "Billsync_Payment_Id__c": "payment",
               "Billsync_Credit_Note_Id__c": "credit_note", "Billsync_Refund_Id__c": "refund"}

INVOICE_TOPICS = frozenset({ob.INVOICE_FINALIZED, ob.INVOICE_STATUS_CHANGED})
COLLECTION_TOPICS = frozenset({ob.INVOICE_OVERDUE, ob.INVOICE_REMINDED})
PAYMENT_TOPICS = frozenset({ob.PAYMENT_RECORDED, ob.PAYMENT_REFUNDED})
SUMMARY_TOPICS = frozenset({ob.CUSTOMER_SUMMARY_CHANGED, ob.LEGACY_CUSTOMER_MRR_CHANGED})
SUBSCRIPTION_TOPICS = frozenset({ob.SUBSCRIPTION_CREATED, ob.SUBSCRIPTION_CHANGED})
#: What customers did in the customer portal: deals and tasks (``connector.portal.salesforce``).
PORTAL_TOPICS = frozenset({ob.SUBSCRIPTION_SELF_SERVICE_CHANGED, ob.CUSTOMER_SALES_REQUESTED,
                           ob.CUSTOMER_BILLING_DETAILS_CHANGED})

Need = tuple[str, Any]  # ("invoice", 42), ("invoice_lines", 42), ("payment", 7), ("credit_note", 3),
#                         ("credit_note_lines", 3), ("refund", 2), ("account_summary", "cus_1"), ...
Identity = tuple[str, str, str]  # (object, key field, key value): one Salesforce record


def default_worker_id() -> str:
    return f"{os.environ.get('DYNO') or socket.gethostname()}:{os.getpid()}"


@dataclass
class PushReport:
    started_at: datetime
    finished_at: datetime | None = None
    batches: int = 0
    claimed: int = 0
    done: int = 0
    retrying: int = 0  # failed or transient, back to pending with a delay
    dead: int = 0
    released: int = 0  # put back untouched (the push stopped before sending them)
    superseded: int = 0
    records_sent: int = 0
    records_failed: int = 0
    composite_calls: int = 0
    paused_until: datetime | None = None
    stop_reason: str | None = None  # why the push stopped early (limit, Salesforce unavailable)
    check_calls: int = 0  # API calls spent checking the org (and re-keying old records) before sending
    rekeyed: str | None = None  # what re-keying did, when it ran
    previews_written: int = 0  # open deals' previews (connector.sync.preview)
    previews_failed: int = 0
    review_marks: Any = None  # review_marks.MarksReport: the review flags written on records after the outbox

    @property
    def records_per_call(self) -> float:
        return self.records_sent / self.composite_calls if self.composite_calls else 0.0

    def lines(self) -> list[str]:
        out = [f"pushed {self.claimed} outbox rows in {self.batches} batches: {self.done} done, "
               f"{self.retrying} to retry, {self.dead} dead, {self.released} released"
               + (f", {self.superseded} superseded" if self.superseded else ""),
               f"{self.records_sent} records in {self.composite_calls} composite calls "
               f"({self.records_per_call:.0f} records/call), {self.records_failed} record failures"]
        if self.rekeyed:
            out.insert(0, self.rekeyed)
        if self.paused_until:
            out.append(f"paused until {self.paused_until.isoformat(timespec='seconds')}: {self.stop_reason}")
        elif self.stop_reason:
            out.append(f"stopped: {self.stop_reason}")
        if self.retrying or self.dead:
            out.append("see 'billsync sync status' for the errors; 'billsync sync retry' re-queues dead letters")
        if self.previews_written or self.previews_failed:
            out.append(f"{self.previews_written} deal previews written, {self.previews_failed} failed (retried later)")
        if self.review_marks is not None and self.review_marks.claimed:
            out.append(self.review_marks.line())
        return out


class _SendStopped(Exception):
    def __init__(self, error: SalesforceError):
        super().__init__(str(error))
        self.error = error


@dataclass
class _Batch:
    rows: list[ClaimedRow]
    now: datetime
    keys: Keys | None = None
    needs: dict[int, list[Need]] = field(default_factory=dict)  # row id → its needs, main one first
    row_errors: dict[int, str] = field(default_factory=dict)
    row_notes: dict[int, str] = field(default_factory=dict)
    need_identities: dict[Need, list[Identity]] = field(default_factory=dict)
    need_errors: dict[Need, str] = field(default_factory=dict)
    need_notes: dict[Need, str] = field(default_factory=dict)
    records: dict[Identity, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # → (source, sf record)
    results: dict[Identity, str | None] = field(default_factory=dict)  # → Salesforce id when it succeeded
    errors: dict[Identity, tuple[str, bool]] = field(default_factory=dict)  # → (message, transient)


# ---------------------------------------------------------------- the use case


def push_outbox(services: Services, *, worker_id: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                now: datetime | None = None, lease: timedelta = DEFAULT_LEASE, max_batches: int | None = None,
                should_stop: Callable[[], bool] | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> PushReport:
    """Push every due outbox row to Salesforce, ``batch_size`` rows per claim, until none is due.

    ``now`` (tz-aware) pins the clock (tests); by default each batch reads the time.
    Stops early when Salesforce pauses us (``report.paused_until``) or stays unavailable
    (``report.stop_reason``), after ``max_batches``, or when ``should_stop()`` is true.
    Raises ``SalesforceAuthError``/``SalesforceNotConfiguredError`` (rows released first).

    Pipelined: while one batch is sent and settled (by a sender thread, FIFO, so a
    record read later is always sent later), the next one is claimed and built. Within
    a batch, independent composite calls go out on up to ``concurrency`` connections
    (the process's client plus clients of its own); children wait for their parents.
    """
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ValueError("now must be timezone-aware")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    worker_id = worker_id or default_worker_id()
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    report = PushReport(started_at=clock())
    client = services.salesforce()
    specs = load_specs(services.settings.mappings_dir)
    if specs.problems:  # never mark a change delivered that a broken file could not map
        raise SpecError(specs.problems)
    timezone = ZoneInfo(services.settings.billsync_timezone)
    sender = _Sender(services, client, concurrency, worker_id, report)
    keys: Keys | None = None
    try:
        while max_batches is None or report.batches < max_batches:
            if sender.stopped.is_set() or (should_stop is not None and should_stop()):
                break
            batch_now = clock()
            rows = claim_rows(services.engine, worker_id=worker_id, limit=batch_size, now=batch_now, lease=lease)
            if not rows:
                break
            report.batches += 1
            report.claimed += len(rows)
            if keys is None:  # before the first send: may this installation write to this org?
                try:
                    checked = check_push_target(services, client, now=batch_now)
                except (SalesforceLimitError, SalesforceRetryableError) as exc:
                    _release(services.engine, rows, worker_id, batch_now)
                    sender.report_stop(exc)
                    break
                except BaseException:
                    _release(services.engine, rows, worker_id, batch_now)
                    raise
                keys, report.check_calls = checked.keys, checked.calls
                report.rekeyed = checked.rekey.line() if checked.rekey else None
            # The invoices' PDFs go after the records claimed with them (their invoices first); so do the
            # deals and tasks of what customers did in the portal (their Accounts' summaries first).
            documents = [r for r in rows if r.topic == ob.DOCUMENT_STORED]
            # Deals sold online go first: their Account and Opportunity, then what refers to them.
            deals = [r for r in rows if r.topic == ob.SUBSCRIPTION_SOLD_ONLINE]
            portal = [r for r in rows if r.topic in PORTAL_TOPICS]
            batch = _Batch([r for r in rows if r.topic not in (ob.DOCUMENT_STORED, ob.SUBSCRIPTION_SOLD_ONLINE)
                            and r.topic not in PORTAL_TOPICS],
                           now=batch_now)
            batch.keys = keys
            try:
                _plan(batch)
                with Session(services.engine) as session:
                    _build(batch, session, specs, batch_now.astimezone(timezone).date(), keys)
                    session.rollback()
            except BaseException:
                _release(services.engine, rows, worker_id, batch_now)
                raise
            if deals:
                sender.submit(_Deals(deals, batch_now))
            if batch.rows:
                sender.submit(batch)
            if documents:
                sender.submit(_Documents(documents, batch_now, specs, keys))
            if portal:
                sender.submit(_Documents(portal, batch_now, specs, keys, portal=True))
    finally:
        sender.close()
    if sender.stop is None and sender.failure is None and not (should_stop is not None and should_stop()):
        from connector.sync.preview import push_deal_previews

        previews = push_deal_previews(services, client, specs, clock())
        report.previews_written, report.previews_failed = previews.written, previews.failed
    report.finished_at = clock() if now is None else now
    if isinstance(sender.stop, SalesforceAuthError):
        raise sender.stop
    if sender.failure is not None:
        raise sender.failure
    if sender.stop is None and not (should_stop is not None and should_stop()):
        report.review_marks = _push_review_marks(services, client, specs, worker_id, now)
    if report.claimed:
        from connector.sync.status import PUSH, record_job_run

        record_job_run(services.engine, PUSH, finished_at=report.finished_at or clock(),
                       summary="; ".join(report.lines()[:2]))
    return report


def _push_review_marks(services: Services, client: Any, specs: Any, worker_id: str,
                       now: datetime | None) -> Any:
    """The review flags and reasons shown on Opportunities and Accounts (``connector.sync.review_marks``)."""
    from connector.sync.review_marks import push_review_marks

    return push_review_marks(services, client=client, specs=specs, worker_id=worker_id, now=now)


def _release(engine: Any, rows: list[ClaimedRow], worker_id: str, now: datetime) -> None:
    settle_rows(engine, [Settlement(r.id, Outcome.RELEASE) for r in rows], worker_id=worker_id, now=now,
                claimed={r.id: r for r in rows})


@dataclass
class _Documents:
    """Claimed ``document.stored`` rows: PDFs to attach (``connector.documents.push``); with ``portal``,
    the portal's rows: deals and tasks to write (``connector.portal.salesforce``)."""

    rows: list[ClaimedRow]
    now: datetime
    specs: Any
    keys: Keys
    portal: bool = False  # the portal's deals and tasks (``connector.portal.salesforce``) instead


@dataclass
class _Deals:
    """Claimed ``subscription.sold_online`` rows: Accounts, Opportunities and lines to write
    (``connector.sync.deals``)."""

    rows: list[ClaimedRow]
    now: datetime


class _Sender:
    """Sends and settles built batches in order, on its own thread."""

    def __init__(self, services: Services, client: Any, concurrency: int, worker_id: str, report: PushReport):
        self.services, self.worker_id, self.report = services, worker_id, report
        self.clients = [client]
        self.concurrency = concurrency
        self.queue: queue.Queue[_Batch | _Documents | _Deals | None] = queue.Queue(maxsize=1)
        self.stopped = threading.Event()
        self.stop: SalesforceError | None = None
        self.failure: BaseException | None = None
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
        self.thread = threading.Thread(target=self._run, name="billsync-push-sender", daemon=True)
        self.thread.start()

    def submit(self, batch: _Batch | _Documents | _Deals) -> None:
        self.queue.put(batch)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            try:
                if isinstance(batch, _Documents):
                    stop = self._deliver_documents(batch)
                elif isinstance(batch, _Deals):
                    stop = self._deliver_deals(batch)
                elif self.stopped.is_set():  # the push stopped: give the batch back untouched
                    self._settle(batch, None, release_all=True)
                    continue
                else:
                    stop = self._deliver(batch)
            except BaseException as exc:  # a bug or the database: release, stop, raise in the caller
                self.failure = self.failure or exc
                self.stopped.set()
                try:
                    _release(self.services.engine, batch.rows, self.worker_id, batch.now)
                except BaseException:  # the lease makes them claimable again anyway
                    log.exception("push: cannot release rows %s..%s", batch.rows[0].id, batch.rows[-1].id)
                continue
            if stop is not None:
                self.stop = stop
                self.stopped.set()
                self.report_stop(stop)

    def _deliver(self, batch: _Batch) -> SalesforceError | None:
        stop: SalesforceError | None = None
        try:
            self._send(batch, list(batch.records))
            for _ in range(TRANSIENT_ROUNDS):
                again = _transient_identities(batch)
                if not again:
                    break
                self._send(batch, again)
        except _SendStopped as stopped:
            stop = stopped.error
        self._settle(batch, stop)
        return stop

    def _deliver_deals(self, batch: _Deals) -> SalesforceError | None:
        from connector.sync.deals import deliver_sold_deals

        if self.stopped.is_set():
            settlements = [Settlement(r.id, Outcome.RELEASE) for r in batch.rows]
            stop = None
        else:
            delivery = deliver_sold_deals(self._client(0), self.services.engine, batch.rows, batch.now)
            settlements, stop = delivery.settlements, delivery.stop
            with self.lock:
                self.report.records_sent += delivery.sent
                self.report.composite_calls += delivery.calls
        return self._settle_rows(batch.rows, settlements, batch.now, stop)

    def _settle_rows(self, rows: list[ClaimedRow], settlements: list[Settlement], now: datetime,
                     stop: SalesforceError | None) -> SalesforceError | None:
        counts = settle_rows(self.services.engine, settlements, worker_id=self.worker_id, now=now,
                             claimed={r.id: r for r in rows})
        with self.lock:
            r = self.report
            r.done += counts.done
            r.retrying += counts.retrying
            r.dead += counts.dead
            r.released += counts.released
            r.superseded += counts.superseded
        return stop

    def _deliver_documents(self, batch: _Documents) -> SalesforceError | None:
        from connector.documents.push import deliver_documents
        from connector.portal.salesforce import deliver_portal_rows

        if self.stopped.is_set():
            settlements = [Settlement(r.id, Outcome.RELEASE) for r in batch.rows]
            stop = None
        else:
            deliver = deliver_portal_rows if batch.portal else deliver_documents
            delivery = deliver(self._client(0), batch.specs, self.services.engine, batch.keys, batch.rows, batch.now)
            settlements, stop = delivery.settlements, delivery.stop
            with self.lock:
                self.report.records_sent += delivery.sent
                self.report.composite_calls += delivery.calls
        return self._settle_rows(batch.rows, settlements, batch.now, stop)

    def _settle(self, batch: _Batch, stop: SalesforceError | None, *, release_all: bool = False) -> None:
        if release_all:
            settlements = [Settlement(r.id, Outcome.RELEASE) for r in batch.rows]
        else:
            settlements = _settlements(batch, stop, batch.now)
        counts = settle_rows(self.services.engine, settlements, worker_id=self.worker_id, now=batch.now,
                             claimed={r.id: r for r in batch.rows},
                             salesforce_ids=None if release_all else _pushed_ids(batch))
        with self.lock:
            r = self.report
            r.done += counts.done
            r.retrying += counts.retrying
            r.dead += counts.dead
            r.released += counts.released
            r.superseded += counts.superseded
            r.records_failed += sum(1 for _, transient in batch.errors.values() if not transient)

    def report_stop(self, stop: SalesforceError) -> None:
        if isinstance(stop, SalesforceLimitError):
            self.report.paused_until = stop.resume_after
            self.report.stop_reason = stop.message
            log.warning("push paused until %s: %s", stop.resume_after, stop.message)
        elif not isinstance(stop, SalesforceAuthError):
            self.report.stop_reason = f"Salesforce unavailable: {stop}"
            log.warning("push stopped: %s", stop)

    def _client(self, index: int) -> Any:
        while len(self.clients) <= index:
            from connector.salesforce import build_client

            self.clients.append(build_client(self.services.settings))
        return self.clients[index]

    def _send(self, batch: _Batch, identities: list[Identity]) -> None:
        """Stage by stage (parents, then children); within a stage up to ``concurrency`` calls at once."""
        for stage in _stages(self._client(0), batch, identities):
            if self.pool is None or len(stage) == 1:
                for call in stage:
                    _send_call(self._client(0), batch, call, self.report, self.lock)
                continue
            for start in range(0, len(stage), self.concurrency):
                wave = stage[start:start + self.concurrency]
                futures = [self.pool.submit(_send_call, self._client(i), batch, call, self.report, self.lock)
                           for i, call in enumerate(wave)]
                stopped: _SendStopped | None = None
                for future in futures:
                    try:
                        future.result()
                    except _SendStopped as exc:
                        stopped = stopped or exc
                if stopped is not None:
                    raise stopped


# ---------------------------------------------------------------- rows → needs → records


def _plan(batch: _Batch) -> None:
    """What each row needs pushed (its main record first)."""
    for row in batch.rows:
        payload = row.payload
        try:
            if row.topic == ob.INVOICE_FINALIZED:
                iid = int(row.aggregate_id)
                needs: list[Need] = [("invoice", iid), ("invoice_lines", iid)]
            elif row.topic == ob.INVOICE_STATUS_CHANGED:
                needs = [("invoice", int(row.aggregate_id))]
            elif row.topic in COLLECTION_TOPICS:  # its payment status (overdue) or its dunning step changed
                needs = [("invoice", int(row.aggregate_id))]
            elif row.topic == ob.CREDIT_NOTE_ISSUED:
                # The credit note, its lines, and the invoice whose credited amount and balance it changed.
                cid = int(row.aggregate_id)
                needs = [("credit_note", cid), ("credit_note_lines", cid)]
                iid = payload.get("invoice_id")
                if iid is not None:
                    needs.append(("invoice", int(iid)))
            elif row.topic == ob.PAYMENT_REFUNDED:
                needs = [("payment", int(row.aggregate_id))]
                rid = payload.get("refund_id")
                if rid is not None:
                    needs.append(("refund", int(rid)))
            elif row.topic in PAYMENT_TOPICS:
                needs = [("payment", int(row.aggregate_id))]
            elif row.topic in SUMMARY_TOPICS:
                needs = [("account_summary", str(payload.get("customer_id") or row.aggregate_id))]
            elif row.topic in SUBSCRIPTION_TOPICS:
                needs = [("subscription_link", str(row.aggregate_id)), *_subscription_record_needs(row.aggregate_id)]
            else:
                batch.row_errors[row.id] = f"no push is defined for topic {row.topic!r}"
                needs = []
        except (TypeError, ValueError) as exc:
            batch.row_errors[row.id] = f"bad outbox row: {exc}"
            needs = []
        batch.needs[row.id] = needs


def _build(batch: _Batch, session: Session, specs: Any, as_of: Any, keys: Keys) -> None:
    wanted: dict[str, set[Any]] = defaultdict(set)
    for needs in batch.needs.values():
        for kind, key in needs:
            wanted[kind].add(key)
    payments = rec.load_payments(session, wanted["payment"], keys) if wanted["payment"] else {}
    # A payment changes what its invoices have been paid: push those invoices (before the payment).
    paid_invoices = rec.payment_invoice_ids(session, payments) if payments else {}
    for row in batch.rows:
        needs = batch.needs[row.id]
        if needs and needs[0][0] == "payment":
            extra = [("invoice", iid) for iid in paid_invoices.get(needs[0][1], [])]
            needs.extend(extra)
            wanted["invoice"].update(i for _, i in extra)
    refunds = rec.load_refunds(session, wanted["refund"], keys) if wanted["refund"] else {}
    notes = rec.load_credit_notes(session, wanted["credit_note"], keys) if wanted["credit_note"] else {}
    note_lines = rec.load_credit_note_lines(session, wanted["credit_note_lines"], keys) \
        if wanted["credit_note_lines"] else {}
    invoices = rec.load_invoices(session, wanted["invoice"], as_of, keys) if wanted["invoice"] else {}
    lines = rec.load_invoice_lines(session, wanted["invoice_lines"], keys) if wanted["invoice_lines"] else {}
    summaries = rec.load_account_summaries(session, wanted["account_summary"], as_of) \
        if wanted["account_summary"] else {}
    # A summary's status can change without its subscriptions being touched (a cancellation recorded
    # or taking effect): the summary refreshes the status its customer's deals show too.
    customer_links = rec.load_customer_subscription_links(session, wanted["account_summary"], as_of) \
        if wanted["account_summary"] else {}
    for row in batch.rows:
        needs = batch.needs[row.id]
        if needs and needs[0][0] == "account_summary":
            deals: list[Need] = [("subscription_link", sid) for sid in sorted(customer_links.get(needs[0][1], {}))]
            needs.extend(deals)
            wanted["subscription_link"].update(sid for _, sid in deals)
    _plan_customer_subscription_records(batch, wanted, customer_links)
    links: dict[str, dict[str, Any] | None] = {sid: link for found in customer_links.values()
                                               for sid, link in found.items()}
    missing_links = wanted["subscription_link"] - links.keys()
    if missing_links:
        links.update(rec.load_subscription_links(session, missing_links, as_of))

    for kind, needed in wanted.items():
        for key in needed:
            need = (kind, key)
            if kind == "invoice":
                _add(batch, specs, need, "invoice", [invoices.get(key)], f"invoice {key} not found")
            elif kind == "invoice_lines":
                if key not in invoices and not lines.get(key):
                    batch.need_identities[need] = []
                else:
                    _add(batch, specs, need, "invoice_line", lines.get(key, []), None)
            elif kind == "payment":
                _add(batch, specs, need, "payment", [payments.get(key)], f"payment {key} not found")
            elif kind == "refund":
                _add(batch, specs, need, "refund", [refunds.get(key)], f"refund {key} not found")
            elif kind == "credit_note":
                _add(batch, specs, need, "credit_note", [notes.get(key)], f"credit note {key} not found")
            elif kind == "credit_note_lines":
                _add(batch, specs, need, "credit_note_line", note_lines.get(key, []), None)
            elif kind == "account_summary":
                if key not in summaries:
                    batch.need_errors[need] = f"customer {key} not found"
                elif summaries[key] is None:
                    batch.need_identities[need] = []
                    batch.need_notes[need] = f"customer {key} has no Salesforce Account: nothing to push"
                else:
                    _add(batch, specs, need, "account_summary", [summaries[key]], None)
            elif kind == "subscription_link":
                if links.get(key) is None:
                    batch.need_identities[need] = []
                    batch.need_notes[need] = f"subscription {key} did not come from an Opportunity: nothing to push"
                else:
                    _add(batch, specs, need, "subscription_link", [links[key]], None)
    _add_subscription_records(batch, session, specs, as_of, keys, wanted["subscription_record"])


# ---------------------------------------------------------------- subscription records (Billsync_Subscription__c)


def _subscription_record_needs(subscription_id: Any) -> list[Need]:
    """A subscription's change rewrites its subscription record and items."""
    return [("subscription_record", str(subscription_id))]


def _plan_customer_subscription_records(batch: _Batch, wanted: dict[str, set[Any]],
                                        customer_links: dict[str, dict[str, dict[str, Any]]]) -> None:
    """An Account summary refreshes its customer's subscription records too: their status, next
    invoice date and MRR move with bill runs, cancellations and renewals as the summary does."""
    for row in batch.rows:
        needs = batch.needs[row.id]
        if needs and needs[0][0] == "account_summary":
            extra = [need for sid in sorted(customer_links.get(needs[0][1], {}))
                     for need in _subscription_record_needs(sid)]
            needs.extend(extra)
            wanted["subscription_record"].update(key for _, key in extra)


def _add_subscription_records(batch: _Batch, session: Session, specs: Any, as_of: Any, keys: Keys,
                              subscription_ids: set[Any]) -> None:
    """Each needed subscription record, then its items (upserts by external id: same record every time)."""
    if not subscription_ids or not specs.outbound_for("subscription"):
        for sid in subscription_ids:
            batch.need_identities[("subscription_record", sid)] = []
        return
    found = rec.load_subscription_records(session, subscription_ids, as_of, keys)
    for sid in subscription_ids:
        need: Need = ("subscription_record", sid)
        if sid not in found:
            batch.need_errors[need] = f"subscription {sid} not found"
        elif found[sid] is None:
            batch.need_identities[need] = []
            batch.need_notes[need] = f"subscription {sid}: its customer has no Salesforce Account: nothing to push"
        else:
            record, items = found[sid]
            _add(batch, specs, need, "subscription", [record], None)
            if need in batch.need_errors:
                continue
            identities = batch.need_identities[need]
            _add(batch, specs, need, "subscription_item", items, None)
            batch.need_identities[need] = identities + batch.need_identities[need]


def _add(batch: _Batch, specs: Any, need: Need, source: str, engine_records: list[dict[str, Any] | None],
         missing: str | None) -> None:
    identities: list[Identity] = []
    batch.need_identities[need] = identities
    for engine_record in engine_records:
        if engine_record is None:
            batch.need_errors[need] = missing or f"{need[0]} {need[1]} not found"
            return
        for spec in specs.outbound_for(source):
            try:
                sf_record = _apply(spec, engine_record)
            except InvalidRecordError as exc:
                batch.need_errors[need] = f"{spec.object} {engine_record.get(spec.key.sources[0])}: " + "; ".join(
                    f"{e.field}: {e.reason}" for e in exc.errors)
                return
            except MappingsError as exc:
                batch.need_errors[need] = f"mapping {spec.name!r} cannot be used: {exc}"
                return
            key_value = sf_record.get(spec.key.name)
            if key_value in (None, ""):
                batch.need_errors[need] = f"{spec.object}: the key {spec.key.name} is empty"
                return
            identity = (spec.object, spec.key.name, str(key_value))
            identities.append(identity)
            batch.records.setdefault(identity, (source, sf_record))


def _apply(spec: Any, engine_record: dict[str, Any]) -> dict[str, Any]:
    from mappings import apply_outbound

    return apply_outbound(spec, engine_record)


# ---------------------------------------------------------------- sending


def _transient_identities(batch: _Batch) -> list[Identity]:
    """Every record of the rows that met a transient error (children included: they may have failed
    only because their parent did)."""
    bad = {i for i, (_, transient) in batch.errors.items() if transient}
    if not bad:
        return []
    again: list[Identity] = []
    seen: set[Identity] = set()
    for row in batch.rows:
        identities = [i for need in batch.needs[row.id] for i in batch.need_identities.get(need, [])]
        if any(i in bad for i in identities):
            for i in identities:
                if i not in seen:
                    seen.add(i)
                    again.append(i)
    for i in again:
        batch.errors.pop(i, None)
        batch.results.pop(i, None)
    rank = {identity: n for n, identity in enumerate(batch.records)}
    return sorted(again, key=lambda i: rank[i])


def _stages(client: Any, batch: _Batch, identities: list[Identity]) -> list[list[list[tuple[str, dict, list]]]]:
    """Composite calls grouped in stages: a stage's calls only reference records of earlier stages.

    Each call is a list of (source, subrequest, identities): at most
    ``COLLECTIONS_PER_COMPOSITE`` collections of at most ``COLLECTION_SIZE`` records.
    """
    groups: dict[tuple[int, str, str], list[Identity]] = {}
    for identity in identities:
        source, _ = batch.records[identity]
        groups.setdefault((SOURCE_ORDER.index(source), identity[0], identity[1]), []).append(identity)
    base = f"/services/data/v{client.api_version}/composite/sobjects"
    by_stage: dict[int, list[tuple[str, dict, list]]] = defaultdict(list)
    number = 0
    for (rank, obj, key_field), members in sorted(groups.items(), key=lambda kv: kv[0][0]):
        source = SOURCE_ORDER[rank]
        for start in range(0, len(members), COLLECTION_SIZE):
            chunk = members[start:start + COLLECTION_SIZE]
            number += 1
            url = base if key_field == "Id" else f"{base}/{obj}/{key_field}"
            sub = {"method": "PATCH", "url": url, "referenceId": f"c{number}",
                   "body": {"allOrNone": False, "records": [batch.records[i][1] for i in chunk]}}
            by_stage[_stage_of(source)].append((source, sub, chunk))
    return [[subs[i:i + COLLECTIONS_PER_COMPOSITE] for i in range(0, len(subs), COLLECTIONS_PER_COMPOSITE)]
            for _, subs in sorted(by_stage.items())]


def _stage_of(source: str) -> int:
    parents = DEPENDS_ON.get(source, frozenset())
    return 1 + max((_stage_of(p) for p in parents), default=-1)


def _send_call(client: Any, batch: _Batch, call: list[tuple[str, dict, list]], report: PushReport,
               lock: threading.Lock) -> None:
    try:
        answers = client.composite([sub for _, sub, _ in call], all_or_none=False)
    except (SalesforceLimitError, SalesforceRetryableError, SalesforceAuthError) as exc:
        raise _SendStopped(exc) from exc
    except SalesforceError as exc:  # our request was refused as a whole: every record in it failed
        for _, _, chunk in call:
            for identity in chunk:
                batch.errors[identity] = (f"{exc}", False)
        with lock:
            report.composite_calls += 1
        return
    with lock:
        report.composite_calls += 1
        report.records_sent += sum(len(chunk) for _, _, chunk in call)
    by_ref = {a.reference_id: a for a in answers}
    for _, sub, chunk in call:
        answer = by_ref.get(sub["referenceId"])
        if answer is None:
            for identity in chunk:
                batch.errors[identity] = ("no answer for this record in the composite response", True)
            continue
        if not answer.success or not isinstance(answer.body, list):
            code, message = _subrequest_error(answer.body, answer.status)
            transient = code in RETRYABLE_CODES or answer.status >= 500
            for identity in chunk:
                batch.errors[identity] = (f"{code}: {message}", transient)
            continue
        results = [RecordResult.from_json(item) for item in answer.body]
        for index, identity in enumerate(chunk):
            result = results[index] if index < len(results) else None
            if result is None:
                batch.errors[identity] = ("no result for this record", True)
            elif result.success:
                batch.results[identity] = result.id
            else:
                batch.errors[identity] = _record_error(identity, result)


def _subrequest_error(body: Any, status: int) -> tuple[str, str]:
    item = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        return (str(item.get("errorCode") or item.get("statusCode") or f"HTTP_{status}"),
                str(item.get("message") or ""))
    return f"HTTP_{status}", str(body)[:200]


def _record_error(identity: Identity, result: RecordResult) -> tuple[str, bool]:
    errors = result.errors or ()
    if not errors:
        return f"{identity[0]} {identity[2]}: rejected without a reason", False
    first = errors[0]
    fields = f" ({', '.join(first.fields)})" if first.fields else ""
    text = f"{identity[0]} {identity[2]}: {first.code}: {first.message}{fields}"
    return text, all(e.is_transient for e in errors)


# ---------------------------------------------------------------- verdicts


def _pushed_ids(batch: _Batch) -> dict[str, dict[int, str]]:
    """The Salesforce ids of the invoices, payments, credit notes and refunds this batch wrote, by kind
    and engine id (kept on the engine's records)."""
    out: dict[str, dict[int, str]] = defaultdict(dict)
    if batch.keys is None:
        return out
    for (_, key_field, key_value), salesforce_id in batch.results.items():
        kind = PUSHED_KEYS.get(key_field)
        engine_id = batch.keys.engine_id(kind, key_value) if kind and salesforce_id else None
        if engine_id is not None and salesforce_id:
            out[kind][engine_id] = salesforce_id
    return out


def _settlements(batch: _Batch, stop: SalesforceError | None, now: datetime) -> list[Settlement]:
    out: list[Settlement] = []
    for row in batch.rows:
        if row.id in batch.row_errors:
            out.append(Settlement(row.id, Outcome.FAILED, batch.row_errors[row.id]))
            continue
        needs = batch.needs[row.id]
        need_errors = [batch.need_errors[n] for n in needs if n in batch.need_errors]
        if need_errors:
            out.append(Settlement(row.id, Outcome.FAILED, "; ".join(need_errors)))
            continue
        identities = [i for need in needs for i in batch.need_identities.get(need, [])]
        unsent = [i for i in identities if i not in batch.results and i not in batch.errors]
        if unsent and stop is not None:
            if isinstance(stop, SalesforceLimitError):
                out.append(Settlement(row.id, Outcome.RELEASE, retry_at=stop.resume_after))
            elif isinstance(stop, SalesforceAuthError):
                out.append(Settlement(row.id, Outcome.RELEASE))
            else:
                out.append(Settlement(row.id, Outcome.TRANSIENT, f"Salesforce unavailable: {stop}",
                                      retry_at=now + TRANSIENT_DELAY))
            continue
        errors = [batch.errors[i] for i in identities if i in batch.errors]
        if unsent:
            errors.append(("not sent", True))
        if any(transient for _, transient in errors):
            message = next(m for m, transient in errors if transient)
            out.append(Settlement(row.id, Outcome.TRANSIENT, message))
        elif errors:
            out.append(Settlement(row.id, Outcome.FAILED, "; ".join(m for m, _ in errors[:3])
                                  + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")))
        else:
            main = batch.need_identities.get(needs[0], []) if needs else []
            notes = [batch.need_notes[n] for n in needs if n in batch.need_notes]
            note = batch.row_notes.get(row.id) or ("; ".join(notes) if notes else None)
            out.append(Settlement(row.id, Outcome.DONE, note, result=batch.results.get(main[0]) if main else None))
    return out
