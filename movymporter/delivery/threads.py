"""ThreadExecutor: threads of this process take rows from the run's reader and deliver them.

Each worker takes the next delivery from one shared iterator (which reads and
validates the file as it goes) and hands the outcome to one callback; both run
under a single lock, so the run's counters, reports and resume state need no
other locking and no row is handed from thread to thread. (A pool fed by the
main thread paid two thread wake-ups per row: 50 to 135 us of CPU, more than
the reading and validating.)

How many requests are in flight is the sender's business (CONCURRENCY slots);
a few more workers than slots let other rows use a slot while one waits out
its backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from movymporter.delivery.limits import Admission
from movymporter.delivery.outcome import Delivery, Outcome


def threads_for(concurrency: int) -> int:
    """Worker threads for CONCURRENCY request slots: a row waiting out a backoff holds a thread but no
    slot, so a quarter more threads keep the slots busy; more only cost CPU (every socket call hands the
    interpreter lock to another thread)."""
    return concurrency + max(2, concurrency // 4)


def supervise(
    threads: list[threading.Thread],
    *,
    halt: threading.Event,
    grace_s: float,
    poll_s: float,
    lock: threading.Lock,
    on_idle: Callable[[], None],
) -> None:
    """Start the threads and wait for them to end, calling `on_idle` (under `lock`) every `poll_s`
    seconds; once `halt` is set, wait `grace_s` seconds at most."""
    for thread in threads:
        thread.start()
    deadline: float | None = None
    while alive := [thread for thread in threads if thread.is_alive()]:
        if halt.is_set() and deadline is None:
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            return
        alive[0].join(poll_s)
        with lock:
            on_idle()


class ThreadExecutor:
    """An Executor (see the package): `threads` threads of this process, each taking the next row and
    delivering it itself."""

    def __init__(
        self,
        deliver: Callable[[Delivery], Outcome],
        on_outcome: Callable[[Outcome], None],
        *,
        threads: int,
        admission: Admission | None = None,
        on_idle: Callable[[], None] = lambda: None,
        poll_s: float = 0.2,
    ) -> None:
        """`admission` (the sender's) keeps the threads beyond the request slots asleep until a backoff."""
        self._deliver = deliver
        self._admission = admission
        self._on_outcome = on_outcome
        self._threads = threads
        self.lock = threading.Lock()
        self._on_idle = on_idle
        self._poll_s = poll_s
        self._failure: BaseException | None = None
        self._closed = False
        self.unfinished: dict[int, Delivery] = {}
        """Deliveries in flight, by line: after a halt, those the grace period did not see answered."""

    def run(self, deliveries: Iterator[Delivery], *, halt: threading.Event, grace_s: float) -> bool:
        """Deliver everything `deliveries` yields; False when, after a halt, rows were still in
        flight `grace_s` seconds later (their outcomes are then not recorded)."""
        workers = [
            threading.Thread(target=self._work, args=(deliveries, halt), name=f"movymporter-post-{number}", daemon=True)
            for number in range(self._threads)
        ]
        supervise(workers, halt=halt, grace_s=grace_s, poll_s=self._poll_s, lock=self.lock, on_idle=self._on_idle)
        with self.lock:
            self._closed = True
            complete = not self.unfinished
        if self._failure is not None:
            raise self._failure
        return complete

    def _work(self, deliveries: Iterator[Delivery], halt: threading.Event) -> None:
        admission = self._admission
        try:
            while admission is None or admission.enter():
                try:
                    with self.lock:
                        stop = self._failure is not None or halt.is_set()
                        delivery = None if stop else next(deliveries, None)
                        if delivery is None:
                            return
                        self.unfinished[delivery.line] = delivery
                    outcome = self._deliver(delivery)
                    with self.lock:
                        if not self._closed:
                            del self.unfinished[delivery.line]
                            self._on_outcome(outcome)
                finally:
                    if admission is not None:
                        admission.leave()
        except BaseException as error:  # noqa: BLE001 - re-raised on the main thread by run()
            with self.lock:
                self._failure = self._failure or error
        finally:
            if admission is not None:
                admission.close()  # no row left for anyone, or the run is stopping: wake the spare threads
