"""Where every row of a run went, and whether the run goes on.

Every row read ends in exactly one bucket of the Tally, so that at the end

    rows = delivered + invalid + sink_rejected + failed + duplicates + not_attempted

(in a dry run, `valid` takes the place of the three delivery buckets). The ledger is the one place that
counts, writes the reports' rows, tells the resume state how each row ended, and decides a stop: a reader
and an executor only report to it. It is used under one lock (the executor's) or by one thread.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.problems import ReadProblem
from movymporter.reasons import Reasons
from movymporter.report import Reports
from movymporter.schema import Problem
from movymporter.state import DELIVERED, FAILED, SINK_REJECTED, ResumeState
from movymporter.status import ExitStatus

log = logging.getLogger("movymporter")

_SETTLED_AS = {Verdict.DELIVERED: DELIVERED, Verdict.REJECTED: SINK_REJECTED, Verdict.FAILED: FAILED}
"""How the resume state records each verdict; the others (cut short by a stop) are not settled."""


@dataclass
class Tally:
    """Where every row went."""

    rows: int = 0
    blank: int = 0
    duplicates: int = 0
    duplicates_sent: int = 0
    invalid: int = 0
    valid: int = 0
    delivered: int = 0
    already_delivered: int = 0
    sink_rejected: int = 0
    failed: int = 0
    not_attempted: int = 0
    retries: int = 0
    unanswered: int = 0

    @property
    def rejected(self) -> int:
        """Rows written to rejected.csv because of their data or their delivery."""
        return self.invalid + self.sink_rejected + self.failed

    def counts(self) -> dict[str, int]:
        return {**asdict(self), "rejected": self.rejected}


class Ledger:
    """The counts, reports and resume state of one run, and its stop policy."""

    def __init__(
        self,
        reports: Reports,
        state: ResumeState | None,
        *,
        halt: threading.Event,
        stop_on_errors: int,
        keep_duplicates: bool,
        sink_down: Callable[[], str | None] = lambda: None,
        observers: Sequence[Callable[[Outcome], None]] = (),
    ) -> None:
        """`sink_down` says why the sink counts as down (it gave no usable answer for too long), or None;
        `observers` hear of each outcome once it is counted (tests stop a run at an exact point with one)."""
        self.tally = Tally()
        self.responses: Counter[int] = Counter()
        self.reasons = Reasons()
        self.stopped: str | None = None
        self.halt = halt
        self.state = state
        self._reports = reports
        self._stop_on_errors = stop_on_errors
        self._keep_duplicates = keep_duplicates
        self._sink_down = sink_down
        self._observers = list(observers)
        self._carried_rejections = 0
        """Rows rejected again that an earlier run had settled: they do not count towards STOP_ON_ERRORS."""

    @property
    def stopped_early(self) -> bool:
        return self.stopped is not None or self.halt.is_set()

    def invalid(self, line: int, stage: str, problems: Sequence[object], cells: list[str]) -> None:
        """A row that cannot be sent (stage read or validate), with every problem it has ("code: message")."""
        self.tally.invalid += 1
        if self.state is not None and line < self.state.watermark:
            self._carried_rejections += 1
        self._reports.reject(line, stage, "; ".join(map(str, problems)), cells)
        for problem in problems:
            if isinstance(problem, ReadProblem):
                self.reasons.add(problem.code, problem.message)
            elif isinstance(problem, Problem):
                self.reasons.count(f"{problem.code}: {problem.rule}")

    def repeated(self, line: int, first_line: int) -> bool:
        """A repeat of line `first_line`: True when it is skipped (and listed), False when it is sent all the
        same (--keep-duplicates)."""
        if self._keep_duplicates:
            self.tally.duplicates_sent += 1
            return False
        self.tally.duplicates += 1
        self._reports.duplicate(line, first_line)
        return True

    def settled_before(self, line: int, cells: list[str]) -> bool:
        """Whether an earlier run settled this valid row for good (delivered, or refused by the sink): then it
        is counted as such and not sent."""
        state = self.state
        settled = state.settled_before(line) if state is not None else None
        if settled == DELIVERED:
            self.tally.delivered += 1
            self.tally.already_delivered += 1
            return True
        if settled == SINK_REJECTED and state is not None:
            self._carried_rejections += 1
            self._sink_rejected(line, state.reason(line), cells)
            return True
        return False

    def settle(self, outcome: Outcome) -> None:
        """How a row sent ended: counted, reported, recorded for a re-run; a stop when the configuration is
        wrong or the sink is down."""
        tally, delivery, verdict = self.tally, outcome.delivery, outcome.verdict
        if self.state is not None:
            self.state.finished(delivery.line, _SETTLED_AS.get(verdict), outcome.reason)
            self.state.save()
        tally.retries += max(outcome.attempts - 1, 0)
        tally.unanswered += outcome.unanswered
        self.responses.update(outcome.statuses)
        if verdict is Verdict.DELIVERED:
            tally.delivered += 1
        elif verdict is Verdict.REJECTED:
            self._sink_rejected(delivery.line, outcome.reason, delivery.cells)
        else:
            if verdict is Verdict.FAILED:
                tally.failed += 1
            else:
                tally.not_attempted += 1
            self._reports.reject(delivery.line, "delivery", outcome.reason, delivery.cells)
            self.reasons.add("delivery", outcome.reason)
        for observer in self._observers:
            observer(outcome)
        if self.stopped is not None:
            return
        if verdict is Verdict.REFUSED:
            self.stop(f"{outcome.reason}; this is a configuration problem (URL_OUT, credentials), not a data problem")
        elif (why := self._sink_down()) is not None:
            self.stop(why)

    def unanswered(self, delivery: Delivery, reason: str) -> None:
        """A row still in flight when the run gave up waiting for it: the sink may have it."""
        self.tally.not_attempted += 1
        self._reports.reject(delivery.line, "delivery", reason, delivery.cells)

    def rejected_enough(self) -> bool:
        """Whether this run has rejected STOP_ON_ERRORS rows (rows an earlier run rejected do not count); if so,
        the run stops reading."""
        limit = self._stop_on_errors
        if limit and (rejected := self.tally.rejected - self._carried_rejections) >= limit:
            self.stop(f"STOP_ON_ERRORS={limit} reached ({rejected} rows rejected)", halt=False)
            return True
        return False

    def stop(self, reason: str, *, halt: bool = True) -> None:
        """Stop reading; with `halt`, also cut retries short (the rows in flight end as not attempted)."""
        log.error("stopping: %s", reason)
        self.stopped = reason
        if halt:
            self.halt.set()

    @property
    def why_stopped(self) -> str | None:
        """Why the run stopped early, if it did: a stop's reason, or an interruption nobody asked for by a stop
        (Ctrl-C or SIGTERM)."""
        if self.stopped is None and self.halt.is_set():
            return "interrupted (Ctrl-C or SIGTERM)"
        return self.stopped

    def exit_status(self) -> ExitStatus:
        """How the run ended."""
        if self.stopped is None and self.halt.is_set():
            return ExitStatus.INTERRUPTED
        if self.stopped is not None:
            return ExitStatus.STOPPED
        if self.tally.rejected or self.tally.not_attempted:
            return ExitStatus.ROWS_NOT_DELIVERED
        return ExitStatus.OK

    def _sink_rejected(self, line: int, reason: str, cells: list[str]) -> None:
        self.tally.sink_rejected += 1
        self._reports.reject(line, "sink", reason, cells)
        self.reasons.add("sink", reason)

    def figures(self) -> dict[str, Any]:
        """The tally and the answers by status, as the summary gives them."""
        return {
            **asdict(self.tally),
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
        }
