"""Many deliveries in flight at once, never more than the window, results back on the main thread.

Worker threads only run `deliver`; every outcome is handed to one callback on
the thread that submits, so counters, reports and progress need no locks. The
window bounds memory: the reader waits while it is full.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from movymporter.sender import Delivery, Outcome


class _WorkerCrashed(Exception):
    """A bug in a worker thread, carried back to be raised on the main thread."""


class DeliveryPool:
    def __init__(
        self,
        deliver: Callable[[Delivery], Outcome],
        on_outcome: Callable[[Outcome], None],
        *,
        window: int,
        on_idle: Callable[[], None] = lambda: None,
        poll_s: float = 0.2,
    ) -> None:
        self._deliver = deliver
        self._on_outcome = on_outcome
        self._on_idle = on_idle
        self._window = window
        self._poll_s = poll_s
        self._finished: queue.SimpleQueue[Outcome | BaseException] = queue.SimpleQueue()
        self._executor = ThreadPoolExecutor(max_workers=window, thread_name_prefix="movymporter-post")
        self.in_flight = 0

    def submit(self, delivery: Delivery) -> None:
        """Start a delivery, first waiting (and handling outcomes) while the window is full."""
        while self.in_flight >= self._window:
            self._wait_one(None)
        self._collect_ready()
        self._executor.submit(self._run, delivery)
        self.in_flight += 1

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every delivery in flight; False when `timeout` seconds passed first."""
        remaining = timeout
        while self.in_flight:
            if remaining is not None and remaining <= 0:
                return False
            waited = self._wait_one(remaining)
            if remaining is not None:
                remaining -= waited
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, delivery: Delivery) -> None:
        try:
            self._finished.put(self._deliver(delivery))
        except BaseException as error:  # noqa: BLE001 - re-raised on the main thread by _handle
            self._finished.put(error)

    def _wait_one(self, limit: float | None) -> float:
        """Handle one outcome, refreshing progress while none comes; returns seconds waited."""
        waited = 0.0
        while True:
            step = self._poll_s if limit is None else min(self._poll_s, max(limit - waited, 0.0))
            try:
                item = self._finished.get(timeout=step)
            except queue.Empty:
                waited += step
                self._on_idle()
                if limit is not None and waited >= limit:
                    return waited
                continue
            self._handle(item)
            return waited

    def _collect_ready(self) -> None:
        while True:
            try:
                item = self._finished.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: Outcome | BaseException) -> None:
        self.in_flight -= 1
        if isinstance(item, BaseException):
            raise _WorkerCrashed(f"a delivery thread failed: {item!r}") from item
        self._on_outcome(item)
