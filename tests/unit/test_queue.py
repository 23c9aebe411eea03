"""The queue mechanism's pure parts: outcomes, limits, the two table descriptors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connector import queue
from connector.sync.outbox_claims import OUTBOX
from connector.webhooks.processing import INBOX


def test_outcomes_accept_their_names_and_refuse_anything_else():
    assert queue.Settlement(1, "transient").outcome is queue.Outcome.TRANSIENT
    assert queue.Settlement(1, queue.Outcome.DONE).outcome == "done"
    with pytest.raises(ValueError):
        queue.Settlement(1, "delivered")


def test_each_queue_has_its_own_claim_lock_and_statuses():
    assert OUTBOX.lock_key != INBOX.lock_key
    assert all(0 < key < 2**63 for key in (OUTBOX.lock_key, INBOX.lock_key))
    assert OUTBOX.statuses == ("pending", "in_flight", "done", "dead")
    assert INBOX.statuses == ("pending", "in_flight", "done", "failed", "dead")


def test_a_claim_lasts_its_lease_and_the_inbox_lease_is_the_longer_one():
    assert (OUTBOX.lease, INBOX.lease) == (queue.DEFAULT_LEASE, queue.LONG_LEASE)
    assert INBOX.lease > OUTBOX.lease


def test_queue_times_are_utc_and_must_be_timezone_aware():
    paris = datetime(2026, 11, 24, 10, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert queue.utc_now(paris) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert queue.utc_now(paris).tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        queue.utc_now(datetime(2026, 11, 24, 10, tzinfo=UTC).replace(tzinfo=None))
    assert queue.utc(datetime(2026, 11, 24, 10, tzinfo=UTC).replace(tzinfo=None)) == datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_the_last_retry_waits_at_most_an_hour():
    delays = [queue.backoff(n) for n in range(1, queue.MAX_ATTEMPTS)]
    assert delays[0] == timedelta(minutes=1) and delays[-1] == timedelta(hours=1)
