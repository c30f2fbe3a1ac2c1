"""Delivery: validated rows in, one Outcome per row out.

The seam between the run and the sink is an executor. It takes the run's deliveries (validated rows, each with
its JSON body and idempotency key) from one shared iterator, POSTs each through a Sender (one POST per row,
retried as SPEC section 3 says), and hands one Outcome per row to the run's callback. The run's counters,
reports and resume state live behind that callback and need no locking of their own: an executor calls it
under its `lock`. Which executor sends (threads of this process, worker processes, a cluster) is the run's
choice, made in one place; nothing else knows.

    outcome.py    Delivery, Verdict, Outcome; Answer, an Outcome on the wire between processes
    verdicts.py   what each HTTP status means: another attempt, or which verdict
    http.py       the pooled session, and the deadline of each answer
    sender.py     Sender: one POST per row, retried by tenacity; SinkHealth
    limits.py     request slots (fixed, or adaptive AIMD) and the admission of spare threads
    threads.py    ThreadExecutor: threads of this process
    processes.py  ProcessExecutor: worker processes (WORKERS > 1), each running worker.py
    worker.py     what one worker process runs
    cluster.py    ClusterExecutor: a Dask cluster (ENGINE=dask)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

from movymporter.delivery.outcome import Delivery


class Executor(Protocol):
    """What the run relies on, whichever executor sends."""

    lock: threading.Lock
    """Held while the run's callbacks (each outcome, the idle tick) run: what they touch needs no other lock."""
    unfinished: dict[int, Delivery]
    """Deliveries in flight, by line: after a halt, those the grace period did not see answered."""

    def run(self, deliveries: Iterator[Delivery], *, halt: threading.Event, grace_s: float) -> bool:
        """Deliver everything `deliveries` yields (taking each under `lock`); False when, after a halt, rows were
        still in flight `grace_s` seconds later (their outcomes are then not recorded)."""
        ...
