"""Running a coroutine from a test, whatever else the test process runs: Playwright's synchronous
API keeps an event loop running in the main thread for the whole session (the browser tests), so
the coroutine runs in a thread of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def run_async(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, function, *args).result()
