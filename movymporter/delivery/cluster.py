"""Sending on a Dask cluster: the run's coordinator reads and judges, the cluster's workers POST.

Only the sending moves, as with worker processes (processes.py): the reader, the duplicate table, the resume
state, the reports and every count stay with the coordinator, which hands the cluster batches of (line,
body, key) through Dask's futures and gets back one typed `Answer` per row. Each Dask worker holds, in a
worker plugin, the run's `Sender` (its session, retry policy and request limit), made once for every batch
it is given. A cluster-wide `distributed.Semaphore`, named after the sink's URL, bounds the batches being
sent at once, so that however many workers (and however many runs) share the cluster, no more than
CONCURRENCY requests reach one sink.

A stop (Ctrl-C, a refused configuration, the sink down) reaches each worker's plugin at once (`Client.run`):
its sender then cuts retries short, as in this process. A lost worker's batch ends as not
delivered (the LocalCluster this module starts does not run it again elsewhere; on a cluster of your own,
the scheduler's `allowed-failures` decides, and a batch it runs again sends its rows again under the same
idempotency keys: those the lost worker had sent, or finished without its answers collected yet, arrive
twice at most, no more than the batches out). The rows answered on the cluster but not yet reported back
when the coordinator itself is killed are at most the batches out: the coordinator journals each delivery as
its answer arrives.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from distributed import Client, LocalCluster, Semaphore, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from movymporter.delivery.outcome import Answer, Delivery, Outcome, Verdict
from movymporter.delivery.sender import Sender, SinkHealth
from movymporter.errors import ConfigError
from movymporter.journal import JournalWriter
from movymporter.settings import Settings

log = logging.getLogger("movymporter")

ROWS_PER_REQUEST_SLOT = 16
"""Rows in a batch for each request a batch may have in flight: enough that a batch's cost in the scheduler is
small next to its rows, few enough that a lost batch loses little."""
BATCHES_PER_WORKER = 2
"""Batches a worker sends at once: while one waits for its last answers, the next has started."""
BATCHES_OUT = 2
"""Batches the run has out for each one that may send: those sending, and as many ready to start."""


@dataclass(frozen=True)
class Shares:
    """How CONCURRENCY is shared on a cluster of `workers` workers: each batch may have `per_batch` requests in
    flight, and the cluster-wide semaphore lets `batches` of them send at once, so that the requests in flight
    never exceed CONCURRENCY, however many workers there are, or join later."""

    per_batch: int
    batches: int

    @classmethod
    def of(cls, concurrency: int, workers: int) -> Shares:
        per_batch = max(1, concurrency // (max(1, workers) * BATCHES_PER_WORKER))
        return cls(per_batch, max(1, concurrency // per_batch))

    @property
    def rows_per_batch(self) -> int:
        return self.per_batch * ROWS_PER_REQUEST_SLOT


class SendingPlugin(WorkerPlugin):
    """A Dask worker's part of one run: its sender (session, retry policy), made once for every batch."""

    def __init__(self, settings: Settings, shares: Shares, name: str) -> None:
        """Only what travels to the workers (pickled): the rest is made on each worker, in `setup`."""
        self.settings = settings
        self.shares = shares
        self.name = name
        self._sender: Sender | None = None
        self._semaphore: Semaphore | None = None

    def setup(self, worker: Any) -> None:
        self._halt = threading.Event()
        self._sender = Sender(self.settings, halt=self._halt)

    def teardown(self, worker: Any) -> None:
        self._halt.set()
        if self._sender is not None:
            self._sender.close()

    def send(self, rows: list[tuple[int, bytes, str]]) -> list[Answer]:
        """POST a batch, `per_batch` rows at a time, once the cluster-wide semaphore lets it; one answer per row,
        in order."""
        sender = self._sender
        assert sender is not None, "set up by the worker first"
        if self._semaphore is None:  # made in a task's thread: it talks to the scheduler
            name = f"movymporter-sink-{self.settings.url_out}"
            self._semaphore = Semaphore(max_leases=self.shares.batches, name=name)
        deliveries = [Delivery(line, [], body, key) for line, body, key in rows]
        with self._semaphore, ThreadPoolExecutor(self.shares.per_batch, thread_name_prefix="movymporter-post") as pool:
            outcomes = list(pool.map(sender.deliver, deliveries))
        return [outcome.answer(sender.health.down) for outcome in outcomes]

    def limit(self) -> dict[str, Any]:
        assert self._sender is not None
        return self._sender.slots.describe()

    def stop(self) -> None:
        """The run stops: cut retries short, as in the coordinator."""
        self._halt.set()


def send_batch(plugin_name: str, rows: list[tuple[int, bytes, str]]) -> list[Answer]:
    """The task the cluster runs: this worker's plugin sends the batch."""
    plugin: SendingPlugin = get_worker().plugins[plugin_name]
    return plugin.send(rows)


def _limit_of(plugin_name: str, dask_worker: Any) -> dict[str, Any]:
    return dask_worker.plugins[plugin_name].limit()


def _stop(plugin_name: str, dask_worker: Any) -> None:
    dask_worker.plugins[plugin_name].stop()


