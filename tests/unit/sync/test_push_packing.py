"""Packing records into Salesforce calls, backoff and the row verdicts (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.queue import backoff
from connector.salesforce.errors import SalesforceLimitError
from connector.sync.outbox_claims import ClaimedRow, ordering_key
from connector.sync.push import COLLECTION_SIZE, COLLECTIONS_PER_COMPOSITE, _Batch, _settlements, _stages

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class FakeClient:
    api_version = "59.0"


def batch_of(invoices: int, lines_each: int, summaries: int = 0) -> tuple[_Batch, list]:
    batch = _Batch(rows=[], now=NOW)
    identities = []
    for i in range(invoices):
        key = ("Invoice__c", "Billsync_Invoice_Id__c", str(i))
        batch.records[key] = ("invoice", {"attributes": {"type": "Invoice__c"}, "Billsync_Invoice_Id__c": str(i)})
        identities.append(key)
        for n in range(lines_each):
            line = ("Invoice_Line__c", "Billsync_Line_Id__c", f"{i}-{n}")
            batch.records[line] = ("invoice_line", {"attributes": {"type": "Invoice_Line__c"},
                                                    "Invoice__r": {"Billsync_Invoice_Id__c": str(i)}})
            identities.append(line)
    for c in range(summaries):
        key = ("Account", "Id", f"001{c:015d}")
        batch.records[key] = ("account_summary", {"attributes": {"type": "Account"}, "Id": key[2]})
        identities.append(key)
    return batch, identities


def test_ten_thousand_invoices_of_five_lines_take_sixty_composite_calls():
    batch, identities = batch_of(10_000, 5)
    stages = _stages(FakeClient(), batch, identities)
    calls = [call for stage in stages for call in stage]
    assert len(calls) == 60  # 60,000 records / 200 per collection / 5 collections per composite
    assert all(len(call) <= COLLECTIONS_PER_COMPOSITE for call in calls)
    assert all(len(chunk) <= COLLECTION_SIZE for call in calls for _, _, chunk in call)
    # Parents in the first stage, children after: no call mixes them.
    assert [{source for call in stage for source, _, _ in call} for stage in stages] == [{"invoice"},
                                                                                         {"invoice_line"}]
    upsert = calls[0][0][1]
    assert upsert["method"] == "PATCH"
    assert upsert["url"] == "/services/data/v59.0/composite/sobjects/Invoice__c/Billsync_Invoice_Id__c"
    assert upsert["body"]["allOrNone"] is False


def test_account_summaries_are_updates_by_id_sent_with_the_parents():
    batch, identities = batch_of(3, 1, summaries=2)
    first, second = _stages(FakeClient(), batch, identities)
    assert [sub["url"] for _, sub, _ in first[0]] == ["/services/data/v59.0/composite/sobjects/Invoice__c/"
                                                      "Billsync_Invoice_Id__c", "/services/data/v59.0/composite/sobjects"]
    assert [source for source, _, _ in second[0]] == ["invoice_line"]


def test_backoff_doubles_from_a_minute_up_to_an_hour():
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 30)] == [timedelta(minutes=1), timedelta(minutes=2),
                                                        timedelta(minutes=4), timedelta(hours=1),
                                                        timedelta(hours=1), timedelta(hours=1)]


def test_rows_of_one_customer_share_an_ordering_key():
    assert ordering_key("invoice", "7", {"customer_id": "c1"}) == ordering_key("customer", "c1", {}) == "customer:c1"
    assert ordering_key("thing", "9", {}) == "thing:9"


def _row(row_id: int) -> ClaimedRow:
    return ClaimedRow(row_id, "invoice.finalized", "invoice", str(row_id), {"customer_id": "c"}, 0, None)


def test_row_verdicts_follow_their_records():
    batch = _Batch(rows=[_row(1), _row(2), _row(3), _row(4)], now=NOW)
    for n in (1, 2, 3, 4):
        batch.needs[n] = [("invoice", n)]
        batch.need_identities[("invoice", n)] = [("Invoice__c", "Billsync_Invoice_Id__c", str(n))]
    batch.results[("Invoice__c", "Billsync_Invoice_Id__c", "1")] = "a00000000000001AAA"
    batch.errors[("Invoice__c", "Billsync_Invoice_Id__c", "2")] = ("Invoice__c 2: UNABLE_TO_LOCK_ROW: busy", True)
    batch.errors[("Invoice__c", "Billsync_Invoice_Id__c", "3")] = ("Invoice__c 3: FIELD_CUSTOM_VALIDATION_"
                                                                   "EXCEPTION: Total__c < 0", False)
    # Row 4 was never sent: the org's allocation ran out first.
    stop = SalesforceLimitError("TotalRequests Limit exceeded.", code="REQUEST_LIMIT_EXCEEDED",
                                resume_after=NOW + timedelta(minutes=15))
    verdicts = {s.row_id: s for s in _settlements(batch, stop, NOW)}
    assert (verdicts[1].outcome, verdicts[1].salesforce_id) == ("done", "a00000000000001AAA")
    assert verdicts[2].outcome == "transient"
    assert verdicts[3].outcome == "failed" and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in verdicts[3].error
    assert (verdicts[4].outcome, verdicts[4].retry_at) == ("release", NOW + timedelta(minutes=15))
