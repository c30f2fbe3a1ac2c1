"""One import run: one loop over the chunks of the input, every row to the ledger, the valid ones to an executor.

For each chunk the reader hands out: judge its rows (judge.py), then, in file order, report each invalid
row, skip each duplicate, leave out what an earlier run settled, and hand the rest to the executor that
sends (sending.py). The executor's threads pull the rows from this loop, so the reading happens on them,
under the executor's lock, and no row is handed from thread to thread. A dry run is the same loop with
nothing that sends: each valid row is counted instead, and the duplicate table takes their keys many at a
time. Everything is counted by the ledger (ledger.py), which also decides a stop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import IO, Any

import requests

from movymporter import __version__, metrics
from movymporter.chunk import Chunk
from movymporter.dedupe import SeenRecords
from movymporter.delivery.outcome import Delivery, Outcome, idempotency_key
from movymporter.dialect import estimate_rows
from movymporter.errors import ConfigError
from movymporter.judge import Judge, Judged
from movymporter.ledger import Ledger
from movymporter.progress import Progress
from movymporter.reader import CsvInput
from movymporter.report import Reports
from movymporter.schema import FIELDS, Contract, column_positions, plain_body, to_json
from movymporter.sending import JOURNALS, Sending
from movymporter.settings import INPUT_ENCODING, Settings
from movymporter.state import ResumeState, input_key
from movymporter.status import ExitStatus

log = logging.getLogger("movymporter")

TOP_REASONS = 10
STATE_FILE = "state.sqlite"
_ANNOUNCE_KEY_BYTES = 1 << 30
"""Files from this size on take a noticeable time to fingerprint for the resume state: the log says so."""
_KEYS_AT_ONCE = 256
"""A dry run hands valid rows to the duplicate table once this many are waiting (a chunk may bring more): a
call costs about as much as 15 rows."""


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]
    exit_status: ExitStatus


class Pipeline:
    """The parts of one run. Use `run()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        halt: threading.Event,
        session: requests.Session | None,
        sleep: Callable[[float], object] | None,
        max_year: int | None,
        progress_stream: IO[str],
        progress_bar: bool,
        on_outcome: Callable[[Outcome], None] | None,
    ) -> None:
        if settings.csv_in is None:
            raise ConfigError(
                "CSV_IN (--csv) is not set: there is no file to import. Accepted: the path of a CSV file."
            )
        self.path: Path = settings.csv_in
        self.settings = settings
        self.halt = halt
        self._session = session
        self._sleep = sleep
        self._contract = Contract(max_year, fast_path=settings.fast_path)
        self._progress_stream = progress_stream
        self._progress_bar = progress_bar
        self._observers = [on_outcome] if on_outcome is not None else []
        self._started = time.monotonic()
        # The parts of the run, set up by run().
        self.ledger: Ledger
        self._source: CsvInput
        self._judge: Judge
        self._seen: SeenRecords
        self._progress: Progress
        self._sending: Sending | None = None
        self._waiting = _WaitingKeys()

    def run(self) -> RunResult:
        settings = self.settings
        with contextlib.ExitStack() as parts:
            source = self._source = parts.enter_context(
                CsvInput(self.path, delimiter=settings.delimiter, encoding=settings.encoding)
            )
            positions = column_positions(source.names, source.header)
            self._judge = Judge(self._contract, positions, len(source.header))
            self._describe_input(positions)
            key = None
            if not settings.dry_run:
                sending = self._sending = parts.enter_context(
                    Sending(settings, halt=self.halt, session=self._session, sleep=self._sleep)
                )
                key = self._input_key()
                journals = settings.state_dir / JOURNALS / key if key is not None else None
                sending.start(journals, self._settle, on_lost=self._lost, on_idle=self._show_progress)
            reports = Reports(
                settings.report_dir,
                delimiter=source.dialect.delimiter,
                encoding=self._report_encoding(),
                header=source.header,
            )
            parts.enter_context(contextlib.closing(reports))
            state = parts.enter_context(contextlib.closing(self._open_state(key))) if key is not None else None
            self.ledger = Ledger(
                reports,
                state,
                halt=self.halt,
                stop_on_errors=settings.stop_on_errors,
                keep_duplicates=settings.keep_duplicates,
                sink_down=self._sending.sink_down if self._sending is not None else lambda: None,
                observers=self._observers,
            )
            before = self._sending.scrape() if self._sending is not None else None
            self._seen = parts.enter_context(SeenRecords(expected=estimate_rows(self.path, source.size)))
            self._progress = parts.enter_context(
                contextlib.closing(
                    Progress(
                        source.size,
                        stream=self._progress_stream,
                        bar=self._progress_bar,
                        interval_s=settings.progress_interval,
                    )
                )
            )
            with contextlib.closing(self._rows()) as rows:
                if self._sending is None:
                    if next(rows, None) is not None:
                        raise AssertionError("a dry run sends nothing")
                    self._count_waiting()
                else:
                    self._sending.run(rows, self.ledger.unanswered)
            summary = self._finish(state, before)
            reports.finish(summary)
        return RunResult(summary, ExitStatus(summary["exit_status"]))

    def _rows(self) -> Iterator[Delivery]:
        """Read, judge and settle every row in file order; yield those to send (none in a dry run)."""
        ledger, source, judge = self.ledger, self._source, self._judge
        counting = self._sending is None
        for chunk in source.chunks():
            judged = judge.judge(chunk)
            if counting:
                if self._counted(chunk, judged):
                    return
            else:
                for index in range(len(chunk)):
                    delivery = self._settled(chunk, judged, index)
                    if delivery is not None:
                        try:
                            yield delivery
                        except GeneratorExit:  # the executor stopped taking rows: this one was the last
                            _stop_reading_after(source, chunk, index)
                            raise
                    if ledger.state is not None:
                        ledger.state.read_past(chunk.ends[index] + 1)
                    if ledger.stopped_early or ledger.rejected_enough():
                        _stop_reading_after(source, chunk, index)
                        return
            self._show_progress()
            if ledger.state is not None:
                ledger.state.save()
            if ledger.stopped_early:
                return

    def _counted(self, chunk: Chunk, judged: Judged) -> bool:
        """A dry run's chunk: its invalid rows reported in order, its valid ones left to wait for the duplicate
        table, in one step; True when the run stops at one of its rows."""
        ledger, end = self.ledger, len(chunk)
        for index, (stage, problems) in judged.problems.items():  # in the order of the rows
            ledger.invalid(chunk.lines[index], stage, problems, chunk.cells[index])
            if ledger.stopped_early or ledger.rejected_enough():
                end = index + 1
                _stop_reading_after(self._source, chunk, index)
                break
        ledger.tally.rows += end
        keys = judged.keys if end == len(chunk) else judged.keys[:end]
        if judged.problems:
            self._wait(list(filter(None, keys)), list(compress(chunk.lines, keys)))  # a key is never empty
        else:
            self._wait(keys, chunk.lines)
        return end < len(chunk) or ledger.stopped_early

    def _settled(self, chunk: Chunk, judged: Judged, index: int) -> Delivery | None:
        """One row to send: reported if invalid, skipped if a duplicate or settled before; else its delivery."""
        ledger, line, cells = self.ledger, chunk.lines[index], chunk.cells[index]
        ledger.tally.rows += 1
        key = judged.keys[index]
        if key is None:
            stage, problems = judged.problems[index]
            ledger.invalid(line, stage, problems, cells)
            return None
        first_line = self._seen.first_seen(key, line)
        if first_line is not None and ledger.repeated(line, first_line):
            return None
        if ledger.settled_before(line, cells):
            return None
        movie = judged.movies.get(index)
        body = to_json(movie) if movie is not None else plain_body(key)
        copy_line = line if first_line is not None else None  # a repeat sent on purpose (--keep-duplicates)
        if ledger.state is not None:
            ledger.state.sending(line)
        return Delivery(line, cells, body, idempotency_key(body, copy_line))

    def _wait(self, keys: Sequence[str | None], lines: Sequence[int]) -> None:
        """Valid rows of a dry run wait to be told apart from those before them, many at a time."""
        if self._waiting.add(keys, lines) >= _KEYS_AT_ONCE:
            self._count_waiting()

    def _count_waiting(self) -> None:
        """The valid rows waiting: each new record counts, each repeat is skipped and listed (or kept)."""
        keys, lines = self._waiting.take()
        if not keys:
            return
        ledger = self.ledger
        repeated = self._seen.repeats(keys, lines)
        ledger.tally.valid += len(keys) - len(repeated)
        for index, first_line in repeated:
            if not ledger.repeated(lines[index], first_line):
                ledger.tally.valid += 1

    def _settle(self, outcome: Outcome) -> None:
        """The executor's callback, made before the ledger exists (worker processes are forked first)."""
        self.ledger.settle(outcome)

    def _lost(self, why: str) -> None:
        self.ledger.stop(why)

    def _finish(self, state: ResumeState | None, before: metrics.Snapshot | None) -> dict[str, Any]:
        """Save how far the run got, check the sink's counters, and sum the run up."""
        source, ledger = self._source, self.ledger
        self._show_progress(force=True)
        unread = source.lines_read + 1 if ledger.stopped_early and source.has_more() else None
        if state is not None:
            if unread is None:
                state.read_past(source.lines_read + 1)
            state.save(force=True)
            if self._sending is not None:
                self._sending.absorb_journals(state, at_start=False)
        ledger.tally.blank = source.blank_lines
        if self._sending is None:
            check = metrics.Reconciliation("skipped", notes=["dry run: nothing was sent"])
        else:
            check = self._sending.reconcile(before, dict(ledger.responses), ledger.tally.unanswered)
        return self._summary(check, unread, state)

    def _input_key(self) -> str | None:
        """What the resume state knows this input by; None after a Ctrl-C while the file was read to know it
        (nothing is sent then, so there is nothing to record)."""
        settings = self.settings
        if self._source.size >= _ANNOUNCE_KEY_BYTES:
            log.info("reading the whole file once, to know it again on a re-run (%.1f GB)", self._source.size / 1e9)
        return input_key(
            self.path, settings.url_out, settings.keep_duplicates, self._contract.max_year, __version__, halt=self.halt
        )

    def _report_encoding(self) -> str:
        """REPORT_ENCODING, or the input's own encoding when it says `input`."""
        chosen = self.settings.report_encoding
        return self._source.dialect.encoding if chosen == INPUT_ENCODING else chosen

    def _open_state(self, key: str) -> ResumeState:
        """The resume state of this input, with what the journals of a killed run add to it."""
        settings = self.settings
        state = ResumeState(
            settings.state_dir / STATE_FILE,
            key,
            path=self.path,
            url=settings.url_out,
            fresh=settings.fresh,
            durable=settings.durable,
        )
        if self._sending is not None:
            self._sending.absorb_journals(state, at_start=True)
        if state.resuming:
            log.info(
                "resuming: an earlier run settled the rows before line %d%s; not sent again (--fresh sends all)",
                state.watermark,
                f" and {len(state.delivered_above)} after it" if state.delivered_above else "",
            )
        return state

    def _show_progress(self, *, force: bool = False) -> None:
        if not force and not self._progress.due():
            return  # the counts are built only when they are shown
        self._progress.update(self._source.bytes_read, self.ledger.tally.counts(), force=force)

    def _describe_input(self, positions: dict[str, int]) -> None:
        source = self._source
        log.info(
            "reading %s (%s bytes): %s; header on line %d",
            source.path,
            f"{source.size:,}",
            source.dialect.describe(),
            source.header_line,
        )
        if source.is_report:
            log.info("this is a rejected.csv report: its line, stage and reason columns are ignored")
        ignored = [name for index, name in enumerate(source.header) if index not in positions.values()]
        if ignored:
            log.warning("ignoring columns that are not film fields: %s", ", ".join(repr(name) for name in ignored))
        absent = [name for name in FIELDS if name not in positions]
        if absent:
            log.warning("no column for %s: sent empty", ", ".join(absent))

    def _summary(self, check: metrics.Reconciliation, unread: int | None, state: ResumeState | None) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started
        source, ledger, settings = self._source, self.ledger, self.settings
        status = ledger.exit_status()
        return {
            "input": str(source.path),
            "encoding": source.dialect.encoding,
            "delimiter": source.dialect.delimiter,
            "report_encoding": self._report_encoding(),
            "url": None if settings.dry_run else settings.url_out,
            "dry_run": settings.dry_run,
            "report_dir": str(settings.report_dir),
            "lines": source.lines_read,
            "header_line": source.header_line,
            "type_row_line": source.type_row_line,
            **ledger.figures(),
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(ledger.tally.rows / elapsed, 1) if elapsed > 0 else 0.0,
            "metrics_check": check.as_dict(),
            "adaptive_concurrency": self._sending.limits if settings.adaptive and self._sending else None,
            "resumed_before_line": state.watermark if state is not None and state.resuming else None,
            "top_reasons": ledger.reasons.top(TOP_REASONS),
            "stopped": ledger.why_stopped,
            "unread_from_line": unread,
            "exit_status": int(status),
        }


def _stop_reading_after(source: CsvInput, chunk: Chunk, index: int) -> None:
    """The run used the rows of `chunk` up to `index` and reads no further."""
    if index + 1 < len(chunk):
        source.stop_before(chunk.lines[index + 1])


class _WaitingKeys:
    """The keys and lines of a dry run's valid rows, waiting for the duplicate table."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.lines: list[int] = []

    def add(self, keys: Sequence[str | None], lines: Sequence[int]) -> int:
        self.keys += keys  # type: ignore[arg-type]  # every key of a valid row is a string
        self.lines += lines
        return len(self.keys)

    def take(self) -> tuple[list[str], list[int]]:
        taken = self.keys, self.lines
        self.keys, self.lines = [], []
        return taken


def run(
    settings: Settings,
    *,
    halt: threading.Event | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], object] | None = None,
    max_year: int | None = None,
    progress_stream: IO[str] | None = None,
    progress_bar: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> RunResult:
    """Import settings.csv_in into settings.url_out; raises MovymporterError for what stops it before it starts.

    `on_outcome` hears of each row sent, once the run has counted it, under the executor's lock."""
    pipeline = Pipeline(
        settings,
        halt=halt or threading.Event(),
        session=session,
        sleep=sleep,
        max_year=max_year,
        progress_stream=progress_stream or sys.stderr,
        progress_bar=progress_bar,
        on_outcome=on_outcome,
    )
    return pipeline.run()
