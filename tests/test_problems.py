"""Why a record cannot be read as a row, in words a person can act on; and a rejected.csv's row judged again."""

from __future__ import annotations

import csv

import pytest

from movymporter.dialect import has_replaced, has_undecodable
from movymporter.lines import KEPT, LINE_LIMIT
from movymporter.problems import (
    CUT_NOTE,
    READ_CODES,
    ReadProblem,
    encoding_problem,
    explain_csv_error,
    judged_again,
    reads_as_one_line,
    reported_problem,
    wrong_width,
)

UNCLOSED = "source-error: a quote opened on this line runs on to line 5; this line is set aside"
STRAY_BYTE = "encoding-error: bytes 0xFF are not valid utf-8; if the whole file is cp1252, pass --encoding cp1252"
CUT = f"source-error: the line is longer than {LINE_LIMIT} characters; {CUT_NOTE}"
SHORT = "missing-cell: the row has 1 field, the header has 2"


def problem(text: str) -> ReadProblem:
    """The problem a reason of rejected.csv ("code: message") names."""
    code, _, message = text.partition(": ")
    return ReadProblem(code, message)


def test_a_read_problem_reads_as_its_code_and_message() -> None:
    """A read problem is written as "code: message", the form a rejected.csv gives as a row's reason."""
    assert str(ReadProblem("source-error", "a quote is never closed")) == "source-error: a quote is never closed"
    assert reported_problem(str(ReadProblem("extra-cell", "the row has 3 fields"))) == problem(
        "extra-cell: the row has 3 fields"
    )


def test_the_cut_note_names_the_characters_kept() -> None:
    """The note that ends the reason of a row cut short says how many characters of the line are kept."""
    note = f"only the first {KEPT} characters of the line are kept"
    assert note == CUT_NOTE


@pytest.mark.parametrize(
    ("found", "width", "expected"),
    [
        pytest.param(0, 2, "missing-cell: the row has 0 fields, the header has 2", id="no-field"),
        pytest.param(1, 3, "missing-cell: the row has 1 field, the header has 3", id="one-field-is-singular"),
        pytest.param(2, 3, "missing-cell: the row has 2 fields, the header has 3", id="one-field-short"),
        pytest.param(4, 3, "extra-cell: the row has 4 fields, the header has 3", id="one-field-over"),
        pytest.param(2, 1, "extra-cell: the row has 2 fields, the header has 1", id="two-fields-for-one"),
    ],
)
def test_wrong_width(found: int, width: int, expected: str) -> None:
    """A row with too few fields has missing-cell, one with too many extra-cell, and both counts are given."""
    assert str(wrong_width(found, width)) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(UNCLOSED, problem(UNCLOSED), id="source-error"),
        pytest.param(STRAY_BYTE, problem(STRAY_BYTE), id="encoding-error"),
        pytest.param(SHORT, problem(SHORT), id="missing-cell"),
        pytest.param("extra-cell: the row has 3 fields", problem("extra-cell: the row has 3 fields"), id="extra-cell"),
        pytest.param("type-error: year must be a whole number", None, id="a-validation-code-is-not-a-read-problem"),
        pytest.param("no answer before the run stopped", None, id="a-delivery-reason-has-no-code"),
        pytest.param("source-error:no space after the colon", None, id="colon-without-space"),
        pytest.param("", None, id="empty-reason"),
    ],
)
def test_reported_problem(reason: str, expected: ReadProblem | None) -> None:
    """A reason of rejected.csv names a read problem when it starts with one of the read codes and ": "."""
    assert reported_problem(reason) == expected


def test_the_read_codes_are_those_the_reader_gives() -> None:
    """The codes a row can have at stage read: a source error, an encoding error, a wrong width."""
    assert {"source-error", "encoding-error", "missing-cell", "extra-cell"} == READ_CODES


