"""Which Salesforce org the push may write to, and moving records pushed under the old keys.

Before its first send in a process, the push calls ``check_push_target``:

1. **The org.** The org billsync is logged in to must be the one this installation is
   bound to (``installation.org_id``); another org is refused, whatever it holds.
2. **Other installations.** Unless the admin adopted the org (``billsync sync adopt
   --org``), one composite call asks whether ``Invoice__c`` or ``Payment__c`` holds a
   billsync key that is not this installation's (``LIMIT 1`` each); if one does, another
   billsync database writes to this org and the push is refused, before anything is sent.
3. **Re-keying** (only while ``installation.rekey_pending``, i.e. after the migration of a
   database that pushed under the old keys, the engine's bare ids): ``rekey_records``
   finds the records still keyed by a bare id and, for those that are provably this
   database's, writes the new key on the same record by Id, so nothing is duplicated.
   An invoice or payment is this database's when its Salesforce Id is the one its push
   returned; one pushed before those were kept must carry its invoice number (payment
   amount) and its customer's Account. A line is re-keyed when its parent invoice carries
   this installation's key and the engine has that line on that invoice; any other
   bare-keyed line under such an invoice is a stale one and is deleted (no orphans).
   Updating a key by Id is idempotent and each step finds its work from what Salesforce
   holds, so a run that crashed halfway is finished by the next one.
4. **Binding.** The first push that passes records the org (``installation.bind_org``).

A check that passed is remembered for the process (per database, installation state and
org), so a worker pays the one query once.

Every refusal raises ``OrgBindingError`` with one line for people: ``billsync sync push``
prints it and exits 2, the worker logs it, and nothing is sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlmodel import Session

from billing_engine.use_cases import exports
from connector.salesforce.errors import RecordResult
from connector.salesforce.soql import build_soql
from connector.sync.installation import Installation, Keys, bind_org, finish_rekey, get_installation, same_org

if TYPE_CHECKING:
    from connector.wiring import Services

log = logging.getLogger("billsync.binding")

COLLECTION_SIZE = 200
COLLECTIONS_PER_COMPOSITE = 5
#: The objects whose keys tell which installation wrote to an org (lines hang under invoices).
KEYED_OBJECTS = (("Invoice__c", "Billsync_Invoice_Id__c"), ("Payment__c", "Billsync_Payment_Id__c"))

#: A key of another installation: not this installation's prefix (``{2}``); in the second form,
#: only keys in the ``<installation>-<kind>-<id>`` style count, not the bare ids written before.
FOREIGN_KEY_SOQL = ("SELECT {0:literal} FROM {1:literal} WHERE {0:literal} != null "
                    "AND (NOT {0:literal} LIKE '{2:like}%') LIMIT 1")
FOREIGN_KEY_SOQL_NEW_STYLE = ("SELECT {0:literal} FROM {1:literal} WHERE {0:literal} != null "
                              "AND (NOT {0:literal} LIKE '{2:like}%') AND {0:literal} LIKE '%-%' LIMIT 1")

_checked: set[tuple[str, Installation, str]] = set()
_checked_lock = threading.Lock()


class OrgBindingError(Exception):
    """The push refuses to write to this org; the message is one line for people."""


@dataclass
class RekeyReport:
    invoices: int = 0
    lines: int = 0
    payments: int = 0
    stale_lines_deleted: int = 0
    calls: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rekeyed(self) -> int:
        return self.invoices + self.lines + self.payments

    def line(self) -> str:
        return (f"re-keyed {self.invoices} invoices, {self.lines} lines and {self.payments} payments to this "
                f"installation's keys, deleted {self.stale_lines_deleted} stale lines")


@dataclass(frozen=True)
class CheckResult:
    keys: Keys
    calls: int = 0  # API calls the check made (re-keying included)
    rekey: RekeyReport | None = None


def forget_checks() -> None:
    """Check again on the next push (after ``adopt``, or in tests)."""
    with _checked_lock:
        _checked.clear()


def check_push_target(services: Services, client: Any, *, now: datetime) -> CheckResult:
    """Refuse (``OrgBindingError``) unless this installation may push into the org ``client`` is
    logged in to; re-key records pushed under the old keys first; bind the org on first use."""
    engine = services.engine
    state = get_installation(engine, now=now)
    org = client.organization_id()
    if not org:
        raise OrgBindingError("cannot tell which Salesforce org billsync is logged in to, so nothing was pushed: "
                              "set SF_ORG_ID to the org's id (00D...)")
    memo = (str(engine.url), state, org[:15])
    with _checked_lock:
        if memo in _checked:
            return CheckResult(state.keys)
    if state.org_id and not same_org(state.org_id, org):
        raise OrgBindingError(
            f"this billsync installation ({state.installation_id}) is bound to Salesforce org {state.org_id}, "
            f"but it is logged in to org {org}: nothing was pushed; if this database now belongs to that org, "
            f"run `billsync sync adopt --org {org}`")
    adopted = state.adopted_at is not None and same_org(state.org_id, org)
    calls = 0
    report: RekeyReport | None = None
    if not adopted:
        calls += 1
        # While re-keying is pending, bare keys may be this database's own: only new-style keys count.
        _refuse_foreign(client, state, org, new_style_only=state.rekey_pending)
    if state.rekey_pending:
        report = rekey_records(engine, client, state.keys)
        calls += report.calls
        if report.failures:
            raise OrgBindingError(f"re-keying the records pushed under the old keys failed for {len(report.failures)} "
                                  f"record(s), nothing else was pushed: {report.failures[0]}")
        log.info("%s", report.line())
        state = finish_rekey(engine)
        if not adopted:
            calls += 1
            _refuse_foreign(client, state, org, new_style_only=False)
    if not state.org_id:
        state = bind_org(engine, org, now=now)
        log.info("installation %s bound to Salesforce org %s", state.installation_id, org)
    with _checked_lock:
        _checked.add((str(engine.url), state, org[:15]))
    return CheckResult(state.keys, calls, report)


def _refuse_foreign(client: Any, state: Installation, org: str, *, new_style_only: bool) -> None:
    found = foreign_key(client, state.keys, new_style_only=new_style_only)
    if found is not None:
        obj, key = found
        raise OrgBindingError(
            f"Salesforce org {org} holds billsync records written by another installation ({obj} {key}; this "
            f"installation is {state.installation_id}): nothing was pushed; to push into this org alongside them, "
            f"run `billsync sync adopt --org {org}`")


def foreign_key(client: Any, keys: Keys, *, new_style_only: bool = False) -> tuple[str, str] | None:
    """One billsync key in the org that this installation did not write, as (object, key), or ``None``.

    One composite call of one ``LIMIT 1`` query per keyed object. ``new_style_only`` skips
    bare ids (the keys written before installations had ids)."""
    base = f"/services/data/v{client.api_version}"
    subrequests = []
    for n, (obj, key_field) in enumerate(KEYED_OBJECTS):
        template = FOREIGN_KEY_SOQL_NEW_STYLE if new_style_only else FOREIGN_KEY_SOQL
        soql = build_soql(template, key_field, obj, keys.prefix)
        subrequests.append({"method": "GET", "url": f"{base}/query?q={quote(soql)}", "referenceId": f"q{n}"})
    answers = {a.reference_id: a for a in client.composite(subrequests, all_or_none=False)}
    for n, (obj, key_field) in enumerate(KEYED_OBJECTS):
        answer = answers.get(f"q{n}")
        if answer is None or not answer.success or not isinstance(answer.body, dict):
            detail = answer.body if answer is not None else "no answer"
            raise OrgBindingError(f"cannot check which installation wrote the org's {obj} records, so nothing was "
                                  f"pushed: {str(detail)[:200]}")
        for record in answer.body.get("records") or []:
            return obj, str(record.get(key_field))
    return None


# ---------------------------------------------------------------- re-keying


def _bare_id(key: Any) -> int | None:
    text = str(key or "")
    return int(text) if text.isdigit() else None


def _same_account(a: Any, b: Any) -> bool:
    return bool(a) and bool(b) and str(a)[:15] == str(b)[:15]


def _same_amount(label: str, value: Any) -> bool:
    try:
        return value is not None and Decimal(label) == Decimal(str(value))
    except InvalidOperation:
        return False


def _owned(kind: str, records: list[dict[str, Any]], key_field: str, engine: Any) -> list[tuple[str, int]]:
    """(Salesforce Id, engine id) of the bare-keyed records that are this database's."""
    by_engine_id = {_bare_id(r.get(key_field)): r for r in records}
    by_engine_id.pop(None, None)
    with Session(engine) as session:
        pushed = exports.pushed_records(session, kind, [i for i in by_engine_id if i is not None])
    out = []
    for engine_id, record in by_engine_id.items():
        mine = pushed.get(engine_id) if engine_id is not None else None
        if mine is None or engine_id is None:
            continue
        if mine.salesforce_id is not None:
            ok = mine.salesforce_id[:15] == str(record["Id"])[:15]
        elif kind == "invoice":
            ok = record.get("Name") == mine.label and _same_account(record.get("Account__c"),
                                                                  mine.salesforce_account_id)
        else:
            ok = _same_amount(mine.label, record.get("Amount__c")) and _same_account(
                record.get("Account__c"), mine.salesforce_account_id)
        if ok:
            out.append((str(record["Id"]), engine_id))
    return out


