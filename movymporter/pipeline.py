"""One import run: reader -> schema -> duplicates -> sender -> reports, with the metrics check around it.

Everything the run decides is counted in a Tally so that, at the end, every
row read is in exactly one bucket:

    rows = delivered + invalid + sink_rejected + failed + duplicates + not_attempted

(in a dry run, `valid` takes the place of the three delivery buckets).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import compress
from pathlib import Path
from typing import IO, Any

import requests

from movymporter import __version__, metrics
from movymporter.dedupe import SeenRecords
from movymporter.errors import ConfigError
from movymporter.journal import Journals
from movymporter.pool import DeliveryWorkers, threads_for
from movymporter.progress import Progress
from movymporter.reader import CsvInput, Record, Rows, estimate_rows
from movymporter.reasons import Reasons
from movymporter.report import REPORT_COLUMNS as _REPORT_COLUMN_NAMES
from movymporter.report import Reports, restore
from movymporter.schema import FIELDS, Contract, Movie, column_positions, plain_body, record_key, to_json
from movymporter.sender import Delivery, Outcome, Sender, Verdict
from movymporter.settings import INPUT_ENCODING, Settings
from movymporter.state import DELIVERED, FAILED, SINK_REJECTED, ResumeState, input_key
from movymporter.status import ExitStatus
from movymporter.workers import ProcessWorkers, shares

log = logging.getLogger("movymporter")

TOP_REASONS = 10
_SETTLED_AS = {Verdict.DELIVERED: DELIVERED, Verdict.REJECTED: SINK_REJECTED, Verdict.FAILED: FAILED}
"""How the resume state records each verdict; the others (cut short by a stop) are not settled."""
STATE_FILE = "state.sqlite"
JOURNALS = "journal"
"""STATE_DIR/journal/<input key>/: the delivery journals of each input (see journal.py)."""
REPORT_COLUMNS = len(_REPORT_COLUMN_NAMES)
"""line, stage, reason: the columns a rejected.csv adds before the input's own."""
_ANNOUNCE_KEY_BYTES = 1 << 30
"""Files from this size on take a noticeable time to fingerprint for the resume state: the log says so."""
_KEYS_AT_ONCE = 256
"""A dry run hands valid rows to the duplicate table once this many are waiting (a run may bring more): a call
costs about as much as 15 rows."""


@dataclass
class Tally:
    """Where every row went. Changed only under the workers' lock (or by the one thread of a dry run)."""

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


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]
    exit_status: ExitStatus


