"""The pure parts of inbox processing: own-change recognition, ids, backoff, the report."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.queue import MAX_ATTEMPTS, backoff
from connector.sync.pull import ObjectReport
from connector.webhooks.processing import ProcessReport, id18, is_own_change

CLIENT = "3MVG9sandbox.abc123"
USER = "005Dn0000000001AAA"


@pytest.mark.parametrize("origin", [
    f"com/salesforce/api/rest/59.0;client={CLIENT}",
    f"com/salesforce/api/soap/51.0;client={CLIENT}/",  # real events end the client with a slash
    f"user:{USER}",
    f"user:{USER[:15]}",  # an Outbound Message may carry the 15-character id
])
def test_billsyncs_own_writes_are_recognised(origin):
    assert is_own_change(origin, client_id=CLIENT, user_id=USER)


@pytest.mark.parametrize("origin", [
    None,
    "",  # Salesforce's own (UI, flows, gap events): no origin
    "com/salesforce/api/soap/51.0;client=SfdcInternalAPI/",
    f"com/salesforce/api/rest/59.0;client={CLIENT}.other",
    f"com/salesforce/api/rest/59.0;client={CLIENT[:-1]}",
    "user:005Dn0000000002AAA",
    f"user:{USER[:14]}",
    f"user:{USER.lower()}",  # ids are case-sensitive
])
def test_other_writes_are_not_mistaken_for_billsyncs(origin):
    assert not is_own_change(origin, client_id=CLIENT, user_id=USER)


def test_without_knowing_billsyncs_identity_nothing_is_ignored():
    assert not is_own_change(f"com/salesforce/api/rest/59.0;client={CLIENT}", client_id=None, user_id=USER)
    assert not is_own_change(f"user:{USER}", client_id=CLIENT, user_id=None)


def test_15_character_ids_get_salesforces_checksum_suffix():
    assert id18("001RM000004UF9s") == "001RM000004UF9sYAG"  # a CDC recordId as Salesforce sends it
    assert id18("0014H00002LbR7Q") == "0014H00002LbR7QQAV"
    assert id18("001RM000004UF9sYAG") == "001RM000004UF9sYAG"


def test_retries_back_off_exponentially_up_to_an_hour():
    delays = [backoff(n) for n in range(1, MAX_ATTEMPTS)]
    assert delays[:4] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert max(delays) == timedelta(hours=1) and delays == sorted(delays)


def test_the_report_says_what_happened_to_the_batch():
    report = ProcessReport(claimed=5, done=3, retrying=1, released=1, own_changes=1, unmapped=1, coalesced=1,
                           records=2, resynced=["Account"])
    report.objects.append(ObjectReport("Opportunity", fetched=2, applied=1, failed=1))
    text = "\n".join(report.lines())
    assert "5 claimed, 3 done (1 billsync's own changes, 1 not mapped, 1 coalesced), 1 retrying" in text
    assert "resynced: Account" in text
    assert "Opportunity: fetched 2, applied 1" in text
