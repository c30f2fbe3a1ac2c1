"""One worker process of a ProcessExecutor (processes.py): it POSTs the rows the main process sends.

A worker ignores Ctrl-C and SIGTERM: the main process decides when to stop and
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
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

from movymporter.delivery.outcome import Answer, Delivery, Outcome
from movymporter.delivery.sender import Sender
from movymporter.delivery.threads import threads_for
from movymporter.errors import MovymporterError
from movymporter.journal import Journals, JournalWriter
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
# Anything else is rows, main to worker: a list of (line, body, key); or outcomes, worker to main: a list of Answers.


def serve(settings: Settings, connection: Connection, not_ours: list[Connection], journals: Journals | None) -> None:
    """A worker process: POST the rows the main process sends, journal the deliveries, answer with the outcomes.

    Ends when told there is no more, or when the main process is gone (its pipe reads end of file)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for other in not_ours:
        other.close()
    _Worker(settings, connection).serve(journals)


class _Worker:
    """One worker process: a receiving thread fills the inbox with rows, sending threads deliver them and queue
    their Answers in the outbox, which goes back in batches; every message to the main process is sent whole,
    under the reply lock."""

    def __init__(self, settings: Settings, connection: Connection) -> None:
        self._settings = settings
        self._connection = connection
        self._reply_lock = threading.RLock()
        root = logging.getLogger()
        for handler in root.handlers[:]:  # the forked copies of the main process's handlers
            root.removeHandler(handler)
        root.addHandler(_ToMainProcess(self._tell))
        root.setLevel(settings.log_level)  # a spawned worker starts without the main process's configuration
        self._halt = threading.Event()
        self._sender = Sender(settings, halt=self._halt)
        self._threads = threads_for(settings.concurrency)
        self._inbox: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._outbox: list[Answer] = []
        self._batch = max(1, self._threads // 2)
        self._deliver: Callable[[Delivery], Outcome] = self._sender.deliver
        self._journal: JournalWriter | None = None

    def serve(self, journals: Journals | None) -> None:
        """Deliver until there is no more, then say DONE (unless the journal cannot be opened: REFUSED)."""
        if not self._open_journal(journals):
            return
        threading.Thread(target=self._receive, name="movymporter-receive", daemon=True).start()
        threading.Thread(target=self._flush, name="movymporter-flush", daemon=True).start()
        workers = [threading.Thread(target=self._work, name=f"movymporter-post-{n}") for n in range(self._threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if self._journal is not None:
            self._journal.close()  # before DONE: the main process folds the journals into the state once all are done
        self._tell((DONE, self._sender.slots.describe()))
        self._sender.close()

    def _open_journal(self, journals: Journals | None) -> bool:
        """Journal each delivery as its answer comes; False (the main process told why) if that cannot be."""
        try:
            self._journal = journals.writer(sync=self._settings.durable) if journals is not None else None
        except MovymporterError as error:
            self._tell((REFUSED, error))
            return False
        if self._journal is not None:
            self._deliver = functools.partial(self._sender.deliver, on_delivered=self._journal.delivered)
        return True

    def _tell(self, message: object) -> None:
        """One message to the main process, whole; if it is gone, nobody is left to tell."""
        with self._reply_lock, contextlib.suppress(OSError):
            self._connection.send(message)

    def _reply(self, answer: Answer | None) -> None:
        """Outcomes go back in batches: when enough are ready, when the worker has no row left to
        start, when a thread ends, and at least every 0.2 s (the flusher)."""
        with self._reply_lock:
            if answer is not None:
                self._outbox.append(answer)
                if len(self._outbox) < self._batch and not self._inbox.empty():
                    return
            if self._outbox:
                try:
                    self._connection.send(self._outbox[:])
                except OSError:
                    self._halt.set()
                self._outbox.clear()

    def _flush(self) -> None:
        while not self._halt.wait(0.2):
            self._reply(None)

    def _receive(self) -> None:
        """Rows from the main process into the inbox, and its word to stop; ends each sending thread once there
        are no more rows, or once the main process is gone (stopping as if told to)."""
        try:
            while True:
                message = self._connection.recv()
                if message == STOP:
                    self._halt.set()
                elif message is NO_MORE:
                    self._no_more()
                else:
                    for line, body, key in message:
                        self._inbox.put(Delivery(line, [], body, key))
        except (EOFError, OSError):
            self._halt.set()
            self._no_more()

    def _no_more(self) -> None:
        for _ in range(self._threads):
            self._inbox.put(None)

    def _work(self) -> None:
        """One sending thread; what stops it is told to the main process, which stops the run."""
        try:
            self._deliver_all()
        except MovymporterError as error:  # the main process says it, as for an error of its own
            self._halt.set()
            self._tell((REFUSED, error))
        except BaseException:  # noqa: BLE001 - a bug: the main process stops the run and shows it
            self._halt.set()
            self._tell((FAILED, traceback.format_exc()))

    def _deliver_all(self) -> None:
        admission = self._sender.admission
        try:
            while admission.enter() and self._deliver_one():
                pass
        finally:
            admission.close()  # no row left: wake the spare threads
            self._reply(None)

    def _deliver_one(self) -> bool:
        """Deliver the next row and queue its outcome; False when there are no more rows."""
        try:
            delivery = self._inbox.get()
            if delivery is None:
                return False
            outcome = self._deliver(delivery)
        finally:
            self._sender.admission.leave()
        self._reply(outcome.answer(self._sender.health.down))
        return True


class _ToMainProcess(logging.Handler):
    """A worker's only log handler: the main process owns the terminal (and the progress bar on it). `send`
    drops the record once the main process is gone."""

    def __init__(self, send: Callable[[object], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send((LOG, record.levelno, record.name, record.getMessage()))
