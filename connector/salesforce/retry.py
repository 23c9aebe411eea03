"""The one retry policy for Salesforce calls: exponential backoff with jitter, capped, logged.

Only ``SalesforceRetryableError`` is retried (timeouts, connection errors, 5xx,
UNABLE_TO_LOCK_ROW); everything else is raised at once. The sleep function and
the jitter source are injectable so tests run without sleeping and can assert
the exact schedule.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import tenacity

from connector.salesforce.errors import SalesforceRetryableError

log = logging.getLogger("billsync.salesforce")

#: First backoff step in seconds; doubles on each attempt up to the cap.
INITIAL_WAIT_SECONDS = 1.0


class BackoffWait(tenacity.wait.wait_base):
    """"Equal jitter" backoff: the n-th wait is uniform in [d/2, d] with d = min(cap, initial * 2**(n-1)).

    Half of each step is guaranteed, so concurrent workers never retry in a hot
    loop; the random half spreads them apart.
    """

    def __init__(self, initial: float, cap: float, jitter: Callable[[], float] = random.random):
        self.initial = initial
        self.cap = cap
        self.jitter = jitter

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.initial * 2 ** (attempt - 1))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        step = self.ceiling(retry_state.attempt_number)
        return step / 2 + step / 2 * self.jitter()


def retry_policy(attempts: int = 5, max_seconds: float = 30, *, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 initial: float = INITIAL_WAIT_SECONDS) -> tenacity.Retrying:
    """The policy every Salesforce call goes through; ``attempts`` counts the first try."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=BackoffWait(initial, max_seconds, jitter),
        retry=tenacity.retry_if_exception_type(SalesforceRetryableError),
        before_sleep=_log_retry(attempts),
        sleep=sleep,
        reraise=True,
    )


def _log_retry(attempts: int) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep_for = state.next_action.sleep if state.next_action else 0.0
        method = getattr(exc, "method", "") or "?"
        path = getattr(exc, "path", "") or "?"
        code = getattr(exc, "code", "") or type(exc).__name__
        log.warning(
            "salesforce retry: %s %s attempt %d/%d failed with %s; sleeping %.2fs",
            method, path, state.attempt_number, attempts, code, sleep_for,
            extra={"fields": {"method": method, "path": path, "attempt": state.attempt_number,
                              "error_code": code, "sleep_seconds": round(sleep_for, 3)}},
        )

    return before_sleep
