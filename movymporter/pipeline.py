"""One import run: reader -> schema -> duplicates -> sender -> reports, with the metrics check around it.

Everything the run decides is counted in a Tally so that, at the end, every
row read is in exactly one bucket:

    rows = delivered + invalid + sink_rejected + failed + duplicates + not_attempted

(in a dry run, `valid` takes the place of the three delivery buckets).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import requests

from movymporter import metrics
from movymporter.dedupe import SeenRecords, digest
from movymporter.errors import ConfigError
from movymporter.pool import DeliveryPool
from movymporter.progress import Progress
from movymporter.reader import CsvInput, Record, estimate_rows
from movymporter.report import Reports, restore
from movymporter.schema import FIELDS, Contract, Problem, column_positions, to_json
from movymporter.sender import Delivery, Outcome, Sender, Verdict
from movymporter.settings import Settings
from movymporter.state import FAILED, SINK_REJECTED, ResumeState, input_key
from movymporter.status import ExitStatus

log = logging.getLogger("movymporter")

TOP_REASONS = 10
STATE_FILE = "state.sqlite"
_NUMBER = re.compile(r"\d+(\.\d+)?")
_QUOTED = re.compile(r'"[^"]*"')


@dataclass
class Tally:
    """Where every row went. Main thread only."""

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
        self.settings = settings
        self.halt = halt
        self.tally = Tally()
        self.responses: Counter[int] = Counter()
        self.reasons: Counter[str] = Counter()
        self.stopped: str | None = None
        self.stop_status = ExitStatus.STOPPED
        self._session = session
        self._sleep = sleep
        self._contract = Contract(max_year)
        self._progress_stream = progress_stream
        self._progress_bar = progress_bar
        self._started = time.monotonic()
        self.state: ResumeState | None = None
        self._in_flight: set[int] = set()
        self._delivered_recently: set[int] = set()
        self._first_unsettled_abort: int | None = None
        self._frontier = 1
        self._carried_rejections = 0

    def run(self) -> RunResult:
        settings = self.settings
        assert settings.csv_in is not None
        path = settings.csv_in
        with CsvInput(path, delimiter=settings.delimiter, encoding=settings.encoding) as source:
            positions = column_positions(source.names)
            self._describe_input(source, positions)
            header, skip = (source.header[3:], 3) if source.is_report else (source.header, 0)
            reports = Reports(
                settings.report_dir,
                delimiter=source.dialect.delimiter,
                encoding=source.dialect.encoding,
                header=header,
            )
            sender = None if settings.dry_run else self._connect()
            if sender is not None:
                self.state = self._open_state(path)
            before = self._scrape(sender)
            progress = Progress(
                source.size,
                stream=self._progress_stream,
                bar=self._progress_bar,
                interval_s=settings.progress_interval,
            )
            with SeenRecords(expected=estimate_rows(path, source.size)) as seen:
                pool = None
                if sender is not None:
                    pool = DeliveryPool(
                        sender.deliver,
                        lambda outcome: self._on_outcome(outcome, reports, sender),
                        window=settings.concurrency,
                        on_idle=lambda: progress.update(source.bytes_read, asdict(self.tally)),
                    )
                try:
                    self._read(source, positions, skip, seen, reports, pool, progress)
                    if pool is not None:
                        self._drain(pool)
                finally:
                    if pool is not None:
                        pool.close()
                    progress.update(source.bytes_read, asdict(self.tally), force=True)
                    progress.close()
            unread = source.lines_read + 1 if self.stopped_early and source.has_more() else None
            if unread is None:
                self._frontier = source.lines_read + 1
            self._save_state(force=True)
            self.tally.blank = source.blank_lines
            check = self._reconcile(sender, before)
            if sender is not None:
                sender.close()
            if self.state is not None:
                self.state.close()
            summary = self._summary(source, check, unread)
            reports.finish(summary)
        return RunResult(summary, ExitStatus(summary["exit_status"]))

    @property
    def stopped_early(self) -> bool:
        return self.stopped is not None or self.halt.is_set()

    def _read(
        self,
        source: CsvInput,
        positions: dict[str, int],
        skip: int,
        seen: SeenRecords,
        reports: Reports,
        pool: DeliveryPool | None,
        progress: Progress,
    ) -> None:
        tally, settings, contract, halt = self.tally, self.settings, self._contract, self.halt
        fields = list(positions.items())
        from_report = source.is_report
        for record in source.records():
            tally.rows += 1
            cells = [restore(cell) for cell in record.cells] if from_report else record.cells
            if record.problem is not None:
                self._reject(
                    reports, record.line, "read", [(record.problem.code, record.problem.message)], cells[skip:]
                )
                self.reasons[f"{record.problem.code}: {_generalise(record.problem.message)}"] += 1
            else:
                values = _values(cells, fields, record)
                result = contract.validate(values)
                if isinstance(result, list):
                    self._reject_invalid(reports, record, result, cells[skip:])
                else:
                    body = to_json(result)
                    self._route(record, body, cells[skip:], seen, reports, pool)
            self._frontier = record.end_line + 1
            if tally.rows & 0xFF == 0:
                progress.update(source.bytes_read, asdict(tally))
                self._save_state()
            if self.stopped is not None or halt.is_set():
                return
            rejected = tally.rejected - self._carried_rejections
            if settings.stop_on_errors and rejected >= settings.stop_on_errors:
                self._stop(f"STOP_ON_ERRORS={settings.stop_on_errors} reached ({rejected} rows rejected)")
                return

    def _route(
        self,
        record: Record,
        body: bytes,
        cells: list[str],
        seen: SeenRecords,
        reports: Reports,
        pool: DeliveryPool | None,
    ) -> None:
        record_digest = digest(body)
        first_line = seen.first_seen(record_digest, record.line)
        key = record_digest.hex()
        if first_line is not None:
            if not self.settings.keep_duplicates:
                self.tally.duplicates += 1
                reports.duplicate(record.line, first_line)
                return
            self.tally.duplicates_sent += 1
            # Each copy sent on purpose needs its own key, stable across re-runs of the same file.
            key = hashlib.blake2b(record_digest + record.line.to_bytes(8, "little"), digest_size=16).hexdigest()
        if pool is None:
            self.tally.valid += 1
            return
        settled = self.state.settled_before(record.line) if self.state is not None else None
        if settled == "delivered":
            self.tally.delivered += 1
            self.tally.already_delivered += 1
            return
        if settled == SINK_REJECTED:
            assert self.state is not None
            reason = self.state.reason(record.line)
            self.tally.sink_rejected += 1
            self._carried_rejections += 1
            reports.reject(record.line, "sink", reason, cells)
            self.reasons[f"sink: {_generalise(reason)}"] += 1
            return
        self._in_flight.add(record.line)
        pool.submit(Delivery(record.line, cells, body, key))

    def _on_outcome(self, outcome: Outcome, reports: Reports, sender: Sender) -> None:
        tally, delivery = self.tally, outcome.delivery
        self._in_flight.discard(delivery.line)
        self._settle(outcome)
        tally.retries += max(outcome.attempts - 1, 0)
        tally.unanswered += outcome.unanswered
        self.responses.update(outcome.statuses)
        verdict = outcome.verdict
        if verdict is Verdict.DELIVERED:
            tally.delivered += 1
            return
        if verdict is Verdict.REJECTED:
            tally.sink_rejected += 1
            reports.reject(delivery.line, "sink", outcome.reason, delivery.cells)
            self.reasons[f"sink: {_generalise(outcome.reason)}"] += 1
        else:
            if verdict is Verdict.FAILED:
                tally.failed += 1
            else:
                tally.not_attempted += 1
            reports.reject(delivery.line, "delivery", outcome.reason, delivery.cells)
            self.reasons[f"delivery: {_generalise(outcome.reason)}"] += 1
        if verdict is Verdict.REFUSED and self.stopped is None:
            self._stop(f"{outcome.reason}; this is a configuration problem (URL_OUT, credentials), not a data problem")
        if sender.health.down and self.stopped is None:
            self._stop(
                f"the sink at {self.settings.url_out} gave no usable answer for {self.settings.unreachable_after:g} s "
                f"(last error: {sender.health.last_error})"
            )

    def _settle(self, outcome: Outcome) -> None:
        """What the next run needs to know about this row."""
        line, verdict, state = outcome.delivery.line, outcome.verdict, self.state
        if verdict is Verdict.DELIVERED:
            self._delivered_recently.add(line)
            if state is not None:
                state.note(line, None)
        elif verdict is Verdict.REJECTED and state is not None:
            state.note(line, SINK_REJECTED, outcome.reason)
        elif verdict is Verdict.FAILED and state is not None:
            state.note(line, FAILED, outcome.reason)
        elif verdict in (Verdict.ABORTED, Verdict.REFUSED):
            first = self._first_unsettled_abort
            self._first_unsettled_abort = line if first is None else min(first, line)

    def _save_state(self, *, force: bool = False) -> None:
        if self.state is None:
            return
        candidates = [self._frontier, *self._in_flight]
        if self._first_unsettled_abort is not None:
            candidates.append(self._first_unsettled_abort)
        watermark = min(candidates)
        self.state.save(watermark, self._delivered_recently, force=force)
        self._delivered_recently = {line for line in self._delivered_recently if line >= watermark}

    def _open_state(self, path: Path) -> ResumeState:
        settings = self.settings
        state = ResumeState(
            settings.state_dir / STATE_FILE,
            input_key(path, settings.url_out),
            path=path,
            url=settings.url_out,
            fresh=settings.fresh,
        )
        if state.resuming:
            log.info(
                "resuming: an earlier run settled the rows before line %d%s; not sent again (--fresh sends all)",
                state.watermark,
                f" and {len(state.delivered_above)} after it" if state.delivered_above else "",
            )
        return state

    def _stop(self, reason: str) -> None:
        log.error("stopping: %s", reason)
        self.stopped = reason
        if "STOP_ON_ERRORS" not in reason:
            self.halt.set()

    def _reject(
        self, reports: Reports, line: int, stage: str, problems: list[tuple[str, str]], cells: list[str]
    ) -> None:
        self.tally.invalid += 1
        if self.state is not None and line < self.state.watermark:
            self._carried_rejections += 1
        reports.reject(line, stage, "; ".join(f"{code}: {message}" for code, message in problems), cells)

    def _reject_invalid(self, reports: Reports, record: Record, problems: list[Problem], cells: list[str]) -> None:
        self._reject(reports, record.line, "validate", [(p.code, p.message) for p in problems], cells)
        for problem in problems:
            self.reasons[f"{problem.code}: {problem.rule}"] += 1

    def _drain(self, pool: DeliveryPool) -> None:
        if not self.halt.is_set():
            pool.drain()
            return
        grace = self.settings.connect_timeout + self.settings.read_timeout + 1
        log.warning("waiting up to %.0f s for %d requests in flight", grace, pool.in_flight)
        if not pool.drain(timeout=grace):
            log.error("%d requests still had no answer; their rows are not in the reports", pool.in_flight)

    def _connect(self) -> Sender:
        settings = self.settings
        sender = Sender(settings, halt=self.halt, session=self._session, sleep=self._sleep)
        sender.check_reachable()
        log.info("sending to %s, %d requests in flight at most", settings.url_out, settings.concurrency)
        return sender

    def _scrape(self, sender: Sender | None) -> metrics.Snapshot | None:
        if sender is None:
            return None
        try:
            return self._scrape_once(sender)
        except metrics.MetricsUnavailable as error:
            log.warning("metrics check skipped: %s", error)
            return None

    def _scrape_once(self, sender: Sender) -> metrics.Snapshot:
        endpoint = self.settings.metrics_endpoint
        return metrics.scrape(sender.session, endpoint, self.settings.read_timeout, sender.auth_headers_for(endpoint))

    def _reconcile(self, sender: Sender | None, before: metrics.Snapshot | None) -> metrics.Reconciliation:
        if sender is None:
            return metrics.Reconciliation("skipped", notes=["dry run: nothing was sent"])
        if before is None:
            return metrics.Reconciliation(
                "unavailable", notes=["the metrics endpoint could not be read before the run"]
            )
        try:
            after = self._scrape_once(sender)
        except metrics.MetricsUnavailable as error:
            log.warning("metrics check skipped: %s", error)
            return metrics.Reconciliation("unavailable", notes=[str(error)])
        check = metrics.reconcile(before, after, dict(self.responses), self.tally.unanswered)
        if check.state != "ok":
            log.warning("metrics check: the sink's counters do not match what the importer saw (%s)", check.notes)
        return check

    def _describe_input(self, source: CsvInput, positions: dict[str, int]) -> None:
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
            ignored = ignored[3:]
        if ignored:
            log.warning("ignoring columns that are not film fields: %s", ", ".join(repr(name) for name in ignored))
        absent = [name for name in FIELDS if name not in positions]
        if absent:
            log.warning("no column for %s: sent empty", ", ".join(absent))

    def _summary(self, source: CsvInput, check: metrics.Reconciliation, unread: int | None) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started
        tally = self.tally
        if self.halt.is_set() and self.stopped is None:
            self.stopped = "interrupted (Ctrl-C or SIGTERM)"
            status = ExitStatus.INTERRUPTED
        elif self.stopped is not None:
            status = self.stop_status
        elif tally.rejected or tally.not_attempted:
            status = ExitStatus.ROWS_NOT_DELIVERED
        else:
            status = ExitStatus.OK
        return {
            "input": str(source.path),
            "encoding": source.dialect.encoding,
            "delimiter": source.dialect.delimiter,
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
            "resumed_before_line": self.state.watermark if self.state is not None and self.state.resuming else None,
            "top_reasons": [{"reason": reason, "rows": rows} for reason, rows in self.reasons.most_common(TOP_REASONS)],
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


def _values(cells: list[str], fields: list[tuple[str, int]], record: Record) -> dict[str, str]:
    values = {name: cells[index] for name, index in fields}
    if record.end_line > record.line:
        # A cell that spans lines in a CRLF file carries the file's line ending, not data.
        values = {name: value.replace("\r\n", "\n") for name, value in values.items()}
    return values


def _generalise(reason: str) -> str:
    """A reason with its values blanked, so rows refused for the same rule count together."""
    return _NUMBER.sub("N", _QUOTED.sub('"…"', reason))
