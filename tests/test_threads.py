"""The thread executor: every row once, bounded, serialised bookkeeping, bugs surfaced, bounded stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.delivery.threads import ThreadExecutor
from movymporter.errors import InputError
from tests.conftest import GIVE_UP_S


def deliveries(count: int, during_read: list[str] | None = None) -> Iterator[Delivery]:
    for line in range(2, count + 2):
        if during_read is not None:
            during_read.append("read")
        yield Delivery(line, [str(line)], b"{}", f"k{line}")


class Recorder:
    """A fake sink call that records how many deliveries overlap, and the outcomes handed back.

    With `overlap`, the first deliveries wait for each other until that many are under way at once (the
    most a correct pool allows), so the highest overlap does not depend on how threads get scheduled."""

    def __init__(self, overlap: int = 1) -> None:
        self.active = 0
        self.most_active = 0
        self.outcomes: list[int] = []
        self._lock = threading.Condition()
        self._overlap = overlap

    def deliver(self, delivery: Delivery) -> Outcome:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self._lock.notify_all()
            assert self._lock.wait_for(lambda: self.most_active >= self._overlap, GIVE_UP_S), "threads never overlapped"
            self.active -= 1
        return Outcome(delivery, Verdict.DELIVERED, attempts=1, statuses=[201])

    def on_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome.delivery.line)


def test_every_row_is_delivered_once_and_its_outcome_handed_back() -> None:
    """Each delivery the reader yields is sent once and reported once."""
    recorder = Recorder()
    workers = ThreadExecutor(recorder.deliver, recorder.on_outcome, threads=8)

    complete = workers.run(deliveries(500), halt=threading.Event(), grace_s=1)

    assert complete
    assert sorted(recorder.outcomes) == list(range(2, 502))


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_no_more_rows_in_flight_than_threads(threads: int) -> None:
    """Memory stays flat: the reader is not asked for a row until a thread is free."""
    recorder = Recorder(overlap=threads)
    workers = ThreadExecutor(recorder.deliver, recorder.on_outcome, threads=threads)

    workers.run(deliveries(60), halt=threading.Event(), grace_s=1)

    assert recorder.most_active == threads


def test_reading_and_bookkeeping_never_overlap() -> None:
    """The reader and the outcome callback run under one lock, so the run's counters need no other."""
    events: list[str] = []
    inside = threading.Lock()
    overlaps = []

    def on_outcome(outcome: Outcome) -> None:
        if not inside.acquire(blocking=False):
            overlaps.append(outcome.delivery.line)
            return
        events.append("outcome")
        inside.release()

    def guarded(count: int) -> Iterator[Delivery]:
        for delivery in deliveries(count):
            if not inside.acquire(blocking=False):
                overlaps.append(delivery.line)
            else:
                inside.release()
            yield delivery

    workers = ThreadExecutor(Recorder(overlap=6).deliver, on_outcome, threads=6)
    workers.run(guarded(200), halt=threading.Event(), grace_s=1)

    assert overlaps == []
    assert events.count("outcome") == 200


def test_a_bug_in_a_delivery_thread_is_raised_on_the_main_thread() -> None:
    """An exception that is not an outcome stops the run and shows on the main thread."""

    def broken(delivery: Delivery) -> Outcome:
        raise ZeroDivisionError("bug")

    workers = ThreadExecutor(broken, lambda outcome: None, threads=4)

    with pytest.raises(ZeroDivisionError, match="bug"):
        workers.run(deliveries(10), halt=threading.Event(), grace_s=1)


def test_an_error_of_the_reader_keeps_its_type() -> None:
    """A user error met while reading in a worker (say, an undecodable file) reaches the CLI as itself: exit 2."""

    def unreadable() -> Iterator[Delivery]:
        yield from deliveries(3)
        raise InputError("films.csv cannot be read in the encoding given")

    workers = ThreadExecutor(Recorder().deliver, lambda outcome: None, threads=2)

    with pytest.raises(InputError, match="cannot be read"):
        workers.run(unreadable(), halt=threading.Event(), grace_s=1)


def test_after_a_halt_the_wait_for_rows_in_flight_is_bounded() -> None:
    """Requests still unanswered after the grace period are left behind; their late outcomes are not recorded."""
    halt, answer = threading.Event(), threading.Event()
    lock = threading.Lock()
    hanging: list[threading.Thread] = []
    recorder = Recorder()

    def hangs(delivery: Delivery) -> Outcome:
        """Wait for an answer that comes only once run() has returned (a run() that waited would fail here)."""
        with lock:
            hanging.append(threading.current_thread())
            if len(hanging) == 2:  # both threads hold a row: Ctrl-C now
                halt.set()
        assert answer.wait(GIVE_UP_S), "run() waited for the answers past its grace period"
        return recorder.deliver(delivery)

    workers = ThreadExecutor(hangs, recorder.on_outcome, threads=2, poll_s=0.02)

    complete = workers.run(deliveries(10), halt=halt, grace_s=0.3)

    assert not complete
    assert all(thread.is_alive() for thread in hanging), "run() returned while both requests were still unanswered"
    assert sorted(workers.unfinished) == [2, 3]
    answer.set()
    for thread in hanging:
        thread.join(GIVE_UP_S)
        assert not thread.is_alive()
    assert recorder.outcomes == []
