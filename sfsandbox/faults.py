"""Fault injection and the API allocation: latency, 500/503 answers, UNABLE_TO_LOCK_ROW,
REQUEST_LIMIT_EXCEEDED, plus the duplicate/out-of-order notification switches.
Reproducible: one seeded random.Random."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, InvalidOperation

DAY = 86400.0


@dataclass
class FaultSettings:
    latency_ms: int = 0
    error_rate_5xx: Decimal = Decimal(0)  # share of REST calls answered 500 or 503
    unable_to_lock_rate: Decimal = Decimal(0)  # share of record writes refused with UNABLE_TO_LOCK_ROW
    api_allocation: int = 100_000  # API calls per rolling day; then 403 REQUEST_LIMIT_EXCEEDED
    duplicate_notifications: bool = False  # deliver every acknowledged notification message twice
    reorder_notifications: bool = False  # shuffle queued notifications before delivery
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Faults:
    def __init__(self, settings: FaultSettings | None = None):
        self.settings = settings or FaultSettings()
        self.rng = random.Random(self.settings.seed)
        self._lock = threading.Lock()
        self.api_calls = 0
        self.total_api_calls = 0
        self._window_started = time.time()

    def configure(self, **changes: object) -> FaultSettings:
        known = {f.name: f.type for f in fields(FaultSettings)}
        with self._lock:
            for key, value in changes.items():
                if key not in known:
                    raise ValueError(f"unknown fault setting {key!r}")
                current = getattr(self.settings, key)
                if isinstance(current, bool):
                    if not isinstance(value, bool):
                        raise ValueError(f"{key} must be true or false")
                elif isinstance(current, int):
                    value = int(str(value))
                    if value < 0:
                        raise ValueError(f"{key} must not be negative")
                else:
                    try:
                        value = Decimal(str(value))
                    except InvalidOperation:
                        raise ValueError(f"{key} must be a number") from None
                    if not 0 <= value <= 1:
                        raise ValueError(f"{key} must be between 0 and 1")
                setattr(self.settings, key, value)
            if "seed" in changes:
                self.rng.seed(self.settings.seed)
        return self.settings

    def reset_allocation(self) -> None:
        with self._lock:
            self.api_calls = 0
            self._window_started = time.time()

    def usage(self) -> tuple[int, int]:
        with self._lock:
            self._roll()
            return self.api_calls, self.settings.api_allocation

    def _roll(self) -> None:
        if time.time() - self._window_started >= DAY:
            self.api_calls = 0
            self._window_started = time.time()

    def count_call(self) -> bool:
        """Count one API call; False when the allocation is already spent (not counted)."""
        with self._lock:
            self._roll()
            if self.api_calls >= self.settings.api_allocation:
                return False
            self.api_calls += 1
            self.total_api_calls += 1
            return True

    def latency(self) -> None:
        if self.settings.latency_ms:
            time.sleep(self.settings.latency_ms / 1000.0)

    def server_error(self) -> int | None:
        with self._lock:
            rate = self.settings.error_rate_5xx
            if rate and self.rng.random() < rate:
                return 500 if self.rng.random() < 0.5 else 503
        return None

    def lock_row(self) -> bool:
        with self._lock:
            rate = self.settings.unable_to_lock_rate
            return bool(rate) and self.rng.random() < rate

    def shuffle(self, items: list) -> None:
        with self._lock:
            self.rng.shuffle(items)