class Pipeline:
    """The state of one run. Use `run()`."""

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
    ) -> None:
        if settings.csv_in is None:
            raise ConfigError(
                "CSV_IN (--csv) is not set: there is no file to import. Accepted: the path of a CSV file."
            )
        self.path: Path = settings.csv_in
        self.settings = settings
        self.halt = halt
        self.tally = Tally()
        self.responses: Counter[int] = Counter()
        self.reasons = Reasons()
        self.stopped: str | None = None
        self._session = session
        self._sleep = sleep
        self._contract = Contract(max_year)
        self._progress_stream = progress_stream
        self._progress_bar = progress_bar
        self._started = time.monotonic()
        self._limits: list[dict[str, Any]] = []
        """What the request limit of each sending process did."""
        self._carried_rejections = 0
        """Rows rejected again that an earlier run had settled: they do not count towards STOP_ON_ERRORS."""
        # The parts of the run, set up by run().
        self.state: ResumeState | None = None
        self._journals: Journals | None = None
        """Where each sending process journals its deliveries; None in a dry run (or after a Ctrl-C while the
        input was read to know it)."""
        self._sender: Sender | None = None
        self._source: CsvInput
        self._reports: Reports
        self._seen: SeenRecords
        self._progress: Progress
        self._fields: list[tuple[str, int]]
        """Each field's column."""

    def run(self) -> RunResult:
        settings = self.settings
        with contextlib.ExitStack() as parts:
            source = self._source = parts.enter_context(
                CsvInput(self.path, delimiter=settings.delimiter, encoding=settings.encoding)
            )
            header = source.header
            positions = column_positions(source.names, header)
            self._fields = list(positions.items())
            self._describe_input(positions)
            processes = None
            key = None
            if not settings.dry_run:
                self._sender = parts.enter_context(contextlib.closing(self._connect()))
                key = self._input_key()
                if key is not None:
                    self._journals = Journals(settings.state_dir / JOURNALS / key)
                    if settings.fresh:
                        self._journals.forget()  # before the workers start theirs
                processes = self._start_workers()
                if processes is not None:
                    parts.enter_context(processes)
            self._reports = Reports(
                settings.report_dir,
                delimiter=source.dialect.delimiter,
                encoding=self._report_encoding(),
                header=header[REPORT_COLUMNS:] if source.is_report else header,
            )
            parts.enter_context(contextlib.closing(self._reports))
            if key is not None:
                self.state = parts.enter_context(contextlib.closing(self._open_state(key)))
            before = self._scrape()
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
            if self._sender is None:
                self._check(positions)
            else:
                self._deliver(self._deliveries(positions), processes)
            self._show_progress(force=True)
            unread = source.lines_read + 1 if self.stopped_early and source.has_more() else None
            if self.state is not None:
                if unread is None:
                    self.state.read_past(source.lines_read + 1)
                self.state.save(force=True)
                self._absorb_journals(self.state, at_start=False)
            self.tally.blank = source.blank_lines
            summary = self._summary(self._reconcile(before), unread)
            self._reports.finish(summary)
        return RunResult(summary, ExitStatus(summary["exit_status"]))

    @property
    def stopped_early(self) -> bool:
        return self.stopped is not None or self.halt.is_set()

    def _deliveries(self, positions: dict[str, int]) -> Iterator[Delivery]:
        """Read, validate and settle every row; yield those to send. Runs under the workers' lock.

        A row the contract's fast path finds plainly valid gets its key (and, when it is sent, its body) without
        the model. A dry run of a rejected.csv comes this way too, sending nothing (see `_check`).
        """
        tally, state, halt, route = self.tally, self.state, self.halt, self._route
        stop_on_errors = self.settings.stop_on_errors
        plain_key = self._contract.plain_key(positions, len(self._source.header))
        from_report = self._source.is_report
        skip = REPORT_COLUMNS if from_report else 0
        for record in self._source.records():
            tally.rows += 1
            cells = [restore(cell) for cell in record.cells] if from_report else record.cells
            kept = cells[skip:] if skip else cells
            key = plain_key(cells) if record.problem is None else None
            body = None
            if key is None and (movie := self._validated(record, cells, kept)) is not None:
                key, body = record_key(movie), to_json(movie)
            if key is not None and (delivery := route(record, key, body, kept)) is not None:
                if state is not None:
                    state.sending(record.line)
                yield delivery
            if state is not None:
                state.read_past(record.end_line + 1)
            if tally.rows & 0xFF == 0:
                self._show_progress()
                if state is not None:
                    state.save()
            if self.stopped is not None or halt.is_set():  # stopped_early, without a property call per row
                return
            if stop_on_errors and self._rejected_enough():
                return

    def _check(self, positions: dict[str, int]) -> None:
        """A dry run: validate and count every row, a run of plain rows at a time.

        This is all a dry run does, so it takes the reader's runs whole: the fast path takes a run in one call,
        the duplicate table the keys of a few runs (a batch split by an odd row is whole again), and only the
        rows they leave (invalid, not plain, repeated) are looked at one by one. No body is written: the record
        keys are all the duplicate table needs. A stop at the N-th rejected row (STOP_ON_ERRORS) gives the rest
        of its run back to the reader; Ctrl-C is seen between runs. A rejected.csv, whose cells need restoring,
        goes row by row.
        """
        if self._source.is_report:
            self._check_row_by_row(positions)
            return
        tally, halt, source = self.tally, self.halt, self._source
        stop_on_errors = self.settings.stop_on_errors
        plain_keys = self._contract.plain_keys(positions, len(source.header))
        next_check = 0
        waiting_keys: list[str] = []
        waiting_lines: list[int] = []
        for batch in source.batches():
            if type(batch) is Rows:
                rows, first = batch.cells, batch.first
                tally.rows += len(rows)
                found = plain_keys(rows)
                if None in found:
                    for index, key in enumerate(found):
                        if key is not None:
                            continue
                        line = first + index
                        movie = self._validated(Record(line, line, rows[index]), rows[index], rows[index])
                        if movie is not None:
                            found[index] = record_key(movie)
                        elif stop_on_errors and self._rejected_enough():
                            unused = len(rows) - index - 1
                            tally.rows -= unused
                            source.give_back(unused)
                            del found[index + 1 :]
                            break
                    lines: Sequence[int] = list(compress(range(first, first + len(found)), found))
                    keys = list(filter(None, found))  # a key is never empty: it holds a quote between fields
                else:
                    lines, keys = range(first, first + len(rows)), found
            else:
                tally.rows += 1
                key = plain_keys((batch.cells,))[0] if batch.problem is None else None
                if key is None and (movie := self._validated(batch, batch.cells, batch.cells)) is not None:
                    key = record_key(movie)
                if key is None and stop_on_errors and self._rejected_enough():
                    break
                lines, keys = ((batch.line,), [key]) if key is not None else ((), [])
            if keys:
                waiting_keys += keys
                waiting_lines += lines
                if len(waiting_keys) >= _KEYS_AT_ONCE:
                    self._count_valid(waiting_keys, waiting_lines)
                    waiting_keys, waiting_lines = [], []
            if self.stopped is not None:
                break
            if tally.rows >= next_check:
                next_check = tally.rows + 256
                self._show_progress()
                if halt.is_set():
                    break
        self._count_valid(waiting_keys, waiting_lines)

    def _count_valid(self, keys: list[str], lines: list[int]) -> None:
        """Valid rows of a dry run: each new record counts, each repeat is skipped and listed (or kept)."""
        if not keys:
            return
        repeated = self._seen.repeats(keys, lines)
        self.tally.valid += len(keys) - len(repeated)
        for index, first_line in repeated:
            if not self._skipped_as_duplicate(lines[index], first_line):
                self.tally.valid += 1

    def _check_row_by_row(self, positions: dict[str, int]) -> None:
        for _ in self._deliveries(positions):
            pass  # nothing is yielded: a dry run settles every row while reading

    def _rejected_enough(self) -> bool:
        """Whether this run has rejected STOP_ON_ERRORS rows (rows an earlier run rejected do not count); if so,
        stop reading."""
        limit = self.settings.stop_on_errors
        if limit and (rejected := self.tally.rejected - self._carried_rejections) >= limit:
            self._stop(f"STOP_ON_ERRORS={limit} reached ({rejected} rows rejected)", halt=False)
            return True
        return False

    def _validated(self, record: Record, cells: list[str], kept: list[str]) -> Movie | None:
        """A record the fast path left to the model, as a Movie, or None once it is rejected with its reasons."""
        problem = record.problem
        if problem is not None:
            self._reject(record.line, "read", [problem], kept)
            self.reasons.add(problem.code, problem.message)
            return None
        result = self._contract.validate(_values(cells, self._fields, record))
        if isinstance(result, list):
            self._reject(record.line, "validate", result, kept)
            for problem in result:
                self.reasons.count(f"{problem.code}: {problem.rule}")
            return None
        return result

    def _skipped_as_duplicate(self, line: int, first_line: int) -> bool:
        """Count a repeat of line `first_line`: skipped and listed, or (--keep-duplicates) to be sent all the same."""
        if self.settings.keep_duplicates:
            self.tally.duplicates_sent += 1
            return False
        self.tally.duplicates += 1
        self._reports.duplicate(line, first_line)
        return True

    def _route(self, record: Record, key: str, body: bytes | None, cells: list[str]) -> Delivery | None:
        """A valid row: skip it as a duplicate, count it (dry run, earlier runs), or return it to send.

        `body` is None for a row of the fast path, whose body is written from its key only if it is sent."""
        tally, line = self.tally, record.line
        first_line = self._seen.first_seen(key, line)
        if first_line is not None and self._skipped_as_duplicate(line, first_line):
            return None
        if self._sender is None:
            tally.valid += 1
            return None
        settled = self.state.settled_before(line) if self.state is not None else None
        if settled == DELIVERED:
            tally.delivered += 1
            tally.already_delivered += 1
            return None
        if settled == SINK_REJECTED and self.state is not None:
            self._carried_rejections += 1
            self._sink_rejected(line, self.state.reason(line), cells)
            return None
        if body is None:
            body = plain_body(key)
        copy_line = line if first_line is not None else None  # a repeat sent on purpose (--keep-duplicates)
        return Delivery(line, cells, body, idempotency_key(body, copy_line))

    def _on_outcome(self, outcome: Outcome) -> None:
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
        if self.stopped is not None:
            return
        if verdict is Verdict.REFUSED:
            self._stop(f"{outcome.reason}; this is a configuration problem (URL_OUT, credentials), not a data problem")
        elif self._sender is not None and self._sender.health.down:
            self._stop(
                f"the sink at {self.settings.url_out} gave no usable answer for {self.settings.unreachable_after:g} s "
                f"(last error: {self._sender.health.last_error})"
            )

    def _sink_rejected(self, line: int, reason: str, cells: list[str]) -> None:
        self.tally.sink_rejected += 1
        self._reports.reject(line, "sink", reason, cells)
        self.reasons.add("sink", reason)

    def _reject(self, line: int, stage: str, problems: Sequence[object], cells: list[str]) -> None:
        """An invalid row (stage read or validate), with every problem it has ("code: message" each)."""
        self.tally.invalid += 1
        if self.state is not None and line < self.state.watermark:
            self._carried_rejections += 1
        self._reports.reject(line, stage, "; ".join(map(str, problems)), cells)

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
        self._absorb_journals(state, at_start=True)
        if state.resuming:
            log.info(
                "resuming: an earlier run settled the rows before line %d%s; not sent again (--fresh sends all)",
                state.watermark,
                f" and {len(state.delivered_above)} after it" if state.delivered_above else "",
            )
        return state

    def _absorb_journals(self, state: ResumeState, *, at_start: bool) -> None:
        """Fold into the state the deliveries it does not know of: those of a killed run (at the start), or of a
        sending process lost during this run (at the end), whose rows were then reported as not delivered."""
        if self._journals is None:
            return
        with self._journals.absorbing() as lines:
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
            self._journals.tidy()

    def _stop(self, reason: str, *, halt: bool = True) -> None:
        """Stop reading; with `halt`, also cut retries short (the rows in flight end as not attempted)."""
        log.error("stopping: %s", reason)
        self.stopped = reason
        if halt:
            self.halt.set()

    def _sending_processes(self) -> int:
        """How many processes send: WORKERS, but no more than requests in flight, and one when a
        session was injected (tests), which lives in this process only."""
        if self._session is not None:
            return 1
        return len(shares(self.settings.concurrency, self.settings.workers))

    def _start_workers(self) -> ProcessWorkers | None:
        """Sending processes (WORKERS > 1), forked before the run opens the files it writes."""
        if self._sender is None or self._sending_processes() < 2:
            return None
        return ProcessWorkers(
            self.settings,
            self._on_outcome,
            journals=self._journals,
            health=self._sender.health,
            on_lost=self._stop,
            on_idle=self._show_progress,
        )

    def _deliver(self, deliveries: Iterator[Delivery], processes: ProcessWorkers | None) -> None:
        """Worker threads (or the worker processes) pull from the reader and deliver."""
        assert self._sender is not None
        settings = self.settings
        deliver, journal = self._sender.deliver, None
        if processes is None and self._journals is not None:
            journal = self._journals.writer(sync=settings.durable)
            deliver = functools.partial(deliver, on_delivered=journal.delivered)
        workers = processes or DeliveryWorkers(
            deliver,
            self._on_outcome,
            threads=threads_for(settings.concurrency),
            admission=self._sender.admission,
            on_idle=self._show_progress,
        )
        grace = settings.connect_timeout + settings.read_timeout + 1
        complete = workers.run(deliveries, halt=self.halt, grace_s=grace)
        if journal is not None and complete:
            journal.close()  # else a request given up on may still be answered: its journal stays open till exit
        self._limits = workers.limits if processes is not None else [self._sender.slots.describe()]
        if not complete:
            log.error("%d requests still had no answer after %.0f s", len(workers.unfinished), grace)
            for delivery in workers.unfinished.values():
                self.tally.not_attempted += 1
                reason = f"no answer before the run stopped ({grace:.0f} s after the stop); the sink may have it"
                self._reports.reject(delivery.line, "delivery", reason, delivery.cells)

    def _show_progress(self, *, force: bool = False) -> None:
        if not force and not self._progress.due():
            return  # the counts are built only when they are shown
        counts = {**asdict(self.tally), "rejected": self.tally.rejected}
        self._progress.update(self._source.bytes_read, counts, force=force)

    def _connect(self) -> Sender:
        settings = self.settings
        sender = Sender(settings, halt=self.halt, session=self._session, sleep=self._sleep)
        sender.check_reachable()
        processes = self._sending_processes()
        log.info(
            "sending to %s, %d requests in flight at most%s",
            settings.url_out,
            settings.concurrency,
            f" from {processes} processes" if processes > 1 else "",
        )
        return sender

    def _scrape(self) -> metrics.Snapshot | None:
        """A snapshot of the sink's counters, or None (with a warning) when they cannot be read."""
        sender = self._sender
        if sender is None:
            return None
        endpoint = self.settings.metrics_endpoint
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

    def _reconcile(self, before: metrics.Snapshot | None) -> metrics.Reconciliation:
        if self._sender is None:
            return metrics.Reconciliation("skipped", notes=["dry run: nothing was sent"])
        if before is None:
            return metrics.Reconciliation(
                "unavailable", notes=["the metrics endpoint could not be read before the run"]
            )
        after = self._scrape()
        if after is None:
            return metrics.Reconciliation("unavailable", notes=["the metrics endpoint could not be read after the run"])
        check = metrics.reconcile(before, after, dict(self.responses), self.tally.unanswered)
        if check.state != "ok":
            log.warning("metrics check: the sink's counters do not match what the importer saw (%s)", check.notes)
        return check

    def _describe_input(self, positions: dict[str, int]) -> None:
        source = self._source
        log.info(
            "reading %s (%s bytes): %s; header on line %d",
            source.path,
            f"{source.size:,}",
            source.dialect.describe(),
            source.header_line,
        )
        ignored = [name for index, name in enumerate(source.header) if index not in positions.values()]
        if source.is_report:
            log.info("this is a rejected.csv report: its line, stage and reason columns are ignored")
            ignored = ignored[REPORT_COLUMNS:]
        if ignored:
            log.warning("ignoring columns that are not film fields: %s", ", ".join(repr(name) for name in ignored))
        absent = [name for name in FIELDS if name not in positions]
        if absent:
            log.warning("no column for %s: sent empty", ", ".join(absent))

    def _summary(self, check: metrics.Reconciliation, unread: int | None) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started
        tally, source = self.tally, self._source
        if self.halt.is_set() and self.stopped is None:
            self.stopped = "interrupted (Ctrl-C or SIGTERM)"
            status = ExitStatus.INTERRUPTED
        elif self.stopped is not None:
            status = ExitStatus.STOPPED
        elif tally.rejected or tally.not_attempted:
            status = ExitStatus.ROWS_NOT_DELIVERED
        else:
            status = ExitStatus.OK
        return {
            "input": str(source.path),
            "encoding": source.dialect.encoding,
            "delimiter": source.dialect.delimiter,
            "report_encoding": self._report_encoding(),
            "url": None if self.settings.dry_run else self.settings.url_out,
            "dry_run": self.settings.dry_run,
            "report_dir": str(self.settings.report_dir),
            "lines": source.lines_read,
            "header_line": source.header_line,
            "type_row_line": source.type_row_line,
            **asdict(tally),
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(tally.rows / elapsed, 1) if elapsed > 0 else 0.0,
            "metrics_check": check.as_dict(),
            "adaptive_concurrency": self._limits if self.settings.adaptive else None,
            "resumed_before_line": self.state.watermark if self.state is not None and self.state.resuming else None,
            "top_reasons": self.reasons.top(TOP_REASONS),
            "stopped": self.stopped,
            "unread_from_line": unread,
            "exit_status": int(status),
        }