def rekey_records(engine: Any, client: Any, keys: Keys) -> RekeyReport:
    """Give the records this database pushed under bare ids its installation's keys, by Id (see the
    module docstring). Idempotent; failures are listed in the report, and the next run retries them."""
    report = RekeyReport()
    invoices = _query(client, report, "SELECT Id, Name, Account__c, Billsync_Invoice_Id__c FROM Invoice__c WHERE "
                      "Billsync_Invoice_Id__c != null AND (NOT Billsync_Invoice_Id__c LIKE '%-%')")
    owned = _owned("invoice", invoices, "Billsync_Invoice_Id__c", engine)
    report.invoices = _update(client, report, "Invoice__c", "Billsync_Invoice_Id__c",
                              [(sfid, keys.invoice(i)) for sfid, i in owned])
    if report.failures:
        return report  # lines follow their invoices' keys: retry the invoices first

    lines = _query(client, report, "SELECT Id, Billsync_Line_Id__c, Invoice__r.Billsync_Invoice_Id__c "
                   "FROM Invoice_Line__c WHERE Billsync_Line_Id__c != null AND (NOT Billsync_Line_Id__c LIKE '%-%')")
    under_mine = []
    for line in lines:
        parent_key = str((line.get("Invoice__r") or {}).get("Billsync_Invoice_Id__c") or "")
        inv_prefix = f"{keys.prefix}inv-"
        if parent_key.startswith(inv_prefix) and parent_key[len(inv_prefix):].isdigit():
            under_mine.append((line, int(parent_key[len(inv_prefix):])))
    with Session(engine) as session:
        line_invoices = exports.invoices_of_lines(
            session, [i for i in (_bare_id(ln.get("Billsync_Line_Id__c")) for ln, _ in under_mine) if i is not None])
    updates, stale = [], []
    for line, invoice_id in under_mine:
        line_id = _bare_id(line.get("Billsync_Line_Id__c"))
        if line_id is not None and line_invoices.get(line_id) == invoice_id:
            updates.append((str(line["Id"]), keys.line(line_id)))
        else:
            stale.append(str(line["Id"]))
    report.lines = _update(client, report, "Invoice_Line__c", "Billsync_Line_Id__c", updates)
    report.stale_lines_deleted = _delete(client, report, stale)

    payments = _query(client, report, "SELECT Id, Amount__c, Account__c, Billsync_Payment_Id__c FROM Payment__c "
                      "WHERE Billsync_Payment_Id__c != null AND (NOT Billsync_Payment_Id__c LIKE '%-%')")
    owned = _owned("payment", payments, "Billsync_Payment_Id__c", engine)
    report.payments = _update(client, report, "Payment__c", "Billsync_Payment_Id__c",
                              [(sfid, keys.payment(i)) for sfid, i in owned])
    return report


