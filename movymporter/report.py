"""The run's reports: rejected.csv, duplicates.csv, summary.json, and the summary for humans.

Report files are written under temporary names and renamed when the run ends,
so a report is never half-written, and re-importing reports/rejected.csv into
the same REPORT_DIR reads the old file while the new one is being written.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from pathlib import Path
from typing import IO, Any

from movymporter.errors import ConfigError

REJECTED = "rejected.csv"
DUPLICATES = "duplicates.csv"
SUMMARY = "summary.json"
REPORT_COLUMNS = ("line", "stage", "reason")
"""What rejected.csv puts before the input's own columns; an import of a rejected.csv skips them."""
REASON_LIMIT = 2000
"""Characters of a reason written; the rest is cut. A reason quotes the values it refuses, and one quoting a
value at csv's field size limit would be a cell too long to be read back when rejected.csv is imported again."""

# A cell a spreadsheet would run as a formula gets a leading apostrophe. Cells that
# already start with apostrophes before such a character get one more, so that
# `restore` can undo exactly what `neutralise` did.
_NEEDS_GUARD = re.compile(r"'*[=+\-@\t\r]")
_GUARDED = re.compile(r"'+[=+\-@\t\r]")


def neutralise(cell: str) -> str:
    return "'" + cell if _NEEDS_GUARD.match(cell) else cell


def restore(cell: str) -> str:
    """Undo `neutralise`: used when a rejected.csv is imported again."""
    return cell[1:] if _GUARDED.match(cell) else cell


def keep_bytes_or_escape(error: UnicodeError) -> tuple[str | bytes, int]:
    """How a report writes what its encoding cannot: a byte the input could not decode (kept as a lone surrogate)
    goes back as that byte, so a re-import finds it again; a character the report's encoding lacks (REPORT_ENCODING
    chosen narrower than the input's) is written as a backslash escape. UTF-16 and UTF-32 carry no stray bytes:
    there the surrogates are escaped too."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    unencodable = error.object[error.start : error.end]
    if "a".encode(error.encoding) != b"a":
        return unencodable.encode("ascii", errors="backslashreplace").decode("ascii"), error.end
    kept = bytearray()
    for char in unencodable:
        code = ord(char)
        kept += bytes((code - 0xDC00,)) if 0xDC80 <= code <= 0xDCFF else char.encode("ascii", "backslashreplace")
    return bytes(kept), error.end


codecs.register_error("movymporter-report", keep_bytes_or_escape)


def is_utf8(encoding: str) -> bool:
    """Whether reports in this encoding are UTF-8, and so start with a byte-order mark."""
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def describe_encoding(encoding: str) -> str:
    """An encoding as the summary names it."""
    return "UTF-8 with a byte-order mark" if is_utf8(encoding) else codecs.lookup(encoding).name


class Reports:
    """Writers of the CSV reports, in the input's delimiter and in REPORT_ENCODING (or the input's encoding)."""

    def __init__(self, directory: Path, *, delimiter: str, encoding: str, header: list[str]) -> None:
        self.directory = directory
        # UTF-8 reports get a byte-order mark: spreadsheets then open them as UTF-8, and a report whose only
        # non-ASCII bytes are the invalid ones is still read back as UTF-8 when it is imported again. The mark
        # is written by hand: a file opened as utf-8-sig encodes every write in Python, plain utf-8 in C.
        self._mark = "\ufeff" if is_utf8(encoding) else ""
        self._encoding = "utf-8" if self._mark else encoding
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._rejected_file = self._open_partial(REJECTED)
            try:
                self._duplicates_file = self._open_partial(DUPLICATES)
            except OSError:
                self._rejected_file.close()
                raise
        except OSError as error:
            raise ConfigError(
                f"REPORT_DIR (--report-dir) {directory}: cannot write reports there ({error.strerror or error}). "
                "Accepted: a directory path you can write to."
            ) from None
        self._rejected = csv.writer(self._rejected_file, delimiter=delimiter, lineterminator="\r\n")
        self._duplicates = csv.writer(self._duplicates_file, delimiter=delimiter, lineterminator="\r\n")
        self._rejected.writerow([*REPORT_COLUMNS, *map(neutralise, header)])
        self._duplicates.writerow(["line", "duplicate_of"])
        self._finished = False

    def _open_partial(self, name: str) -> IO[str]:
        handle = (self.directory / f".{name}.partial").open(
            "w", encoding=self._encoding, errors="movymporter-report", newline=""
        )
        handle.write(self._mark)
        return handle

    def reject(self, line: int, stage: str, reason: str, cells: list[str]) -> None:
        if len(reason) > REASON_LIMIT:
            reason = reason[:REASON_LIMIT] + "..."
        if not reason.isascii():  # every encoding of a report can write ASCII
            reason = reason.encode(self._encoding, errors="backslashreplace").decode(self._encoding)
        if any(map(_NEEDS_GUARD.match, cells)):  # seldom: the test alone costs a third of neutralising each cell
            cells = list(map(neutralise, cells))
        self._rejected.writerow([line, stage, reason, *cells])

    def duplicate(self, line: int, first_line: int) -> None:
        self._duplicates.writerow([line, first_line])

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the CSV reports, put them in place, and write summary.json."""
        for handle, name in ((self._rejected_file, REJECTED), (self._duplicates_file, DUPLICATES)):
            handle.close()
            os.replace(self.directory / f".{name}.partial", self.directory / name)
        self._finished = True
        partial = self.directory / f".{SUMMARY}.partial"
        # ASCII escapes keep the JSON valid even for a file name that is not UTF-8.
        partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="ascii")
        os.replace(partial, self.directory / SUMMARY)

    def close(self) -> None:
        """After a run that failed: drop the half-written reports (the last complete ones stay)."""
        if self._finished:
            return
        for handle, name in ((self._rejected_file, REJECTED), (self._duplicates_file, DUPLICATES)):
            handle.close()
            (self.directory / f".{name}.partial").unlink(missing_ok=True)


