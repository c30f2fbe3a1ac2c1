"""ProcessExecutor: the run's reader stays in one process, the POSTs are spread over several.

Why processes: a `requests` POST costs about 270 us of CPU in Python, and
threads of one process share one interpreter lock; once that process is busy,
every socket call becomes a hand-over between threads, and the CPU per row
grows by half with 16 threads. Two processes with half the threads each
deliver at the same CPU per row as one thread alone.

Only the sending moves. The reader, the duplicate table, the resume state,
the reports and every counter stay in the main process, which hands each
worker (worker.py) batches of (line, body, key) and gets back one Answer per row
(outcome.py); so exactly-once delivery, resume and the reports work as with
threads. The main process decides when to stop, and tells the workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from movymporter.delivery.outcome import Answer, Delivery, Outcome, Verdict
from movymporter.delivery.sender import SinkHealth
from movymporter.delivery.threads import supervise, threads_for
from movymporter.delivery.worker import DONE, FAILED, LOG, NO_MORE, REFUSED, STOP, serve
from movymporter.journal import Journals
from movymporter.settings import Settings


def shares(concurrency: int, processes: int) -> list[int]:
    """CONCURRENCY split over the worker processes (a process with no share is not started)."""
    processes = min(processes, concurrency)
    return [concurrency // processes + (index < concurrency % processes) for index in range(processes)]


@dataclass(eq=False)
class _Feed:
    """One worker process as the main process sees it: its pipe, and the rows it holds."""

    process: BaseProcess
    connection: Connection
    window: int
    """The most rows the worker holds: four times its threads; topped up when half of that is left."""
    sent: set[int] = field(default_factory=set)
    """Lines sent to the worker and not answered yet."""
    exhausted: bool = False
    stopping: bool = False
    said_stop: bool = False
    said_no_more: bool = False


class ProcessExecutor:
    """An Executor (see the package) whose POSTs are made by worker processes. Start them
    (`with ProcessExecutor(...)`) before the run opens files it writes: a forked worker then holds nothing of them."""

    def __init__(
        self,
        settings: Settings,
        on_outcome: Callable[[Outcome], None],
        *,
        journals: Journals | None,
        health: SinkHealth,
        on_lost: Callable[[str], None],
        on_idle: Callable[[], None] = lambda: None,
        poll_s: float = 0.2,
    ) -> None:
        self._settings = settings
        self._on_outcome = on_outcome
        self._journals = journals
        self._health = health
        self._on_lost = on_lost
        self._on_idle = on_idle
        self._poll_s = poll_s
        self.lock = threading.Lock()
        self.unfinished: dict[int, Delivery] = {}
        """Deliveries in flight, by line: after a halt, those the grace period did not see answered."""
        self._failure: BaseException | None = None
        self._closed = False
        self._exhausted = False
        """Whether the run's reader has no more rows (it stopped, or the file ended)."""
        self._feeds: list[_Feed] = []
        self.limits: list[dict[str, Any]] = []
        """What each worker's request limit did (see limits.AdaptiveLimit.describe), as they end."""

    def __enter__(self) -> ProcessExecutor:
        # fork is cheap and needs no re-import; elsewhere (macOS, Windows) the safe default spawns.
        method = "fork" if sys.platform.startswith("linux") else None
        context = multiprocessing.get_context(method)
        for number, share in enumerate(shares(self._settings.concurrency, self._settings.workers)):
            ours, theirs = context.Pipe()
            child_settings = self._settings.model_copy(update={"concurrency": share, "workers": 1})
            # A forked worker holds copies of this process's ends of every pipe made so far; it must close
            # them, or it would keep its own and its siblings' pipes open after this process dies.
            ours_so_far = [feed.connection for feed in self._feeds] + [ours]
            process = context.Process(
                target=serve,
                args=(child_settings, theirs, ours_so_far, self._journals),
                name=f"movymporter-worker-{number}",
                daemon=True,
            )
            # Ctrl-C between the fork and the worker's own signal set-up must not reach the worker.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            theirs.close()
            self._feeds.append(_Feed(process, ours, window=threads_for(share) * 4))
        return self

    def __exit__(self, error_type: type[BaseException] | None, *exc_info: object) -> None:
        """Wait for the workers to end (they have been told to); on an error or a second Ctrl-C, end them now."""
        with self.lock:
            self._closed = True  # outcomes arriving from now on are not the run's business
        if error_type is not None:
            for feed in self._feeds:
                feed.process.kill()
        for feed in self._feeds:
            try:
                feed.connection.send(STOP)
                feed.connection.send(NO_MORE)
            except OSError:
                pass  # the worker is gone already
        deadline = time.monotonic() + self._settings.connect_timeout + self._settings.read_timeout + 1
        for feed in self._feeds:
            feed.process.join(max(0.0, deadline - time.monotonic()))
            if feed.process.is_alive():
                feed.process.kill()
                feed.process.join()
            feed.connection.close()

    def run(self, deliveries: Iterator[Delivery], *, halt: threading.Event, grace_s: float) -> bool:
        """Deliver everything `deliveries` yields; False when, after a halt, rows were still in
        flight `grace_s` seconds later (their outcomes are then not recorded)."""
        feeders = [
            threading.Thread(
                target=self._feed, args=(deliveries, halt, feed), name=f"movymporter-feed-{number}", daemon=True
            )
            for number, feed in enumerate(self._feeds)
        ]
        supervise(feeders, halt=halt, grace_s=grace_s, poll_s=self._poll_s, lock=self.lock, on_idle=self._on_idle)
        with self.lock:
            self._closed = True
            complete = not self.unfinished
        if not complete:  # given up on: they must not go on posting while the run writes its reports
            for feed in self._feeds:
                feed.process.kill()
        if self._failure is not None:
            raise self._failure
        if not (self._exhausted or halt.is_set()):
            raise WorkerFailed("the sending processes ended before the file was read to its end")
        return complete

    def _feed(self, deliveries: Iterator[Delivery], halt: threading.Event, feed: _Feed) -> None:
        """Keep one worker supplied and hand its outcomes to the run, until the worker says it is done.

        Rows travel in batches, not one message each (see `_Feed.window`)."""
        try:
            while True:
                self._top_up(deliveries, halt, feed)
                if _pipe(feed.connection.poll, self._poll_s) and self._handle(_pipe(feed.connection.recv), feed):
                    return
        except _WorkerGone:
            self._lost(feed)
        except BaseException as error:  # noqa: BLE001 - re-raised on the main thread by run()
            with self.lock:
                self._failure = self._failure or error

    def _top_up(self, deliveries: Iterator[Delivery], halt: threading.Event, feed: _Feed) -> None:
        """Send the worker the rows it has room for, in one message; then, once, that the run stops and that no
        more rows will come."""
        batch = self._take(deliveries, halt, feed)
        if batch:
            _pipe(feed.connection.send, [(delivery.line, delivery.body, delivery.key) for delivery in batch])
        if feed.stopping and not feed.said_stop:
            _pipe(feed.connection.send, STOP)
            feed.said_stop = True
        if (feed.exhausted or feed.stopping) and not feed.said_no_more:
            _pipe(feed.connection.send, NO_MORE)
            feed.said_no_more = True

    def _take(self, deliveries: Iterator[Delivery], halt: threading.Event, feed: _Feed) -> list[Delivery]:
        """The next rows for the worker from the run's reader (none until half its window is answered), noted
        as in flight; whether the run stops, or the reader has no more, is noted on the feed."""
        batch: list[Delivery] = []
        with self.lock:
            feed.stopping = feed.stopping or halt.is_set() or self._failure is not None
            refill = len(feed.sent) <= feed.window // 2
            while refill and not (feed.exhausted or feed.stopping) and len(feed.sent) + len(batch) < feed.window:
                delivery = next(deliveries, None)
                if delivery is None:
                    feed.exhausted = self._exhausted = True
                else:
                    self.unfinished[delivery.line] = delivery
                    batch.append(delivery)
            feed.sent.update(delivery.line for delivery in batch)
        return batch

    def _handle(self, message: Any, feed: _Feed) -> bool:
        """One message from the worker: outcomes, a log record, an error to raise, or DONE (True: it is)."""
        kind = message[0] if isinstance(message, tuple) else None
        if kind == LOG:
            _, level, name, text = message
            logging.getLogger(name).log(level, "%s: %s", feed.process.name, text)
        elif kind == REFUSED:
            raise message[1]
        elif kind == FAILED:
            raise WorkerFailed(f"{feed.process.name} failed:\n{message[1]}")
        elif kind == DONE:
            with self.lock:
                self.limits.append(message[1])
            if feed.sent:
                raise _WorkerGone
            return True
        else:
            self._settle(message, feed.sent)
        return False

    def _settle(self, answers: list[Answer], sent: set[int]) -> None:
        with self.lock:
            for answer in answers:
                sent.discard(answer.line)
                if answer.sink_down:
                    self._health.found_down(answer.last_error)
                if self._closed:
                    continue
                self._on_outcome(Outcome.from_answer(self.unfinished.pop(answer.line), answer))

    def _lost(self, feed: _Feed) -> None:
        """A worker died (killed, out of memory) or ended early: its rows end as not delivered, but for those its
        journal says the sink took; the run stops."""
        process, sent = feed.process, feed.sent
        process.join(1)
        with self.lock:
            if self._closed:
                return
            why = f"the sending process {process.name} ended unexpectedly (exit code {process.exitcode})"
            for line in sorted(self._journaled(sent)):
                delivery = self.unfinished.pop(line)
                sent.discard(line)
                self._on_outcome(Outcome(delivery, Verdict.DELIVERED, status=201, attempts=1, statuses=[201]))
            for line in sorted(sent):
                delivery = self.unfinished.pop(line)
                self._on_outcome(Outcome(delivery, Verdict.ABORTED, f"not delivered: {why}; the sink may have it"))
            sent.clear()
            self._on_lost(why)

    def _journaled(self, lines: set[int]) -> set[int]:
        """Which of these rows a dead worker's journal holds (it is complete now: no writer holds it any more)."""
        if self._journals is None or not lines:
            return set()
        return {line for line in self._journals.written_by_the_gone() if line in lines}


class _WorkerGone(Exception):
    """The pipe to a worker broke, or the worker ended with rows unanswered."""


class WorkerFailed(Exception):
    """A worker process hit an unexpected error (a bug): the run stops with its traceback."""


def _pipe(operation: Callable[..., Any], *args: Any) -> Any:
    """One call on a worker's pipe; a broken pipe means the worker is gone."""
    try:
        return operation(*args)
    except (EOFError, OSError):
        raise _WorkerGone from None