@pytest.mark.parametrize(
    ("text", "delimiter", "expected"),
    [
        pytest.param("Heat;1995", ";", True, id="plain-cells"),
        pytest.param('"Heat; the film";1995', ";", True, id="quoted-cell-with-delimiter"),
        pytest.param('"Unclosed;1995', ";", False, id="quote-never-closed"),
        pytest.param('"bad"x;1995', ";", False, id="closing-quote-then-text"),
        pytest.param('"bad"x;1995', ",", False, id="closing-quote-then-text-whatever-the-delimiter"),
        pytest.param('"ok","also ok"', ",", True, id="quotes-balanced"),
        pytest.param("", ";", True, id="empty-text"),
    ],
)
def test_reads_as_one_line(text: str, delimiter: str, expected: bool) -> None:
    """Text reads as one line when its quotes are balanced and nothing but a delimiter follows a closing one."""
    assert reads_as_one_line(text, delimiter) is expected


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        pytest.param(
            "A\x00B,1\n", "utf-8", "the line contains a NUL byte (binary data, or a UTF-16 file?)", id="nul-byte"
        ),
        pytest.param(
            "Bad\udcff\udcfe,1\n",
            "utf-8",
            "bytes 0xFF 0xFE are not valid utf-8; if the whole file is cp1252, pass --encoding cp1252",
            id="utf8-names-the-bytes-and-cp1252",
        ),
        pytest.param(
            "Bad\udcff,1\n",
            "utf-8-sig",
            "bytes 0xFF are not valid utf-8-sig; if the whole file is cp1252, pass --encoding cp1252",
            id="utf8-with-bom-too",
        ),
        pytest.param("X\udc81,2002\n", "cp1252", "bytes 0x81 are not valid cp1252", id="cp1252-without-a-hint"),
        pytest.param(
            "a\udcffb\udcfe,1\n",
            "cp1252",
            "bytes 0xFF are not valid cp1252",
            id="only-the-first-run-of-bytes-shown",
        ),
        pytest.param(
            "x" + "".join(map(chr, range(0xDC80, 0xDC8A))),
            "cp1252",
            "bytes 0x80 0x81 0x82 0x83 0x84 0x85 0x86 0x87 are not valid cp1252",
            id="at-most-eight-bytes-shown",
        ),
        pytest.param("Bad\ufffd,1\n", "utf-16", "the line has bytes that are not valid utf-16", id="utf16-replaced"),
    ],
)
def test_encoding_problem(text: str, encoding: str, expected: str) -> None:
    """An encoding-error says what is wrong with the line: a NUL byte, or the bytes the encoding refused."""
    assert encoding_problem(text, encoding) == ReadProblem("encoding-error", expected)


def csv_error(text: str) -> csv.Error:
    """The error csv raises on reading `text` in strict mode."""
    with pytest.raises(csv.Error) as caught:
        list(csv.reader([text], strict=True))
    return caught.value


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            csv_error("x" * (csv.field_size_limit() + 1)),
            f"a field is longer than {csv.field_size_limit()} characters",
            id="field-over-the-size-limit",
        ),
        pytest.param(
            csv_error('"never closed'),
            "a quoted field is not closed before the end of the file",
            id="quote-never-closed",
        ),
        pytest.param(
            csv_error('"bad"x,1'),
            'a closing quote is followed by other characters (a quote inside a quoted field must be doubled: "")',
            id="closing-quote-then-text",
        ),
        pytest.param(csv.Error("something else"), "malformed CSV (something else)", id="any-other-error-quoted"),
    ],
)
def test_explain_csv_error(error: csv.Error, expected: str) -> None:
    """csv's error becomes a sentence that says what to fix; one it does not know is quoted."""
    assert explain_csv_error(error) == expected


# --- a rejected.csv's row judged again -----------------------------------------------------------


def again(cells: list[str], read_as: ReadProblem | None = None) -> tuple[list[str], ReadProblem | None]:
    """A report row (line, stage, reason, then the data of a two-column input) judged again, as utf-8."""
    return judged_again(cells, read_as, delimiter=";", width=2, encoding="utf-8", suspect=has_undecodable)