def _count(value: int) -> str:
    return f"{value:,}"


def render_summary(summary: dict[str, Any]) -> str:
    """The final summary for humans, printed on stdout."""
    where, dry_run = summary["report_dir"], summary["dry_run"]

    def listed_in(name: str, key: str) -> str:
        return f"{where}/{name}" if summary[key] else ""

    rows: list[tuple[str, int, str]] = []
    if dry_run:
        rows.append(("valid (not sent: dry run)", summary["valid"], ""))
    else:
        rows.append(("delivered", summary["delivered"], ""))
        if summary["already_delivered"]:
            rows.append(("  of which in earlier runs", summary["already_delivered"], ""))
    rows.append(("invalid", summary["invalid"], listed_in(REJECTED, "invalid")))
    if not dry_run:
        rows.append(("refused by the sink", summary["sink_rejected"], listed_in(REJECTED, "sink_rejected")))
        rows.append(("failed delivery", summary["failed"], listed_in(REJECTED, "failed")))
    if summary["not_attempted"]:
        rows.append(("not attempted (stopped)", summary["not_attempted"], listed_in(REJECTED, "not_attempted")))
    rows.append(("duplicates skipped", summary["duplicates"], listed_in(DUPLICATES, "duplicates")))
    if summary["duplicates_sent"]:
        rows.append(("duplicates kept (--keep-duplicates)", summary["duplicates_sent"], ""))
    rows.append(("blank lines skipped", summary["blank"], ""))
    if not dry_run:
        rows.append(("retries", summary["retries"], ""))
    width = max(len(label) for label, _, _ in rows)
    encoding = f" ({describe_encoding(summary['report_encoding'])})"
    lines = [
        f"{summary['input']}: {_count(summary['rows'])} rows in {summary['elapsed_s']:.1f} s "
        f"({_count(round(summary['rows_per_s']))} rows/s)"
    ]
    lines += [f"  {label:<{width}}  {_count(value):>10}  {note}".rstrip() for label, value, note in rows]
    lines.append(f"reports in {where}/{encoding}")
    if summary["stopped"]:
        lines.append(f"stopped: {summary['stopped']}")
        if summary["unread_from_line"]:
            lines.append(f"  lines from {summary['unread_from_line']} on were not read")
    if summary["top_reasons"]:
        lines.append("top reasons rows were not delivered:")
        lines += [f"  {item['rows']:>8,}  {item['reason']}" for item in summary["top_reasons"]]
    if summary.get("adaptive_concurrency"):
        limits = summary["adaptive_concurrency"]
        final, lowest, ceiling = (sum(limit[key] for limit in limits) for key in ("final", "min", "ceiling"))
        lines.append(f"adaptive concurrency: ended at {final} requests in flight (lowest {lowest}, ceiling {ceiling})")
    check = summary["metrics_check"]
    lines.append(f"metrics check: {check['state']}")
    if check["statuses"]:
        lines.append(f"  {'status':<8}{'sink delta':>12}{'importer saw':>14}")
        for status, item in check["statuses"].items():
            verdict = "ok" if item["match"] else "MISMATCH"
            lines.append(f"  {status:<8}{item['sink_delta']:>12,}{item['importer_saw']:>14,}  {verdict}")
    lines += [f"  note: {note}" for note in check["notes"]]
    return "\n".join(lines)
