"""Why a record cannot be read as a row, in words a person can act on; and a rejected.csv's row judged again.

A row of a rejected.csv imported again is judged by what it reports (`judged_again`): a row refused at stage
read keeps its reason, whatever encoding the report is read in, for as long as it has the problem it was
reported for. So an unedited rejected.csv is refused again row for row, and only an edit lets a row through
to validation. A row cut for its length never goes through: its data are incomplete, so the fix belongs in
the original file. Rows of the other stages are read like any row; a row of the wrong width is counted
without the report's three columns.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass

from movymporter.dialect import UNDECODABLE, has_replaced, has_undecodable
from movymporter.lines import KEPT
from movymporter.report import REPORT_COLUMNS, restore

CUT_NOTE = f"only the first {KEPT} characters of the line are kept"
"""Ends the reason of a row cut short. Its data are incomplete, so it is refused again when its rejected.csv is
imported: the fix belongs in the original file."""
READ_CODES = frozenset(("source-error", "encoding-error", "missing-cell", "extra-cell"))
"""The codes of the problems a row can have at stage read."""


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """Why a record could not be read as a row: a short code and a plain sentence."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def judged_again(
    cells: list[str],
    problem: ReadProblem | None,
    *,
    delimiter: str,
    width: int,
    encoding: str,
    suspect: Callable[[str], bool],
) -> tuple[list[str], ReadProblem | None]:
    """A row of a rejected.csv (all its cells, the report's first), as its data cells and the problem that keeps
    it from being read, if it still has one.

    The cells of a row reported at stage read are what the reader made of a line it could not read; a line set
    aside is its raw text split on the delimiter, which, quoted in the report, reads back as plain cells, maybe
    valid ones. So such a row is judged again, as its line, by the problem it was reported for: undecodable
    bytes still there, its text still not one line csv can read; a row cut for its length always has it. Then
    it keeps the report's reason, the same whatever encoding the report is read in. Any row (of any stage) with
    undecodable bytes (`suspect`), or of the wrong width (`width` counts the data cells only, so an unchanged
    row gets its first reason), is refused at stage read; the others go on to validation.
    """
    data = [restore(cell) for cell in cells[len(REPORT_COLUMNS) :]]
    if problem is not None:  # the report's own text cannot be read: that is the row's problem now
        return data, problem
    text = delimiter.join(data)
    stage = cells[1].strip() if len(cells) > 1 else ""
    reported = reported_problem(restore(cells[2])) if stage == "read" and len(cells) > 2 else None
    if reported is not None and _still_has(reported, text, delimiter):
        return data, reported
    if suspect(text):
        return data, encoding_problem(text, encoding)
    if len(data) != width:
        return data, wrong_width(len(data), width)
    return data, None


def _still_has(reported: ReadProblem, text: str, delimiter: str) -> bool:
    """Whether the line a report row holds still has the problem it was reported for (a wrong width is judged
    again as for any row, and gives the same reason while the row is unchanged)."""
    if reported.message.endswith(CUT_NOTE):
        return True
    if reported.code == "encoding-error":
        return has_undecodable(text) or has_replaced(text)
    if reported.code == "source-error":
        return not reads_as_one_line(text, delimiter)
    return False


def wrong_width(found: int, width: int) -> ReadProblem:
    code = "missing-cell" if found < width else "extra-cell"
    return ReadProblem(code, f"the row has {found} field{'s' * (found != 1)}, the header has {width}")


def reported_problem(reason: str) -> ReadProblem | None:
    """The read problem a rejected.csv gives as a row's reason ("code: message"), or None when it is not one."""
    code, colon, message = reason.partition(": ")
    return ReadProblem(code, message) if colon and code in READ_CODES else None


def reads_as_one_line(text: str, delimiter: str) -> bool:
    """Whether `text`, read as one line of the file, is a row: its quotes are balanced and nothing follows one."""
    try:
        next(csv.reader((text,), delimiter=delimiter, strict=True), None)
    except csv.Error:
        return False
    return True


def encoding_problem(text: str, encoding: str) -> ReadProblem:
    if "\x00" in text:
        return ReadProblem("encoding-error", "the line contains a NUL byte (binary data, or a UTF-16 file?)")
    run = UNDECODABLE.search(text)
    if run is None:
        return ReadProblem("encoding-error", f"the line has bytes that are not valid {encoding}")
    shown = " ".join(f"0x{ord(char) - 0xDC00:02X}" for char in run.group()[:8])
    hint = "; if the whole file is cp1252, pass --encoding cp1252" if encoding.startswith("utf-8") else ""
    return ReadProblem("encoding-error", f"bytes {shown} are not valid {encoding}{hint}")


def explain_csv_error(error: csv.Error) -> str:
    text = str(error)
    if text.startswith("field larger than field limit"):
        return f"a field is longer than {csv.field_size_limit()} characters"
    if text == "unexpected end of data":
        return "a quoted field is not closed before the end of the file"
    if text.endswith("expected after '\"'"):
        return 'a closing quote is followed by other characters (a quote inside a quoted field must be doubled: "")'
    return f"malformed CSV ({text})"
