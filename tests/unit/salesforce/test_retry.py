"""The one retry policy: exponential, jittered, capped, and only for transient failures."""

from __future__ import annotations

import pytest

from connector.salesforce.errors import SalesforceRecordError, SalesforceRetryableError
from connector.salesforce.retry import retry_policy


def failing(times: int, error: Exception):
    calls = []

    def operation():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return operation, calls


@pytest.mark.parametrize(("jitter", "expected"), [
    (1.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),   # the ceiling: doubling, capped at max_seconds
    (0.0, [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]),     # the floor: never less than half the step
    (0.5, [0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5]),
])
def test_backoff_schedule(jitter, expected):
    sleeps: list[float] = []
    operation, calls = failing(7, SalesforceRetryableError("503", code="HTTP_503"))
    assert retry_policy(8, 30, sleep=sleeps.append, jitter=lambda: jitter)(operation) == "ok"
    assert sleeps == expected
    assert len(calls) == 8


def test_gives_up_after_the_attempts_and_raises_the_classified_error():
    sleeps: list[float] = []
    error = SalesforceRetryableError("locked", code="UNABLE_TO_LOCK_ROW")
    operation, calls = failing(10, error)
    with pytest.raises(SalesforceRetryableError) as raised:
        retry_policy(3, 30, sleep=sleeps.append, jitter=lambda: 0.0)(operation)
    assert raised.value is error
    assert len(calls) == 3 and len(sleeps) == 2


def test_non_transient_errors_are_raised_at_once():
    sleeps: list[float] = []
    operation, calls = failing(1, SalesforceRecordError("dup", code="DUPLICATE_VALUE"))
    with pytest.raises(SalesforceRecordError):
        retry_policy(5, 30, sleep=sleeps.append)(operation)
    assert len(calls) == 1 and sleeps == []


def test_real_jitter_stays_within_the_bounds():
    sleeps: list[float] = []
    operation, _ = failing(4, SalesforceRetryableError("t", code="TIMEOUT"))
    retry_policy(5, 30, sleep=sleeps.append)(operation)
    for attempt, slept in enumerate(sleeps, start=1):
        step = min(30, 2 ** (attempt - 1))
        assert step / 2 <= slept <= step
