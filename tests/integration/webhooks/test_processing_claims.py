"""Claiming and settling inbox rows on the database under test: due rows only, one worker
per record, leases, backoff, dead letters, ``sync status`` and re-queueing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from connector.database import transaction
from connector.queue import MAX_ATTEMPTS, Outcome, Settlement, backoff
from connector.webhooks.inbox import WebhookInbox, add_to_inbox
from connector.webhooks.processing import (
    DEFAULT_LEASE,
    claim_inbox,
    inbox_status,
    retry_inbox_letters,
    settle_inbox,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def row(n: int, record: str, *, due: datetime = T0, object_name: str = "Opportunity") -> dict:
    return {"source": "cdc", "dedup_key": f"cdc:tx{n}:1:{record}", "object_name": object_name, "record_id": record,
            "action": "upsert", "change_origin": None, "received_at": T0, "payload": "{}", "status": "pending",
            "attempts": 0, "next_attempt_at": due}


def opp(n: int) -> str:
    return f"006Dn{n:010d}AAA"


def add(engine, *rows: dict) -> None:
    with transaction(engine) as session:
        add_to_inbox(session, list(rows))


def stored(engine) -> dict[str, WebhookInbox]:
    with Session(engine) as session:
        return {r.dedup_key: r for r in session.execute(select(WebhookInbox)).scalars()}


def test_a_worker_claims_due_rows_and_never_a_record_another_worker_holds(engine):
    add(engine, row(1, opp(1)), row(2, opp(2), due=T0 + timedelta(minutes=5)), row(3, opp(1)), row(4, opp(3)))

    first = claim_inbox(engine, worker_id="a", limit=1, now=T0)
    assert [r.record_id for r in first] == [opp(1)]
    # opp(1) is in flight in worker a; opp(2) is not due yet.
    second = claim_inbox(engine, worker_id="b", limit=10, now=T0)
    assert [r.record_id for r in second] == [opp(3)]
    assert claim_inbox(engine, worker_id="c", limit=10, now=T0) == []

    # Worker a dies: after its lease the row is claimed again, with that attempt counted.
    later = T0 + DEFAULT_LEASE + timedelta(seconds=1)
    again = claim_inbox(engine, worker_id="c", limit=10, now=later)
    assert sorted((r.record_id, r.attempts) for r in again) == [(opp(1), 0), (opp(1), 1), (opp(2), 0), (opp(3), 1)]
    assert "lease" in stored(engine)["cdc:tx1:1:" + opp(1)].last_error


def test_failures_back_off_then_park_the_row_where_sync_status_shows_it(engine):
    add(engine, row(1, opp(1)), row(2, opp(2)))
    now = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = claim_inbox(engine, worker_id="w", limit=10, now=now)
        assert [r.record_id for r in claimed] == ([opp(1), opp(2)] if attempt == 1 else [opp(1)])
        outcomes = [Settlement(claimed[0].id, Outcome.FAILED, f"Account 001 has no billsync customer (try {attempt})")]
        if attempt == 1:
            outcomes.append(Settlement(claimed[1].id, Outcome.DONE))
        settle_inbox(engine, claimed, outcomes, now=now)
        failing = stored(engine)["cdc:tx1:1:" + opp(1)]
        if attempt < MAX_ATTEMPTS:
            assert (failing.status, failing.attempts) == ("failed", attempt)
            assert claim_inbox(engine, worker_id="w", limit=10, now=now + backoff(attempt) - timedelta(seconds=1)) \
                == []
            now += backoff(attempt)
    assert (failing.status, failing.attempts) == ("dead", MAX_ATTEMPTS)
    assert claim_inbox(engine, worker_id="w", limit=10, now=now + timedelta(days=30)) == []

    with Session(engine) as session:
        status = inbox_status(session)
    assert status.counts == {"pending": 0, "in_flight": 0, "done": 1, "failed": 0, "dead": 1}
    [letter] = status.dead
    assert (letter.record_id, letter.attempts) == (opp(1), MAX_ATTEMPTS)
    assert letter.last_error == f"Account 001 has no billsync customer (try {MAX_ATTEMPTS})"

    with transaction(engine) as session:
        assert retry_inbox_letters(session, now=now) == 1
    [claimed] = claim_inbox(engine, worker_id="w", limit=10, now=now)
    assert (claimed.record_id, claimed.attempts) == (opp(1), 0)


def test_released_rows_keep_their_attempts_and_come_back_when_the_pause_ends(engine):
    add(engine, row(1, opp(1)))
    [claimed] = claim_inbox(engine, worker_id="w", limit=10, now=T0)
    resume = T0 + timedelta(minutes=15)
    settle_inbox(engine, [claimed], [Settlement(claimed.id, Outcome.RELEASE, retry_at=resume)], now=T0)
    assert claim_inbox(engine, worker_id="w", limit=10, now=resume - timedelta(seconds=1)) == []
    [again] = claim_inbox(engine, worker_id="w", limit=10, now=resume)
    assert (again.attempts, stored(engine)["cdc:tx1:1:" + opp(1)].last_error) == (0, None)


@pytest.mark.postgres_only
def test_concurrent_workers_never_claim_the_same_row(engine):
    add(engine, *[row(n, opp(n)) for n in range(300)])
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        mine = claims.setdefault(name, [])
        try:
            while batch := claim_inbox(engine, worker_id=name, limit=25, now=T0):
                mine.extend(r.id for r in batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    everything = [i for ids in claims.values() for i in ids]
    assert len(everything) == len(set(everything)) == 300
