"""Sending processes: the run's reader stays in one process, the POSTs are spread over several.

Why processes: a `requests` POST costs about 270 us of CPU in Python, and
threads of one process share one interpreter lock; once that process is busy,
every socket call becomes a hand-over between threads, and the CPU per row
grows by half with 16 threads. Two processes with half the threads each
deliver at the same CPU per row as one thread alone.

Only the sending moves. The reader, the duplicate table, the resume state,
the reports and every counter stay in the main process, which hands each
worker batches of (line, body, key) and gets back one small tuple per row;
so exactly-once delivery, resume and the reports work as with threads. A
worker ignores Ctrl-C and SIGTERM: the main process decides when to stop and
tells the workers, and a worker whose main process vanished stops by itself.
Its log records go to the main process too, which writes them, under the
worker's name, with its own handlers: above the progress bar, not across it.
Each worker journals its deliveries itself, as their answers come (journal.py):
the main process may be killed while their outcomes are still in the pipe.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from movymporter.errors import MovymporterError
from movymporter.journal import Journals
from movymporter.pool import supervise, threads_for
from movymporter.sender import Delivery, Outcome, Sender, SinkHealth, Verdict
from movymporter.settings import Settings

FAILED = "failed"
"""Worker to main: (FAILED, a traceback): a thread of the worker hit an unexpected error."""
REFUSED = "refused"
"""Worker to main: (REFUSED, a MovymporterError): the worker cannot go on for a reason the user can mend (its
journal cannot be written, say); the main process raises it, as if it had met it itself."""
LOG = "log"
"""Worker to main: (LOG, level, logger name, message): a log record for the main process to write."""
DONE = "done"
"""Worker to main, last message: (DONE, what its request limit did)."""
STOP = "stop"
"""Main to worker: the run is stopping; finish the rows in flight, cut retries short."""
NO_MORE = None
"""Main to worker: no more rows will come."""

Packed = tuple[int, str, str, "int | None", int, int, list[int], int, str, bool]
"""An Outcome without its Delivery, and whether the worker found the sink down."""


def shares(concurrency: int, processes: int) -> list[int]:
    """CONCURRENCY split over the worker processes (a process with no share is not started)."""
    processes = min(processes, concurrency)
    return [concurrency // processes + (index < concurrency % processes) for index in range(processes)]


class ProcessWorkers:
    """Same contract as pool.DeliveryWorkers (`run`, `lock`, `unfinished`), with the POSTs made by
    worker processes. Start them (`with ProcessWorkers(...)`) before the run opens files it writes:
    a forked worker then holds nothing of them."""

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
        self._processes: list[tuple[Any, Connection, int]] = []
        self.limits: list[dict[str, Any]] = []
        """What each worker's request limit did (see throttle.AdaptiveLimit.describe), as they end."""

    def __enter__(self) -> ProcessWorkers:
        # fork is cheap and needs no re-import; elsewhere (macOS, Windows) the safe default spawns.
        method = "fork" if sys.platform.startswith("linux") else None
        context = multiprocessing.get_context(method)
        for number, share in enumerate(shares(self._settings.concurrency, self._settings.workers)):
            ours, theirs = context.Pipe()
            child_settings = self._settings.model_copy(update={"concurrency": share, "workers": 1})
            # A forked worker holds copies of this process's ends of every pipe made so far; it must close
            # them, or it would keep its own and its siblings' pipes open after this process dies.
            ours_so_far = [connection for _, connection, _ in self._processes] + [ours]
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
            self._processes.append((process, ours, threads_for(share)))
        return self

    def __exit__(self, error_type: type[BaseException] | None, *exc_info: object) -> None:
        """Wait for the workers to end (they have been told to); on an error or a second Ctrl-C, end them now."""
        with self.lock:
            self._closed = True  # outcomes arriving from now on are not the run's business
        if error_type is not None:
            for process, _, _ in self._processes:
                process.kill()
        for _, connection, _ in self._processes:
            try:
                connection.send(STOP)
                connection.send(NO_MORE)
            except OSError:
                pass  # the worker is gone already
        deadline = time.monotonic() + self._settings.connect_timeout + self._settings.read_timeout + 1
        for process, connection, _ in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()

    def run(self, deliveries: Iterator[Delivery], *, halt: threading.Event, grace_s: float) -> bool:
        """Deliver everything `deliveries` yields; False when, after a halt, rows were still in
        flight `grace_s` seconds later (their outcomes are then not recorded)."""
        feeders = [
            threading.Thread(
                target=self._feed,
                args=(deliveries, halt, process, connection, threads),
                name=f"movymporter-feed-{number}",
                daemon=True,
            )
            for number, (process, connection, threads) in enumerate(self._processes)
        ]
        supervise(feeders, halt=halt, grace_s=grace_s, poll_s=self._poll_s, lock=self.lock, on_idle=self._on_idle)
        with self.lock:
            self._closed = True
            complete = not self.unfinished
        if not complete:  # given up on: they must not go on posting while the run writes its reports
            for process, _, _ in self._processes:
                process.kill()
        if self._failure is not None:
            raise self._failure
        if not (self._exhausted or halt.is_set()):
            raise WorkerFailed("the sending processes ended before the file was read to its end")
        return complete

    def _feed(
        self,
        deliveries: Iterator[Delivery],
        halt: threading.Event,
        process: Any,
        connection: Connection,
        threads: int,
    ) -> None:
        """Keep one worker supplied and hand its outcomes to the run, until the worker says it is done.

        The worker holds up to four times its threads in rows and is topped up, in one message, when
        half of that is left: rows travel in batches, not one message each."""
        window = threads * 4
        sent: set[int] = set()
        exhausted = stopping = said_stop = said_no_more = False
        try:
            while True:
                batch: list[Delivery] = []
                with self.lock:
                    stopping = stopping or halt.is_set() or self._failure is not None
                    refill = len(sent) <= window // 2
                    while refill and not (exhausted or stopping) and len(sent) + len(batch) < window:
                        delivery = next(deliveries, None)
                        if delivery is None:
                            exhausted = self._exhausted = True
                        else:
                            self.unfinished[delivery.line] = delivery
                            batch.append(delivery)
                    sent.update(delivery.line for delivery in batch)
                if batch:
                    _pipe(connection.send, [(delivery.line, delivery.body, delivery.key) for delivery in batch])
                if stopping and not said_stop:
                    _pipe(connection.send, STOP)
                    said_stop = True
                if (exhausted or stopping) and not said_no_more:
                    _pipe(connection.send, NO_MORE)
                    said_no_more = True
                if not _pipe(connection.poll, self._poll_s):
                    continue
                message = _pipe(connection.recv)
                if isinstance(message, tuple) and message[0] == LOG:
                    _, level, name, text = message
                    logging.getLogger(name).log(level, "%s: %s", process.name, text)
                    continue
                if isinstance(message, tuple) and message[0] == REFUSED:
                    raise message[1]
                if isinstance(message, tuple) and message[0] == FAILED:
                    raise WorkerFailed(f"{process.name} failed:\n{message[1]}")
                if isinstance(message, tuple) and message[0] == DONE:
                    with self.lock:
                        self.limits.append(message[1])
                    if sent:
                        raise _WorkerGone
                    return
                self._settle(message, sent)
        except _WorkerGone:
            self._lost(process, sent)
        except BaseException as error:  # noqa: BLE001 - re-raised on the main thread by run()
            with self.lock:
                self._failure = self._failure or error

    def _settle(self, packed: list[Packed], sent: set[int]) -> None:
        with self.lock:
            for line, verdict, reason, status, attempts, counted, statuses, unanswered, last_error, down in packed:
                sent.discard(line)
                if down and not self._health.down:
                    self._health.down = True
                    self._health.last_error = last_error
                if self._closed:
                    continue
                delivery = self.unfinished.pop(line)
                outcome = Outcome(delivery, Verdict(verdict), reason, status, attempts, counted, statuses)
                outcome.unanswered, outcome.last_error = unanswered, last_error
                self._on_outcome(outcome)

    def _lost(self, process: Any, sent: set[int]) -> None:
        """A worker died (killed, out of memory) or ended early: its rows end as not delivered, but for those its
        journal says the sink took; the run stops."""
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