class ClusterExecutor:
    """The executor contract (see delivery/__init__.py) on a Dask cluster: the scheduler at DASK_SCHEDULER, or a
    LocalCluster of WORKERS processes started here. Use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        on_outcome: Callable[[Outcome], None],
        *,
        health: SinkHealth,
        journal: JournalWriter | None,
        on_idle: Callable[[], None] = lambda: None,
        poll_s: float = 0.2,
    ) -> None:
        self._settings = settings
        self._on_outcome = on_outcome
        self._health = health
        self._journal = journal
        self._on_idle = on_idle
        self._poll_s = poll_s
        self.lock = threading.Lock()
        self.unfinished: dict[int, Delivery] = {}
        """Deliveries in flight, by line: after a halt, those the grace period did not see answered."""
        self.limits: list[dict[str, Any]] = []
        self._parts = contextlib.ExitStack()
        self._name = f"movymporter-{uuid.uuid4().hex[:12]}"
        self._client: Client
        self._shares = Shares(1, 1)

    def __enter__(self) -> ClusterExecutor:
        settings = self._settings
        # Dask tells of every worker, connection and plugin at INFO; the run's own log says what matters.
        logging.getLogger("distributed").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        with self._parts as parts:
            address: Any = settings.dask_scheduler
            if address is None:
                address = parts.enter_context(
                    LocalCluster(
                        n_workers=settings.workers,
                        threads_per_worker=2,
                        processes=True,
                        dashboard_address=None,
                        scheduler_kwargs={"allowed_failures": 0},
                        silence_logs=logging.ERROR,
                    )
                )
            self._client = parts.enter_context(self._connect(address))
            workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
            if workers == 0:
                self._client.wait_for_workers(1, timeout=settings.connect_timeout * 10)
                workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
            self._shares = Shares.of(settings.concurrency, workers)
            # Each worker's sender has room for its batches at once; the semaphore holds the cluster to CONCURRENCY.
            slots = self._shares.per_batch * BATCHES_PER_WORKER
            plugin_settings = settings.model_copy(update={"concurrency": slots, "workers": workers})
            self._client.register_plugin(SendingPlugin(plugin_settings, self._shares, self._name), name=self._name)
            parts.callback(self._client.unregister_worker_plugin, self._name)
            log.info(
                "sending from a Dask cluster at %s: %d workers, %d batches at once of %d requests in flight each",
                self._client.scheduler.address,
                workers,
                self._shares.batches,
                self._shares.per_batch,
            )
            self._parts = parts.pop_all()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._parts.__exit__(*exc_info)

    def _connect(self, address: Any) -> Client:
        """A client of the cluster; ConfigError, with what to check, when the scheduler does not answer."""
        timeout = max(2.0, 3 * self._settings.connect_timeout)
        try:
            return Client(address, set_as_default=False, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise ConfigError(
                f"DASK_SCHEDULER (--scheduler) {address}: no Dask scheduler answered within {timeout:g} s ({error}); "
                "is it running (`dask scheduler`), and is the address its tcp://HOST:PORT?"
            ) from None

    def run(self, deliveries: Iterator[Delivery], *, halt: threading.Event, grace_s: float) -> bool:
        """Deliver everything `deliveries` yields; False when, after a halt, rows were still in flight `grace_s`
        seconds later (their outcomes are then not recorded)."""
        client, batch_rows = self._client, self._shares.rows_per_batch
        window = BATCHES_OUT * self._shares.batches
        pending: dict[Any, list[Delivery]] = {}
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        """The futures that finished, as they finish (Dask calls back from a thread of its own)."""
        exhausted, deadline = False, None
        while True:
            if halt.is_set() and deadline is None:
                deadline = time.monotonic() + grace_s
                client.run(_stop, self._name)
            while not (exhausted or halt.is_set()) and len(pending) < window:
                with self.lock:
                    batch = list(islice(deliveries, batch_rows))
                    self.unfinished.update((delivery.line, delivery) for delivery in batch)
                if not batch:
                    exhausted = True
                    break
                rows = [(delivery.line, delivery.body, delivery.key) for delivery in batch]
                future = client.submit(send_batch, self._name, rows, pure=False)
                pending[future] = batch
                future.add_done_callback(done.put)
            if not pending or (deadline is not None and time.monotonic() > deadline):
                break
            for future in _finished(done, self._poll_s):
                self._settle(pending.pop(future), future)
            with self.lock:
                self._on_idle()
        self.limits = list(client.run(_limit_of, self._name).values())
        if pending:  # given up on: they must not go on posting while the run writes its reports
            client.cancel(list(pending))
        with self.lock:
            return not self.unfinished

    def _settle(self, batch: list[Delivery], future: Any) -> None:
        try:
            answers: list[Answer] = future.result()
        except Exception as error:  # noqa: BLE001 - a lost worker, or a batch the cluster gave up on
            why = f"the Dask worker sending it was lost ({type(error).__name__})"
            aborted = Verdict.ABORTED.value
            reason = f"not delivered: {why}; the sink may have it"
            answers = [Answer(delivery.line, aborted, reason, None, 0, 0, [], 0, why, False) for delivery in batch]
        with self.lock:
            for delivery, answer in zip(batch, answers, strict=True):
                if answer.sink_down:
                    self._health.found_down(answer.last_error)
                del self.unfinished[delivery.line]
                outcome = Outcome.from_answer(delivery, answer)
                if self._journal is not None and outcome.verdict is Verdict.DELIVERED:
                    self._journal.delivered(delivery.line)
                self._on_outcome(outcome)


def _finished(done: queue.SimpleQueue[Any], wait_s: float) -> list[Any]:
    """The futures finished by now, waiting up to `wait_s` for the first."""
    try:
        finished = [done.get(timeout=wait_s)]
    except queue.Empty:
        return []
    while not done.empty():
        finished.append(done.get())
    return finished