def run(
    settings: Settings,
    *,
    halt: threading.Event | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], object] | None = None,
    max_year: int | None = None,
    progress_stream: IO[str] | None = None,
    progress_bar: bool = False,
) -> RunResult:
    """Import settings.csv_in into settings.url_out; raises MovymporterError for what stops it before it starts."""
    pipeline = Pipeline(
        settings,
        halt=halt or threading.Event(),
        session=session,
        sleep=sleep,
        max_year=max_year,
        progress_stream=progress_stream or sys.stderr,
        progress_bar=progress_bar,
    )
    return pipeline.run()


def idempotency_key(body: bytes, copy_line: int | None = None) -> str:
    """The Idempotency-Key of a POST: the same for the same body, run after run, so a sink that honours it drops
    a repeat. A repeat sent on purpose (--keep-duplicates) gets its own, from its line, stable across re-runs."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    if copy_line is not None:
        digest = hashlib.blake2b(digest + copy_line.to_bytes(8, "little"), digest_size=16).digest()
    return digest.hex()


def _values(cells: list[str], fields: list[tuple[str, int]], record: Record) -> dict[str, str]:
    values = {name: cells[index] for name, index in fields}
    if record.end_line > record.line:
        # A cell that spans lines in a CRLF file carries the file's line ending, not data.
        values = {name: value.replace("\r\n", "\n") for name, value in values.items()}
    return values
