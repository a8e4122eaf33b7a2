"""A thread pool that knows when it is idle, so a test waits for the app's work to finish
instead of sleeping before it asserts that something did not happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class TrackedPool(ThreadPoolExecutor):
    def __init__(self, workers: int, name: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self._pending = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._pending == 0


def wait_idle(*pools: TrackedPool, timeout: float = 10.0) -> None:
    """Until every pool has finished what it was given, in order: acknowledgements start the
    work they hand on before they finish, so the first pool's idleness is checked first."""
    deadline = time.monotonic() + timeout
    for pool in pools:
        while not pool.idle:
            if time.monotonic() > deadline:
                raise AssertionError("the app did not finish its work in time")
            time.sleep(0.005)


def app_pools() -> tuple[TrackedPool, TrackedPool]:
    """The Slack app's acknowledgement and work pools, tracked."""
    return TrackedPool(16, "ack"), TrackedPool(4, "slack-work")