@pytest.mark.parametrize(
    ("cells", "data", "expected"),
    [
        pytest.param(
            ["3", "read", UNCLOSED, '"Unclosed', "2000"], ['"Unclosed', "2000"], UNCLOSED, id="quote-still-open"
        ),
        pytest.param(
            ["3", "read", UNCLOSED, '"bad"x', "2000"], ['"bad"x', "2000"], UNCLOSED, id="quote-still-followed"
        ),
        pytest.param(["3", "read", UNCLOSED, "Unclosed", "2000"], ["Unclosed", "2000"], None, id="quote-removed"),
        pytest.param(
            ["3", "read", UNCLOSED, "Bad\udcff", "2000"],
            ["Bad\udcff", "2000"],
            STRAY_BYTE,
            id="quote-removed-byte-left",
        ),
        pytest.param(["3", "read", STRAY_BYTE, "Bad\udcff", "2000"], ["Bad\udcff", "2000"], STRAY_BYTE, id="byte-left"),
        pytest.param(["3", "read", STRAY_BYTE, "Bad\x00", "2000"], ["Bad\x00", "2000"], STRAY_BYTE, id="nul-left"),
        pytest.param(["3", "read", STRAY_BYTE, "Bad", "2000"], ["Bad", "2000"], None, id="byte-removed"),
        pytest.param(["3", "read", CUT, "Cut", "2000"], ["Cut", "2000"], CUT, id="a-cut-row-never-goes-through"),
        pytest.param(["3", "read", SHORT, "Short"], ["Short"], SHORT, id="still-short"),
        pytest.param(["3", "read", SHORT, "Short", "2000"], ["Short", "2000"], None, id="cell-added"),
        pytest.param(
            ["3", "read", SHORT, "Short", "2000", "more"],
            ["Short", "2000", "more"],
            "extra-cell: the row has 3 fields, the header has 2",
            id="edited-to-another-width",
        ),
        pytest.param([" 3 ", " read ", UNCLOSED, '"Open', "1"], ['"Open', "1"], UNCLOSED, id="stage-with-spaces"),
        pytest.param(["3", "read", "not a reason", "A", "1"], ["A", "1"], None, id="read-row-without-a-read-code"),
        pytest.param(["3", "validate", "type-error: x", "Heat", "1995"], ["Heat", "1995"], None, id="validate-row"),
        pytest.param(
            ["3", "validate", UNCLOSED, '"Unclosed', "2000"],
            ['"Unclosed', "2000"],
            None,
            id="a-read-code-at-another-stage-is-not-a-read-problem",
        ),
        pytest.param(
            ["3", "validate", "type-error: x", "Wide", "2000", "more"],
            ["Wide", "2000", "more"],
            "extra-cell: the row has 3 fields, the header has 2",
            id="another-stage-of-the-wrong-width",
        ),
        pytest.param(
            ["3", "delivery", "no answer", "Bad\udcff", "2000"],
            ["Bad\udcff", "2000"],
            STRAY_BYTE,
            id="another-stage-with-an-undecodable-byte",
        ),
        pytest.param(
            ["3", "validate", "type-error: x", "'=SUM(A1)", "'+1995"],
            ["=SUM(A1)", "+1995"],
            None,
            id="spreadsheet-guards-taken-off",
        ),
        pytest.param(
            ["3", "validate", "type-error: x", "''=SUM(A1)", "'plain"],
            ["'=SUM(A1)", "'plain"],
            None,
            id="apostrophes-of-the-data-kept",
        ),
        pytest.param(["3"], [], "missing-cell: the row has 0 fields, the header has 2", id="no-data-cells"),
    ],
)
def test_a_report_row_is_judged_by_what_it_reports(cells: list[str], data: list[str], expected: str | None) -> None:
    """A row reported at stage read keeps its reason while it still has the problem it was reported for;
    otherwise any row with an undecodable byte is an encoding-error, any row of the wrong width (counted
    without the report's three columns) a wrong width, and the others go on with their data cells restored."""
    assert again(cells) == (data, None if expected is None else problem(expected))


def test_a_report_row_csv_could_not_read_keeps_that_problem() -> None:
    """When the report's own line cannot be read, that problem is the row's, whatever the row reports."""
    unreadable = ReadProblem("source-error", "a quoted field is not closed before the end of the file")
    assert again(["3", "validate", "type-error: x", '"B'], unreadable) == (['"B'], unreadable)


@pytest.mark.parametrize(
    ("cells", "data", "expected"),
    [
        pytest.param(
            ["3", "read", STRAY_BYTE, "Bad\ufffd", "2000"], ["Bad\ufffd", "2000"], STRAY_BYTE, id="reason-kept-as-is"
        ),
        pytest.param(
            ["3", "validate", "type-error: x", "Bad\ufffd", "2000"],
            ["Bad\ufffd", "2000"],
            "encoding-error: the line has bytes that are not valid utf-16",
            id="replaced-byte-named-in-the-report-encoding",
        ),
        pytest.param(["3", "read", STRAY_BYTE, "Bad", "2000"], ["Bad", "2000"], None, id="byte-removed"),
    ],
)
def test_a_report_row_read_as_utf16_is_judged_the_same(cells: list[str], data: list[str], expected: str | None) -> None:
    """A report read as UTF-16 (its bad bytes replaced by U+FFFD) refuses a row again with the reason it
    reports, the one the first import gave in the input's encoding."""
    found = judged_again(cells, None, delimiter=";", width=2, encoding="utf-16", suspect=has_replaced)
    assert found == (data, None if expected is None else problem(expected))