class _ToMainProcess(logging.Handler):
    """A worker's only log handler: the main process owns the terminal (and the progress bar on it)."""

    def __init__(self, send: Callable[[object], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):  # the main process is gone: nobody to tell
            self._send((LOG, record.levelno, record.name, record.getMessage()))


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


def serve(settings: Settings, connection: Connection, not_ours: list[Connection], journals: Journals | None) -> None:
    """A worker process: POST the rows the main process sends, journal the deliveries, answer with the outcomes.

    Ends when told there is no more, or when the main process is gone (its pipe reads end of file)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for other in not_ours:
        other.close()
    reply_lock = threading.RLock()

    def send(message: object) -> None:
        with reply_lock:
            connection.send(message)

    root = logging.getLogger()
    for handler in root.handlers[:]:  # the forked copies of the main process's handlers
        root.removeHandler(handler)
    root.addHandler(_ToMainProcess(send))
    root.setLevel(settings.log_level)  # a spawned worker starts without the main process's configuration
    halt = threading.Event()
    sender = Sender(settings, halt=halt)
    try:
        journal = journals.writer(sync=settings.durable) if journals is not None else None
    except MovymporterError as error:
        with contextlib.suppress(OSError):
            connection.send((REFUSED, error))
        return
    deliver = functools.partial(sender.deliver, on_delivered=journal.delivered if journal is not None else None)
    threads = threads_for(settings.concurrency)
    inbox: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
    outbox: list[Packed] = []
    batch = max(1, threads // 2)

    def reply(packed: Packed | None) -> None:
        """Outcomes go back in batches: when enough are ready, when the worker has no row left to
        start, when a thread ends, and at least every 0.2 s (the flusher)."""
        with reply_lock:
            if packed is not None:
                outbox.append(packed)
                if len(outbox) < batch and not inbox.empty():
                    return
            if outbox:
                try:
                    connection.send(outbox[:])
                except OSError:
                    halt.set()
                outbox.clear()

    def flusher() -> None:
        while not halt.wait(0.2):
            reply(None)

    def receive() -> None:
        try:
            while True:
                message = connection.recv()
                if message == STOP:
                    halt.set()
                elif message is NO_MORE:
                    for _ in range(threads):
                        inbox.put(None)
                else:
                    for line, body, key in message:
                        inbox.put(Delivery(line, [], body, key))
        except (EOFError, OSError):  # the main process is gone: stop as if told to
            halt.set()
            for _ in range(threads):
                inbox.put(None)

    def work() -> None:
        try:
            deliver_all()
        except MovymporterError as error:  # the main process says it, as for an error of its own
            halt.set()
            with reply_lock, contextlib.suppress(OSError):
                connection.send((REFUSED, error))
        except BaseException:  # noqa: BLE001 - a bug: the main process stops the run and shows it
            halt.set()
            with reply_lock, contextlib.suppress(OSError):
                connection.send((FAILED, traceback.format_exc()))

    def deliver_all() -> None:
        try:
            while sender.admission.enter() and deliver_one():
                pass
        finally:
            sender.admission.close()  # no row left: wake the spare threads
            reply(None)

    def deliver_one() -> bool:
        """Deliver the next row and queue its outcome; False when there are no more rows."""
        try:
            delivery = inbox.get()
            if delivery is None:
                return False
            outcome = deliver(delivery)
        finally:
            sender.admission.leave()
        reply(
            (
                delivery.line,
                outcome.verdict.value,
                outcome.reason,
                outcome.status,
                outcome.attempts,
                outcome.counted,
                outcome.statuses,
                outcome.unanswered,
                outcome.last_error,
                sender.health.down,
            )
        )
        return True

    threading.Thread(target=receive, name="movymporter-receive", daemon=True).start()
    threading.Thread(target=flusher, name="movymporter-flush", daemon=True).start()
    workers = [threading.Thread(target=work, name=f"movymporter-post-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if journal is not None:
        journal.close()  # before DONE: the main process folds the journal into the state once every worker is done
    with reply_lock, contextlib.suppress(OSError):  # OSError: the main process is gone
        connection.send((DONE, sender.slots.describe()))
    sender.close()
