"""The sending side of one run: the sender, the delivery journals, the executor, and the metrics check around it.

Which executor sends is decided here, and only here: the threads of this process, worker processes
(WORKERS > 1) or a Dask cluster (ENGINE=dask). Each takes the same deliveries and gives back the same
outcomes, so nothing else in the run knows which one it is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from movymporter import metrics
from movymporter.delivery import Executor
from movymporter.delivery.outcome import Delivery, Outcome
from movymporter.delivery.processes import ProcessExecutor, shares
from movymporter.delivery.sender import Sender
from movymporter.delivery.threads import ThreadExecutor, threads_for
from movymporter.journal import Journals, JournalWriter
from movymporter.settings import Settings
from movymporter.state import ResumeState

log = logging.getLogger("movymporter")

JOURNALS = "journal"
"""STATE_DIR/journal/<input key>/: the delivery journals of each input (see journal.py)."""


class Sending:
    """Connects to the sink when made (failing fast when nothing listens); `start` readies the executor."""

    def __init__(
        self,
        settings: Settings,
        *,
        halt: threading.Event,
        session: requests.Session | None,
        sleep: Callable[[float], object] | None,
    ) -> None:
        self.settings = settings
        self._halt = halt
        self._injected_session = session is not None
        self._parts = contextlib.ExitStack()
        self.sender = Sender(settings, halt=halt, session=session, sleep=sleep)
        self._parts.callback(self.sender.close)
        try:
            self.sender.check_reachable()
        except BaseException:
            self._parts.close()
            raise
        self.journals: Journals | None = None
        """Where each sending process journals its deliveries; None when the input could not be keyed (a
        Ctrl-C while it was read to know it)."""
        self._executor: Executor | None = None
        self._journal: JournalWriter | None = None
        self.limits: list[dict[str, Any]] = []
        """What the request limit of each sending process did."""
        processes = self._processes()
        log.info(
            "sending to %s, %d requests in flight at most%s",
            settings.url_out,
            settings.concurrency,
            f" from {processes} processes" if processes > 1 and settings.engine == "local" else "",
        )

    def sink_down(self) -> str | None:
        """Why the sink counts as down (no usable answer for UNREACHABLE_AFTER), or None."""
        health = self.sender.health
        if not health.down:
            return None
        return (
            f"the sink at {self.settings.url_out} gave no usable answer for {self.settings.unreachable_after:g} s "
            f"(last error: {health.last_error})"
        )

    def start(
        self,
        journals: Path | None,
        on_outcome: Callable[[Outcome], None],
        *,
        on_lost: Callable[[str], None],
        on_idle: Callable[[], None],
    ) -> None:
        """Ready the executor. Worker processes are forked here, so call it before the run opens the files it
        writes: a forked worker then holds nothing of them."""
        settings = self.settings
        if journals is not None:
            self.journals = Journals(journals)
            if settings.fresh:
                self.journals.forget()  # before the workers start theirs
        if settings.engine == "dask":
            from movymporter.delivery.cluster import ClusterExecutor  # Dask takes a second to import: only if used

            self._journal = self.journals.writer(sync=settings.durable) if self.journals is not None else None
            self._executor = self._parts.enter_context(
                ClusterExecutor(settings, on_outcome, health=self.sender.health, journal=self._journal, on_idle=on_idle)
            )
            return
        if self._processes() > 1:
            self._executor = self._parts.enter_context(
                ProcessExecutor(
                    settings,
                    on_outcome,
                    journals=self.journals,
                    health=self.sender.health,
                    on_lost=on_lost,
                    on_idle=on_idle,
                )
            )
            return
        deliver = self.sender.deliver
        if self.journals is not None:
            self._journal = self.journals.writer(sync=settings.durable)
            deliver = functools.partial(deliver, on_delivered=self._journal.delivered)
        self._executor = ThreadExecutor(
            deliver,
            on_outcome,
            threads=threads_for(settings.concurrency),
            admission=self.sender.admission,
            on_idle=on_idle,
        )

    def run(self, deliveries: Iterator[Delivery], on_unanswered: Callable[[Delivery, str], None]) -> None:
        """Send every delivery; after a stop, rows still without an answer once the grace period is over go to
        `on_unanswered`."""
        executor = self._executor
        assert executor is not None, "start() first"
        grace = self.settings.connect_timeout + self.settings.read_timeout + 1
        complete = executor.run(deliveries, halt=self._halt, grace_s=grace)
        if self._journal is not None and complete:
            self._journal.close()  # else a request given up on may still be answered: its journal stays open
        self.limits = getattr(executor, "limits", None) or [self.sender.slots.describe()]
        if not complete:
            log.error("%d requests still had no answer after %.0f s", len(executor.unfinished), grace)
            reason = f"no answer before the run stopped ({grace:.0f} s after the stop); the sink may have it"
            for delivery in executor.unfinished.values():
                on_unanswered(delivery, reason)

    def absorb_journals(self, state: ResumeState, *, at_start: bool) -> None:
        """Fold into the state the deliveries it does not know of: those of a killed run (at the start), or of a
        sending process lost during this run (at the end), whose rows were then reported as not delivered."""
        journals = self.journals
        if journals is None:
            return
        with journals.absorbing() as lines:
            found = state.absorb(lines)
        if found and at_start:
            log.info("an interrupted run journaled %d deliveries it had not saved yet: not sent again", found)
        elif found:
            log.warning(
                "%d rows reported as not delivered were answered 201 after all (a request given up on, or a "
                "sending process stopped): a re-run will not send them again",
                found,
            )
        if not at_start:
            journals.tidy()

    def scrape(self) -> metrics.Snapshot | None:
        """A snapshot of the sink's counters, or None (with a warning) when they cannot be read."""
        sender, endpoint = self.sender, self.settings.metrics_endpoint
        try:
            return metrics.scrape(
                sender.session,
                endpoint,
                self.settings.read_timeout,
                sender.auth_headers_for(endpoint),
                verify=sender.verify,
                proxies=sender.proxies,
            )
        except metrics.MetricsUnavailable as error:
            log.warning("metrics check skipped: %s", error)
            return None

    def reconcile(
        self, before: metrics.Snapshot | None, seen: dict[int, int], unanswered: int
    ) -> metrics.Reconciliation:
        """The sink's counters after the run against those before and what the importer saw."""
        if before is None:
            return metrics.Reconciliation(
                "unavailable", notes=["the metrics endpoint could not be read before the run"]
            )
        after = self.scrape()
        if after is None:
            return metrics.Reconciliation("unavailable", notes=["the metrics endpoint could not be read after the run"])
        check = metrics.reconcile(before, after, seen, unanswered)
        if check.state != "ok":
            log.warning("metrics check: the sink's counters do not match what the importer saw (%s)", check.notes)
        return check

    def _processes(self) -> int:
        """How many processes send: WORKERS, but no more than requests in flight, and one when a session was
        injected (tests), which lives in this process only."""
        if self._injected_session:
            return 1
        return len(shares(self.settings.concurrency, self.settings.workers))

    def __enter__(self) -> Sending:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Wait for the worker processes (told to stop; ended at once on an error) and close the session."""
        self._parts.__exit__(*exc_info)