def _query(client: Any, report: RekeyReport, soql: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    page = client.query_page(soql)
    report.calls += 1
    while True:
        records.extend(page.get("records") or [])
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return records
        page = client.query_more(page["nextRecordsUrl"])
        report.calls += 1


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _send(client: Any, report: RekeyReport, subrequests: list[tuple[dict[str, Any], list[str]]]) -> int:
    """Send collection subrequests, ``COLLECTIONS_PER_COMPOSITE`` per call; returns the records that succeeded."""
    done = 0
    for call in _chunks(subrequests, COLLECTIONS_PER_COMPOSITE):
        answers = {a.reference_id: a for a in client.composite([sub for sub, _ in call], all_or_none=False)}
        report.calls += 1
        for sub, ids in call:
            answer = answers.get(sub["referenceId"])
            if answer is None or not answer.success or not isinstance(answer.body, list):
                body = answer.body if answer is not None else "no answer"
                report.failures.extend(f"{record_id}: {str(body)[:200]}" for record_id in ids)
                continue
            for record_id, item in zip(ids, answer.body, strict=False):
                result = RecordResult.from_json(item)
                if result.success:
                    done += 1
                else:
                    first = result.errors[0] if result.errors else None
                    report.failures.append(f"{record_id}: {first.code}: {first.message}" if first
                                           else f"{record_id}: refused without a reason")
    return done


def _update(client: Any, report: RekeyReport, obj: str, key_field: str, changes: list[tuple[str, str]]) -> int:
    if not changes:
        return 0
    url = f"/services/data/v{client.api_version}/composite/sobjects"
    subrequests = []
    for n, chunk in enumerate(_chunks(changes, COLLECTION_SIZE)):
        records = [{"attributes": {"type": obj}, "Id": sfid, key_field: key} for sfid, key in chunk]
        subrequests.append(({"method": "PATCH", "url": url, "referenceId": f"u{n}",
                             "body": {"allOrNone": False, "records": records}}, [sfid for sfid, _ in chunk]))
    return _send(client, report, subrequests)


def _delete(client: Any, report: RekeyReport, record_ids: list[str]) -> int:
    if not record_ids:
        return 0
    base = f"/services/data/v{client.api_version}/composite/sobjects"
    subrequests = [({"method": "DELETE", "url": f"{base}?ids={','.join(chunk)}&allOrNone=false",
                     "referenceId": f"d{n}"}, chunk)
                   for n, chunk in enumerate(_chunks(record_ids, COLLECTION_SIZE))]
    return _send(client, report, subrequests)


# ---------------------------------------------------------------- adopting an org


def adopt_org(services: Services, org_id: str, *, now: datetime) -> Installation:
    """Bind this installation to ``org_id`` and accept the billsync records other installations
    wrote there (``billsync sync adopt --org``): the push then writes alongside them, under this
    installation's own keys, so it never overwrites them. ``org_id`` must be the org billsync is
    logged in to (``OrgBindingError`` otherwise)."""
    from connector.sync import installation

    org = services.salesforce().organization_id()
    if not same_org(org, org_id):
        raise OrgBindingError(f"billsync is logged in to Salesforce org {org or 'unknown'}, not {org_id}: "
                              "nothing was adopted; check the SF_ settings")
    state = installation.adopt_org(services.engine, org or org_id, now=now)
    forget_checks()
    return state
