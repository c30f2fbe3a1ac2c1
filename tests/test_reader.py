"""CsvInput, the streaming CSV reader: header, physical line numbers, malformed rows, chunks, a rejected.csv.

Every input is a real file written as bytes, so encodings and line endings are exact. The parts it is built of
have their own tests: test_dialect (encoding, delimiter, names), test_lines (physical lines), test_problems
(reasons, a report row judged again) and test_chunk.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import pytest

from movymporter.chunk import Record
from movymporter.errors import InputError
from movymporter.lines import KEPT, LINE_LIMIT
from movymporter.problems import CUT_NOTE, ReadProblem
from movymporter.reader import CsvInput
from movymporter.report import neutralise

MIB = 1 << 20
FILM_HEADER = "Year;Length;Title;Subject;Actor;Actress;Director;Popularity;Awards;*Image\r\n"
FILM_TYPES = "INT;INT;STRING;CAT;CAT;CAT;CAT;INT;BOOL;STRING\r\n"
FILM_ROW = "1990;111;Átame;Comedy;Banderas, Antonio;Abril, Victoria;Almodóvar, Pedro;68;No;NicholasCage.png\r\n"

Span = tuple[int, int, str | None]


def write(folder: Path, data: bytes, name: str = "input.csv") -> Path:
    """Write `data` byte for byte and return the path."""
    path = folder / name
    path.write_bytes(data)
    return path


def records(source: CsvInput) -> Iterator[Record]:
    """The records of the source's chunks, one at a time: lazily, so that a test can ask the source between two."""
    for chunk in source.chunks():
        yield from chunk.records()


def read(path: Path, **options: str) -> tuple[CsvInput, list[Record]]:
    """Open the file, read every record, close it; the closed input still answers its counters."""
    with CsvInput(path, **options) as source:
        return source, list(records(source))


def spans(records: list[Record]) -> list[Span]:
    """(first line, last line, problem code or None) of each record."""
    return [(r.line, r.end_line, r.problem.code if r.problem else None) for r in records]


def physical_lines(data: bytes) -> list[bytes]:
    """The file's physical lines, split as universal newlines do (CRLF, LF, lone CR), terminators dropped."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a line terminator
    return lines


def ascii_padding(size: int) -> bytes:
    """`size` bytes of valid ASCII rows ("A,1"), the last one padded with x's."""
    rows, rest = divmod(size, 4)
    return b"A,1\n" * rows + b"x" * rest


def accent_at_sample_end(offset: int) -> bytes:
    """A UTF-8 file whose first non-ASCII character starts `offset` bytes before the end of its first MiB."""
    head = b"title,year\n"
    accent = "é".encode()
    data = head + ascii_padding(MIB - offset - len(head)) + accent + b",1\n" + "Amélie,2001\n".encode() * 3
    assert data[MIB - offset : MIB - offset + 2] == accent
    return data


# --- encoding -----------------------------------------------------------------------------------


def late_non_ascii(encoding: str) -> bytes:
    """A file whose first non-ASCII byte comes after the first MiB."""
    return b"title,year\n" + b"A,1\n" * (MIB // 4 + 1000) + "Amélie,2001\n".encode(encoding)


@pytest.mark.parametrize(
    ("data", "header", "first_cells"),
    [
        pytest.param(
            "\ufefftitle,year\nAmélie,2001\n".encode(),
            ["title", "year"],
            ["Amélie", "2001"],
            id="utf8-bom-not-in-header",
        ),
        pytest.param(
            (FILM_HEADER + FILM_TYPES + FILM_ROW).encode("cp1252"),
            FILM_HEADER.strip().split(";"),
            FILM_ROW.strip().split(";"),
            id="cp1252-accents-decoded",
        ),
        pytest.param(
            "title,year\nAmélie,2001\n".encode("utf-16"), ["title", "year"], ["Amélie", "2001"], id="utf16-decoded"
        ),
        pytest.param(
            late_non_ascii("cp1252"), ["title", "year"], ["A", "1"], id="cp1252-after-1mib-first-rows-unchanged"
        ),
    ],
)
def test_detected_encoding_decodes_header_and_rows(
    tmp_path: Path, data: bytes, header: list[str], first_cells: list[str]
) -> None:
    """The detected encoding decodes the header (without a BOM character) and the rows exactly."""
    source, records = read(write(tmp_path, data))
    assert source.header == header
    assert "\ufeff" not in source.header[0]
    assert records[0].cells == first_cells
    assert records[0].problem is None
    assert source.dialect.encoding_detected is True


def test_late_non_ascii_row_is_decoded_with_the_detected_encoding(tmp_path: Path) -> None:
    """A cp1252 accent first seen after 1 MiB is still decoded as cp1252 on its own row."""
    source, records = read(write(tmp_path, late_non_ascii("cp1252")))
    assert source.dialect.encoding == "cp1252"
    assert records[-1].cells == ["Amélie", "2001"]
    assert records[-1].problem is None


def test_one_stray_byte_in_utf8_is_an_encoding_error_of_its_row_only(tmp_path: Path) -> None:
    """A UTF-8 file with one invalid byte stays UTF-8; only that row gets encoding-error, showing the byte."""
    data = "title,year\nAmélie,2001\nLa Ciénaga,2001\n".encode() + b"Bad\xff,1999\n" + "Señor,2000\n".encode()
    source, records = read(write(tmp_path, data))
    assert source.dialect.encoding == "utf-8"
    assert spans(records) == [(2, 2, None), (3, 3, None), (4, 4, "encoding-error"), (5, 5, None)]
    assert [records[i].cells[0] for i in (0, 1, 3)] == ["Amélie", "La Ciénaga", "Señor"]
    problem = records[2].problem
    assert problem is not None
    assert "0xFF" in problem.message
    assert "utf-8" in problem.message
    assert "--encoding cp1252" in problem.message


def test_byte_undefined_in_cp1252_is_an_encoding_error(tmp_path: Path) -> None:
    """In a cp1252 file, a byte cp1252 leaves undefined (0x81) makes its row an encoding-error naming the byte."""
    data = "title,year\nAmélie,2001\n".encode("cp1252") + b"X\x81,2002\n"
    source, records = read(write(tmp_path, data))
    assert source.dialect.encoding == "cp1252"
    assert spans(records) == [(2, 2, None), (3, 3, "encoding-error")]
    assert records[1].problem == ReadProblem("encoding-error", "bytes 0x81 are not valid cp1252")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00" * 4096, id="binary-file-of-nuls"),
        pytest.param("title,year\nAmélie,2001\n".encode("utf-16-le"), id="utf16-without-bom"),
    ],
)
def test_binary_looking_file_is_an_input_error(tmp_path: Path, data: bytes) -> None:
    """A file full of NUL bytes (binary, or UTF-16 without a BOM) is refused with InputError before any row is read."""
    path = write(tmp_path, data)
    with pytest.raises(InputError, match="binary file, or UTF-16 without a byte-order mark"):
        CsvInput(path)


@pytest.mark.parametrize("offset", [2, 1], ids=["utf8-char-ends-at-sample-end", "utf8-char-split-across-sample-end"])
def test_utf8_char_at_the_end_of_the_sample_is_read_as_utf8(tmp_path: Path, offset: int) -> None:
    """A valid UTF-8 file whose first non-ASCII character sits at the end of the first MiB is read as UTF-8."""
    source, records = read(write(tmp_path, accent_at_sample_end(offset)))
    assert source.dialect.encoding == "utf-8"
    assert records[-1].cells == ["Amélie", "2001"]
    assert all(record.problem is None for record in records)


@pytest.mark.parametrize(
    ("options", "encoding", "delimiter", "cells", "describe"),
    [
        pytest.param(
            {"encoding": "cp1252"},
            "cp1252",
            ",",
            ["AmÃ©lie", "2001"],
            "encoding cp1252 (given), delimiter comma (detected)",
            id="encoding-given-is-used-not-detected",
        ),
        pytest.param(
            {"delimiter": ";"},
            "utf-8",
            ";",
            ["Amélie,2001"],
            "encoding utf-8 (detected), delimiter semicolon (given)",
            id="delimiter-given-is-used-not-detected",
        ),
    ],
)
def test_explicit_encoding_and_delimiter_override_detection(
    tmp_path: Path, options: dict[str, str], encoding: str, delimiter: str, cells: list[str], describe: str
) -> None:
    """An encoding or delimiter passed in is used as given, and the dialect says it was given."""
    path = write(tmp_path, "title,year\nAmélie,2001\n".encode())
    source, records = read(path, **options)
    assert (source.dialect.encoding, source.dialect.delimiter) == (encoding, delimiter)
    assert source.dialect.describe() == describe
    assert records[0].cells == cells


# --- delimiter and header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "delimiter", "header"),
    [
        pytest.param(b'"Title, original";year\nA;1\n', ";", ["Title, original", "year"], id="semicolon-file"),
        pytest.param(b'"Title; original"\tyear\nA\t1\n', "\t", ["Title; original", "year"], id="tab-file"),
        pytest.param(b"title|year|x\r\nA|1|2\r\n", "|", ["title", "year", "x"], id="pipe-file-crlf"),
    ],
)
def test_delimiter_detected_from_the_header_of_a_file(
    tmp_path: Path, data: bytes, delimiter: str, header: list[str]
) -> None:
    """CsvInput detects the delimiter from the header and splits header and rows with it."""
    source, records = read(write(tmp_path, data))
    assert source.dialect.delimiter == delimiter
    assert source.dialect.delimiter_detected is True
    assert source.header == header
    assert len(records[0].cells) == len(header)
    assert records[0].problem is None


def test_header_names_are_normalised_but_header_kept_as_read(tmp_path: Path) -> None:
    """CsvInput.names holds the matching keys while CsvInput.header keeps the cells exactly as read."""
    source, _ = read(write(tmp_path, b" *Title ;YEAR;  *Image\nA;1;a.png\n"))
    assert source.names == ["title", "year", "image"]
    assert source.header == [" *Title ", "YEAR", "  *Image"]
    assert source.header_line == 1


@pytest.mark.parametrize(
    ("header", "expected", "names"),
    [
        pytest.param("line,stage,reason,title,year", True, ["title", "year"], id="report-header"),
        pytest.param("Line;*Stage; REASON ;title;year", True, ["title", "year"], id="report-header-any-case-and-star"),
        pytest.param(
            "title,year,line,stage,reason",
            False,
            ["title", "year", "line", "stage", "reason"],
            id="report-columns-not-first",
        ),
        pytest.param("line,stage,title,year", False, ["line", "stage", "title", "year"], id="reason-missing"),
        pytest.param("title,year", False, ["title", "year"], id="plain-input"),
    ],
)
def test_is_report(tmp_path: Path, header: str, expected: bool, names: list[str]) -> None:
    """is_report is true only when the header starts with line, stage, reason; a report's names are then those
    of its other columns."""
    source, _ = read(write(tmp_path, f"{header}\n".encode()))
    assert source.is_report is expected
    assert source.names == names


# --- type row -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "type_row_line", "first_line"),
    [
        pytest.param((FILM_HEADER + FILM_TYPES + FILM_ROW).encode("cp1252"), 2, 3, id="classic-film-type-row-skipped"),
        pytest.param(b"title;year;x\nstring;int;float\nA;1;2\n", 2, 3, id="lower-case-type-names-skipped"),
        pytest.param(b"title;year;x;y\nSTRING;INT\nA;1;2;3\n", 2, 3, id="short-type-row-skipped"),
        pytest.param(b"title;year;x\n\nSTRING;INT;CAT\nA;1;2\n", 3, 4, id="type-row-after-blank-line-skipped"),
        pytest.param(
            (FILM_HEADER + FILM_ROW + FILM_ROW).encode("cp1252"), None, 2, id="data-row-on-line-2-is-not-a-type-row"
        ),
        pytest.param(b"title;year;x\nDate;1990;Text\n", None, 2, id="row-with-a-number-is-not-a-type-row"),
        pytest.param(b"title;year;x\nA;1;2\nINT;INT;INT\n", None, 2, id="type-names-on-line-3-are-data"),
    ],
)
def test_type_row(tmp_path: Path, data: bytes, type_row_line: int | None, first_line: int) -> None:
    """A row of type names right under the header is skipped and its line recorded; data rows are not."""
    source, records = read(write(tmp_path, data))
    assert source.type_row_line == type_row_line
    assert records[0].line == first_line
    assert type_row_line not in [r.line for r in records]


# --- blank lines and line numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "lines", "blank"),
    [
        pytest.param(b"title,year\nA,1\n\nB,2\n", [2, 4], 1, id="empty-line"),
        pytest.param(b"title,year\r\nA,1\r\n\r\n\r\nB,2\r\n", [2, 5], 2, id="crlf-empty-lines"),
        pytest.param(b"title,year\nA,1\n   \n\t\nB,2\n", [2, 5], 2, id="whitespace-only-lines"),
        pytest.param(b"title;year\nA;1\n;\n ; \nB;2\n", [2, 5], 2, id="delimiter-only-lines"),
        pytest.param(b"title;year;x\nA;1;2\n;;;;;\n", [2], 1, id="more-delimiters-than-columns-is-still-blank"),
        pytest.param(b"\n\ntitle,year\nA,1\n", [4], 2, id="blank-lines-before-header"),
        pytest.param(b"title,year\nA,1\n\n\n", [2], 2, id="trailing-blank-lines"),
        pytest.param(b'title,year\n""\nA,1\n', [3], 1, id="one-empty-quoted-cell-is-blank"),
        pytest.param(
            b'title,year\n" \r\n ",\nA,1\n', [4], 2, id="quoted-whitespace-over-two-lines-counts-two-blank-lines"
        ),
    ],
)
def test_blank_lines_are_counted_not_yielded(tmp_path: Path, data: bytes, lines: list[int], blank: int) -> None:
    """Blank, whitespace-only and delimiter-only lines are counted in blank_lines and never yielded."""
    source, records = read(write(tmp_path, data))
    assert [r.line for r in records] == lines
    assert source.blank_lines == blank
    assert all(r.problem is None for r in records)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"title,year\nA,1\nB,2\n", [(2, 2), (3, 3)], id="one-line-per-record"),
        pytest.param(b'title,year\n"A\nB",1\nC,2\n', [(2, 3), (4, 4)], id="lf-inside-quoted-field-keeps-start-line"),
        pytest.param(
            b'title,year\r\n"A\r\nB\r\nC",1\r\nD,2\r\n',
            [(2, 4), (5, 5)],
            id="crlf-inside-quoted-field-keeps-start-line",
        ),
        pytest.param(b"title,year\n\nA,1\n\n\nB,2\n", [(3, 3), (6, 6)], id="after-blank-lines"),
        pytest.param(
            b'title,year\n"A\n\nB",1\nC,2\n', [(2, 4), (5, 5)], id="blank-line-inside-quoted-field-is-part-of-it"
        ),
        pytest.param(b"title,year\rA,1\rB,2\r", [(2, 2), (3, 3)], id="lone-cr-line-endings"),
        pytest.param(
            b'title,year\n"A\rB",1\nC,2\n', [(2, 3), (4, 4)], id="lone-cr-inside-quoted-field-is-a-line-break"
        ),
        pytest.param(b'title,year\nA,1\n"B\nC",2', [(2, 2), (3, 4)], id="quoted-multiline-last-record-without-newline"),
        pytest.param(b'title,year\n"A\r\nB",1\nC,2\r\n"D\nE",3\n', [(2, 3), (4, 4), (5, 6)], id="mixed-line-endings"),
    ],
)
def test_record_line_is_the_physical_line_where_it_starts(
    tmp_path: Path, data: bytes, expected: list[tuple[int, int]]
) -> None:
    """Each record's line is the 1-based physical line where it starts, and end_line where it ends."""
    source, records = read(write(tmp_path, data))
    assert [(r.line, r.end_line) for r in records] == expected
    assert all(r.problem is None for r in records)
    assert source.lines_read == len(physical_lines(data))


def test_quoted_multiline_cells_keep_their_line_breaks(tmp_path: Path) -> None:
    """A quoted field spanning lines keeps its inner line breaks exactly as in the file."""
    _, records = read(write(tmp_path, b'title,year\r\n"A\r\nB",1\r\n"C\nD",2\n'))
    assert [r.cells for r in records] == [["A\r\nB", "1"], ["C\nD", "2"]]


def test_file_without_trailing_newline(tmp_path: Path) -> None:
    """The last row is read even when the file does not end with a line break."""
    source, records = read(write(tmp_path, b"title,year\nA,1\nB,2"))
    assert [(r.line, r.cells, r.problem) for r in records] == [(2, ["A", "1"], None), (3, ["B", "2"], None)]
    assert source.lines_read == 3


# --- malformed rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "code", "message"),
    [
        pytest.param(b"A", "missing-cell", "the row has 1 field, the header has 3", id="one-field-of-three"),
        pytest.param(b"A,1", "missing-cell", "the row has 2 fields, the header has 3", id="two-fields-of-three"),
        pytest.param(b"A,1,2,3", "extra-cell", "the row has 4 fields, the header has 3", id="four-fields-of-three"),
        pytest.param(b"A,1,2,,,", "extra-cell", "the row has 6 fields, the header has 3", id="trailing-empty-fields"),
    ],
)
def test_wrong_field_count(tmp_path: Path, row: bytes, code: str, message: str) -> None:
    """A row whose field count differs from the header's gets missing-cell or extra-cell with both counts."""
    data = b"title,year,length\n" + row + b"\nZ,2,3\n"
    _, records = read(write(tmp_path, data))
    bad, good = records[0], records[-1]
    assert bad.line == 2
    assert bad.problem is not None
    assert bad.problem.code == code
    assert message in bad.problem.message
    assert good.cells == ["Z", "2", "3"]
    assert good.problem is None
    assert good.line == len(physical_lines(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"title,year\nA\x00B,1\nC,2\n", id="nul-in-cell"),
        pytest.param(b"title,year\nA,1\x00\nC,2\n", id="nul-at-line-end"),
    ],
)
def test_nul_byte_in_row_is_encoding_error(tmp_path: Path, data: bytes) -> None:
    """A NUL byte makes its row an encoding-error that mentions NUL; the next row reads normally."""
    _, records = read(write(tmp_path, data))
    assert spans(records) == [(2, 2, "encoding-error"), (3, 3, None)]
    assert records[0].problem is not None
    assert "NUL" in records[0].problem.message


FIELD_LIMIT_RUN = b"x,2\n" * 40_000  # 160,000 characters: past csv's default field size limit


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b'title,year\nA,1\n"B,2\nC,3\nD,4\n',
            [(2, None), (3, "source-error"), (4, None), (5, None)],
            id="quote-runs-to-end-of-file",
        ),
        pytest.param(b'title,year\nA,1\n"B,2\n', [(2, None), (3, "source-error")], id="quote-opened-on-last-line"),
        pytest.param(
            b'title,year\nA,1\n"B,2\nC,3\nD"x,4\nE,5\n',
            [(2, None), (3, "source-error"), (4, None), (5, None), (6, None)],
            id="later-stray-quote-closes-it",
        ),
        pytest.param(
            b'title,year\nA,1\n"B,2\nC,3\nD",4,5\nE,5\n',
            [(2, None), (3, "source-error"), (4, None), (5, "extra-cell"), (6, None)],
            id="later-quote-closes-it-with-wrong-width",
        ),
        pytest.param(
            b'title,year\r\nA,1\r\n"B,2\r\nC,3\r\n\r\nD,4\r\n',
            [(2, None), (3, "source-error"), (4, None), (6, None)],
            id="crlf-file-with-blank-line-after-it",
        ),
        pytest.param(
            b'title,year\nA,"1\nB,2\nC,3\n', [(2, "source-error"), (3, None), (4, None)], id="quote-in-second-field"
        ),
        pytest.param(
            b'title,year\n"A\nB",1,2\nC,2\n',
            [(2, "source-error"), (3, "extra-cell"), (4, None)],
            id="multiline-record-of-wrong-width-is-split-like-a-runaway-quote",
        ),
        pytest.param(
            b'title,year\n"A,1\n' + FIELD_LIMIT_RUN + b"Z,3\n",
            [(2, "source-error")] + [(line, None) for line in range(3, 40_004)],
            id="quote-runs-past-field-size-limit",
        ),
    ],
)
def test_unbalanced_quote_sets_aside_one_line_and_rereads_the_rest(
    tmp_path: Path, data: bytes, expected: list[tuple[int, str | None]]
) -> None:
    """A quote that never closes properly rejects only its own line; every later line is read with its line number."""
    source, records = read(write(tmp_path, data))
    assert [(r.line, r.problem.code if r.problem else None) for r in records] == expected
    assert all(r.line == r.end_line for r in records)
    assert source.lines_read == len(physical_lines(data))


def test_unbalanced_quote_record_keeps_its_raw_cells_and_explains(tmp_path: Path) -> None:
    """The set-aside line keeps its cells as written and says where the quote ran to and why."""
    _, records = read(write(tmp_path, b'title,year\nA,1\n"B,2\nC,3\nD,4\n'))
    bad = records[1]
    assert bad.cells == ['"B', "2"]
    assert bad.problem is not None
    assert "runs on to line 5" in bad.problem.message
    assert "not closed before the end of the file" in bad.problem.message


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(b'"bad"x,1', id="closing-quote-then-text-in-first-field"),
        pytest.param(b'A,"1"2', id="closing-quote-then-text-in-last-field"),
    ],
)
def test_closing_quote_followed_by_text_is_source_error(tmp_path: Path, row: bytes) -> None:
    """A closing quote followed by text is a source-error that explains quote doubling; the next row is read."""
    _, records = read(write(tmp_path, b"title,year\n" + row + b"\nC,2\n"))
    assert spans(records) == [(2, 2, "source-error"), (3, 3, None)]
    assert records[0].problem is not None
    assert 'must be doubled: ""' in records[0].problem.message


@pytest.mark.parametrize("quote", [b"", b'"'], ids=["unquoted-oversized-field", "quoted-oversized-field"])
def test_oversized_field_is_source_error_and_reading_continues(tmp_path: Path, quote: bytes) -> None:
    """A field longer than csv.field_size_limit() is a source-error naming the limit; the next row is read."""
    limit = csv.field_size_limit()
    big = quote + b"x" * (limit + 10) + quote
    _, records = read(write(tmp_path, b"title,year\n" + big + b",1\nB,2\n"))
    assert spans(records) == [(2, 2, "source-error"), (3, 3, None)]
    assert records[0].problem is not None
    assert f"longer than {limit} characters" in records[0].problem.message
    assert records[1].cells == ["B", "2"]


# --- unusable inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty-file"),
        pytest.param(b"  \n\r\n\t\n", id="whitespace-only-file"),
        pytest.param(b"\n\n\n", id="blank-lines-only"),
    ],
)
def test_file_without_header_is_input_error(tmp_path: Path, data: bytes) -> None:
    """An empty or whitespace-only file is an InputError saying there is no header."""
    with pytest.raises(InputError, match="is empty: there is no header line"):
        CsvInput(write(tmp_path, data))


@pytest.mark.parametrize(
    ("data", "options", "match"),
    [
        pytest.param(b'"title,year\nA,1\n', {}, "cannot read the header on line 1", id="unbalanced-quote-in-header"),
        pytest.param(
            b"\ntitl\xff,year\nA,1\n", {"encoding": "utf-8"}, r"header on line 2: bytes 0xFF", id="bad-byte-in-header"
        ),
    ],
)
def test_unreadable_header_is_input_error(tmp_path: Path, data: bytes, options: dict[str, str], match: str) -> None:
    """A header that cannot be read as a row is an InputError naming its line."""
    with pytest.raises(InputError, match=match):
        CsvInput(write(tmp_path, data), **options)


def missing_file(folder: Path) -> Path:
    return folder / "missing.csv"


def directory(folder: Path) -> Path:
    return folder


def unreadable_file(folder: Path) -> Path:
    path = write(folder, b"title,year\nA,1\n", "locked.csv")
    path.chmod(0)
    return path


@pytest.mark.parametrize("encoding", [None, "utf-8"], ids=["detected-encoding", "given-encoding"])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(missing_file, "no such file: ", id="missing-file"),
        pytest.param(directory, "is a directory, not a CSV file", id="directory"),
        pytest.param(
            unreadable_file,
            ": permission denied",
            id="unreadable-file",
            marks=pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read mode 000"),
        ),
    ],
)
def test_unusable_path_is_input_error(
    tmp_path: Path, make: Callable[[Path], Path], message: str, encoding: str | None
) -> None:
    """A missing file, a directory or an unreadable file is an InputError with a plain message naming the path."""
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        CsvInput(path, encoding=encoding)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(PermissionError(13, "Permission denied"), "permission denied", id="permission-denied"),
        pytest.param(OSError(5, "Input/output error"), "Input/output error", id="other-os-error"),
    ],
)
def test_os_error_on_open_is_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, message: str
) -> None:
    """Whatever the OS says when the file is opened (even as root) becomes an InputError naming the path."""
    path = write(tmp_path, b"title,year\nA,1\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputError, match=f"cannot read {re.escape(str(path))}: {message}"):
        CsvInput(path)


def test_failed_open_closes_the_file(tmp_path: Path) -> None:
    """When CsvInput refuses a file it has opened (no header), it closes it: no ResourceWarning."""
    path = write(tmp_path, b"\n\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(InputError):
            CsvInput(path)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_delimiter_only_line_before_header_is_blank(tmp_path: Path) -> None:
    """A delimiter-only line above the header is a blank line, like a delimiter-only line below it."""
    source, records = read(write(tmp_path, b";;\ntitle;year\nA;1\n"))
    assert source.header == ["title", "year"]
    assert source.header_line == 2
    assert source.blank_lines == 1
    assert spans(records) == [(3, 3, None)]


# --- progress: has_more, lines_read, bytes_read, stop_before -----------------------------------


def test_has_more_peeks_without_losing_a_line(tmp_path: Path) -> None:
    """has_more() is true while lines are left and false at the end; records after it lose nothing."""
    path = write(tmp_path, b'title,year\nA,1\n"B,2\nC,3\nD,4\n\n')
    with CsvInput(path) as source:
        assert source.has_more() is True
        taken = records(source)
        assert next(taken).line == 2
        assert source.has_more() is True
        assert spans([next(taken)]) == [(3, 3, "source-error")]
        assert source.has_more() is True  # lines 4 and 5 wait to be read again
        assert [r.line for r in taken] == [4, 5]
        assert source.has_more() is False


def test_has_more_is_false_for_a_header_only_file(tmp_path: Path) -> None:
    """A file holding only its header has nothing more to read."""
    with CsvInput(write(tmp_path, b"title,year\r\n")) as source:
        assert source.has_more() is False
        assert list(source.chunks()) == []


def test_lines_read_counts_physical_lines_without_read_ahead(tmp_path: Path) -> None:
    """lines_read is the number of the last physical line taken: no read-ahead, every line at the end."""
    data = b'title,year\n"A\nB",1\nC,2\n\n'
    with CsvInput(write(tmp_path, data)) as source:
        assert source.lines_read == 1
        taken = records(source)
        assert next(taken).end_line == 3
        assert source.lines_read == 3
        assert [r.line for r in taken] == [4]
        assert source.lines_read == len(physical_lines(data)) == 5
        assert source.bytes_read == source.size == len(data)


def test_has_more_leaves_lines_read_unchanged(tmp_path: Path) -> None:
    """has_more() is a query: lines_read is the same before and after it."""
    with CsvInput(write(tmp_path, b"title,year\nA,1\nB,2\n")) as source:
        assert next(records(source)).line == 2
        before = source.lines_read
        assert source.has_more() is True
        assert source.lines_read == before == 2


# --- accounting ---------------------------------------------------------------------------------

DIRTY = b"".join(
    [
        b"title;year;length\r\n",  # 1 header
        b"STRING;INT;INT\r\n",  # 2 type row
        b"Heat;1995;170\r\n",  # 3
        b"\r\n",  # 4 blank
        b";;\n",  # 5 blank (delimiters only)
        b'"Multi\r\nline";1990;90\r\n',  # 6-7 CRLF inside quotes
        b'"Open;1991;1\n',  # 8 unbalanced quote, closed by the stray quote on line 14
        "Amélie — Jeunet;1992;2\n".encode(),  # 9
        b"Short;1993\n",  # 10 missing-cell
        b"Long;1994;3;4\n",  # 11 extra-cell
        b"Nul\x00;1995;5\n",  # 12 NUL
        b"Bad\xff;1996;6\n",  # 13 invalid UTF-8
        b'"bad"x;1997;7\n',  # 14 closing quote then text
        b'"Blank\n\ninside";1998;8\n',  # 15-17 blank line inside quotes
        b"   \n",  # 18 blank (spaces)
        "Señor;2001;122\r".encode(),  # 19 lone CR
        b"Last;2002;9",  # 20 no trailing newline
    ]
)
DIRTY_SPANS: list[Span] = [
    (3, 3, None),
    (6, 7, None),
    (8, 8, "source-error"),
    (9, 9, None),
    (10, 10, "missing-cell"),
    (11, 11, "extra-cell"),
    (12, 12, "encoding-error"),
    (13, 13, "encoding-error"),
    (14, 14, "source-error"),
    (15, 17, None),
    (19, 19, None),
    (20, 20, None),
]


def test_every_physical_line_is_accounted_for_exactly_once(tmp_path: Path) -> None:
    """Header, type row, record spans and blank lines of a dirty file cover every physical line exactly once."""
    lines = physical_lines(DIRTY)
    assert len(lines) == 20
    source, records = read(write(tmp_path, DIRTY))
    assert source.dialect.encoding == "utf-8"
    assert spans(records) == DIRTY_SPANS

    covered = [source.header_line, source.type_row_line]
    for record in records:
        covered.extend(range(record.line, record.end_line + 1))
    assert len(covered) == len(set(covered)), "a line belongs to two records"
    uncovered = sorted(set(range(1, len(lines) + 1)) - set(covered))
    assert set(covered) <= set(range(1, len(lines) + 1))
    assert len(uncovered) == source.blank_lines == 3
    assert all(not lines[n - 1].replace(b";", b"").strip() for n in uncovered), "an uncounted line is not blank"
    assert 16 not in uncovered, "the blank line inside quotes belongs to its record"
    assert source.lines_read == len(lines)


def test_dirty_file_cells_are_kept_as_read(tmp_path: Path) -> None:
    """In the dirty file, good records decode exactly and bad ones keep their raw shape."""
    _, records = read(write(tmp_path, DIRTY))
    by_line = {r.line: r.cells for r in records}
    assert by_line[6] == ["Multi\r\nline", "1990", "90"]
    assert by_line[8] == ['"Open', "1991", "1"]
    assert by_line[9] == ["Amélie — Jeunet", "1992", "2"]
    assert by_line[10] == ["Short", "1993"]
    assert by_line[13] == ["Bad\udcff", "1996", "6"]
    assert by_line[15] == ["Blank\n\ninside", "1998", "8"]
    assert by_line[19] == ["Señor", "2001", "122"]
    assert by_line[20] == ["Last", "2002", "9"]


# --- batches and chunks: the read-ahead changes nothing -------------------------------------------

BATCH_INPUTS = {
    "dirty": DIRTY,
    "type-row-and-blank-lines": (FILM_HEADER + FILM_TYPES + FILM_ROW + "\r\n;;;;;;;;;\r\n" + FILM_ROW * 3).encode(),
    "quote-never-closed-at-the-end": b'title,year\nA,1\nB,2\nC,3\n"D,4\nE,5\n',
    "stray-bytes-in-a-row-of-many": b"title,year\n" + b"A,1\n" * 5 + b"B\xff,2\n" + b"C,3\n" * 5,
    "runs-around-odd-rows": b"title,year\n"
    + b"A,1\n" * 6
    + b"\n"
    + b"B,2\n" * 4
    + b"Short\n"
    + b"C,3\n" * 3
    + b'"Two\nlines",4\n'
    + b"D,5\n" * 2
    + b",6\n",
}

Step = tuple[int, int, str | None, list[str]]


class Walk(NamedTuple):
    """What a reader handed out, record by record, and what it counted."""

    records: list[Step]
    """(first line, last line, problem code or None, cells) of each record of each chunk."""
    blank_lines: int
    type_row_line: int | None
    lines_read: int
    """At the end."""
    after_chunks: list[tuple[int, int]]
    """For each chunk: the last line of its last record, and `lines_read` as the chunk is handed out."""


def walk(path: Path, *, peek: bool) -> Walk:
    """The records of `chunks()` taken apart, with `has_more()` asked before each chunk with `peek` (a query: it
    must leave `lines_read` as it is), and what the reader counted."""
    seen: list[Step] = []
    after: list[tuple[int, int]] = []
    with CsvInput(path) as source:
        chunks = source.chunks()
        while True:
            if peek:
                before = source.lines_read
                more = source.has_more()
                assert source.lines_read == before, "has_more() moved lines_read"
                if not more:
                    break
            chunk = next(chunks, None)
            if chunk is None:
                break
            after.append((chunk.ends[-1], source.lines_read))
            seen.extend((r.line, r.end_line, r.problem.code if r.problem else None, r.cells) for r in chunk.records())
        return Walk(seen, source.blank_lines, source.type_row_line, source.lines_read, after)


@pytest.mark.parametrize("peek", [False, True], ids=["chunks-only", "has-more-asked-before-each"])
@pytest.mark.parametrize("name", list(BATCH_INPUTS))
def test_batches_of_any_size_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, peek: bool
) -> None:
    """Whatever the batch size, and wherever an odd record falls in its batch, the records, their lines, the
    blank line count and `lines_read` at the end are those of a reader taking one record at a time that is
    never asked `has_more()`."""
    path = write(tmp_path, BATCH_INPUTS[name])
    monkeypatch.setattr("movymporter.reader._BATCH", 1)
    expected = walk(path, peek=False)
    assert expected.lines_read == len(physical_lines(BATCH_INPUTS[name]))
    for size in (1, 2, 3, 4, 5, 7, 1000):
        monkeypatch.setattr("movymporter.reader._BATCH", size)
        assert walk(path, peek=peek)[:4] == expected[:4], f"batches of {size}"
    if name == "dirty":
        assert [(line, end, code) for line, end, code, _ in expected.records] == DIRTY_SPANS


@pytest.mark.parametrize("peek", [False, True], ids=["chunks-only", "has-more-asked-before-each"])
@pytest.mark.parametrize("size", [1, 3, 1000], ids=lambda size: f"batches-of-{size}")
@pytest.mark.parametrize("name", list(BATCH_INPUTS))
def test_lines_read_after_each_chunk_is_the_end_of_its_last_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, size: int, peek: bool
) -> None:
    """As a chunk is handed out, `lines_read` is the last line of its last record: nothing read ahead shows,
    and the blank lines and type row before it are counted; at the end it is the file's last line."""
    path = write(tmp_path, BATCH_INPUTS[name])
    monkeypatch.setattr("movymporter.reader._BATCH", size)
    found = walk(path, peek=peek)
    assert found.after_chunks, "no chunk"
    assert [lines_read for _, lines_read in found.after_chunks] == [end for end, _ in found.after_chunks]
    assert found.lines_read == len(physical_lines(BATCH_INPUTS[name]))


@pytest.mark.parametrize("chunk", [1, 5, 16], ids=lambda chunk: f"chunks-of-{chunk}")
@pytest.mark.parametrize("name", list(BATCH_INPUTS))
def test_lines_longer_than_a_chunk_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int
) -> None:
    """Held apart and read the careful way, lines longer than a chunk give the records, lines, blank line count
    and `lines_read` (after each chunk and at the end) of a file whose lines all fit in one, whatever the batch
    size."""
    path = write(tmp_path, BATCH_INPUTS[name])
    expected = walk(path, peek=True)
    monkeypatch.setattr("movymporter.lines.CHUNK", chunk)
    for size in (1, 3, 1000):
        monkeypatch.setattr("movymporter.reader._BATCH", size)
        found = walk(path, peek=True)
        assert found[:4] == expected[:4], f"batches of {size}"
        assert all(end == lines_read for end, lines_read in found.after_chunks), f"batches of {size}"


# --- chunks: runs of plain records handed out whole -----------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 1000], ids=lambda size: f"batches-of-{size}")
@pytest.mark.parametrize("name", list(BATCH_INPUTS))
def test_a_chunk_of_several_records_is_a_run_of_plain_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, size: int
) -> None:
    """A chunk of more than one record holds rows of one line each, on consecutive lines, read without a
    problem, of the header's width and with text in the first cell; every other record comes alone."""
    path = write(tmp_path, BATCH_INPUTS[name])
    monkeypatch.setattr("movymporter.reader._BATCH", size)
    with CsvInput(path) as source:
        width = len(source.header)
        chunks = list(source.chunks())
    assert chunks, "no chunk"
    for chunk in chunks:
        assert len(chunk) == len(chunk.cells) == len(chunk.lines) == len(chunk.ends) > 0
        if len(chunk) > 1:
            assert not chunk.problems, chunk.lines
            run = list(range(chunk.lines[0], chunk.lines[0] + len(chunk)))
            assert list(chunk.lines) == list(chunk.ends) == run
            assert all(len(cells) == width and cells[0].strip() for cells in chunk.cells), chunk.lines


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"title,year\n" + b"A,1\n" * 3,
            [(None, 2, 2, 1), (None, 3, 4, 2)],
            id="the-first-record-alone-then-one-run",
        ),
        pytest.param(
            b"title,year\n" + b"A,1\n" * 3 + b"Short\n" + b"C,3\n" * 2,
            [(None, 2, 2, 1), (None, 3, 4, 2), ("missing-cell", 5, 5, 1), (None, 6, 7, 2)],
            id="a-wrong-width-row-splits-the-run",
        ),
        pytest.param(
            b"title,year\n" + b"A,1\n" + b",1\n" + b" ,2\n" + b",\n" + b"B,2\n",
            [(None, 2, 2, 1), (None, 3, 3, 1), (None, 4, 4, 1), (None, 6, 6, 1)],
            id="an-empty-first-cell-is-looked-at-alone-and-a-blank-row-counted",
        ),
        pytest.param(
            b"title,year\nSTRING,INT\n" + b"A,1\n" * 2,
            [(None, 3, 4, 2)],
            id="the-type-row-is-not-in-a-chunk",
        ),
        pytest.param(
            b"title,year\n" + b"A,1\n" + b'"Two\nlines",2\n' + b"B,3\n",
            [(None, 2, 2, 1), (None, 3, 4, 1), (None, 5, 5, 1)],
            id="a-multi-line-record-makes-its-batch-read-one-by-one",
        ),
    ],
)
def test_chunks_keep_plain_runs_whole(
    tmp_path: Path, data: bytes, expected: list[tuple[str | None, int, int, int]]
) -> None:
    """Rows of the header's width whose first cell has text come as one chunk per run; a row of another width,
    or without text in its first cell, comes on its own (or is counted, when blank), and so does the first
    record, which may be a type row. Each is (problem code of its first record, first line, last line, size)."""
    with CsvInput(write(tmp_path, data)) as source:
        shapes = [
            (chunk.problems[0].code if 0 in chunk.problems else None, chunk.lines[0], chunk.ends[-1], len(chunk))
            for chunk in source.chunks()
        ]
    assert shapes == expected


# --- stop_before: a caller that uses part of a chunk ------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "lines_read"),
    [(None, 7), (7, 6), (4, 3), (3, 2)],
    ids=["all-used", "the-last-row-unused", "all-but-the-first-unused", "none-used"],
)
def test_a_stop_inside_a_run_counts_the_rows_from_it_as_not_read(
    tmp_path: Path, stop: int | None, lines_read: int
) -> None:
    """A caller that stops before a row of the chunk just handed out: `lines_read` ends on the line before it,
    and `has_more` sees the rows left, without moving `lines_read`."""
    data = b"title,year\nFirst,1\n" + b"".join(b"Film %d,2000\n" % n for n in range(5))
    with CsvInput(write(tmp_path, data)) as source:
        chunks = source.chunks()
        assert list(next(chunks).lines) == [2]  # the first record comes alone (it may be a type row)
        run = next(chunks)
        assert list(run.lines) == list(run.ends) == [3, 4, 5, 6, 7]
        if stop is not None:
            source.stop_before(stop)
        assert source.lines_read == lines_read
        assert source.has_more() is (stop is not None)
        assert source.lines_read == lines_read


@pytest.mark.parametrize("size", [1, 3, 1000], ids=lambda size: f"batches-of-{size}")
@pytest.mark.parametrize("name", list(BATCH_INPUTS))
def test_a_stop_before_any_record_leaves_lines_read_on_the_line_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, size: int
) -> None:
    """Whichever chunk was handed out last and whichever of its records a caller stops before, `lines_read`
    becomes the line before that record and `has_more()` is true, and asking it leaves `lines_read` there."""
    path = write(tmp_path, BATCH_INPUTS[name])
    monkeypatch.setattr("movymporter.reader._BATCH", size)
    with CsvInput(path) as source:
        starts = [list(chunk.lines) for chunk in source.chunks()]
    for index, lines in enumerate(starts):
        for line in lines:
            with CsvInput(path) as source:
                chunk = next(islice(source.chunks(), index, None))
                assert list(chunk.lines) == lines
                source.stop_before(line)
                found = (source.lines_read, source.has_more(), source.lines_read)
                assert found == (line - 1, True, line - 1), f"stopped before line {line} of chunk {index}"


# --- lines of any length: read in chunks, a line too long cut ---------------------------------------------------

LONG = b"x" * (3 * LINE_LIMIT) + b",2000"
"""A line of 3 Mi characters: cut."""


@pytest.mark.parametrize(
    ("encoding", "newline"),
    [
        pytest.param("utf-8", b"\n", id="utf8-lf"),
        pytest.param("utf-8", b"\r\n", id="utf8-crlf"),
        pytest.param("cp1252", b"\r", id="cp1252-lone-cr"),
        pytest.param("utf-16", b"\r\n", id="utf16-crlf"),
    ],
)
def test_a_line_too_long_is_one_source_error_row_of_its_first_characters(
    tmp_path: Path, encoding: str, newline: bytes
) -> None:
    """A line of more than LINE_LIMIT characters is one source-error row on its own line number, whose cells are
    its first KEPT characters split on the delimiter, with a reason that says so; the lines after it are read
    as before, blank lines counted."""
    text = b"\n".join([b"title,year", b"A,1", b"x,y," + LONG, b"B,2", b"", b"C,3", b""]).decode()
    data = text.replace("\n", newline.decode()).encode(encoding)
    source, records = read(write(tmp_path, data), encoding=encoding)
    assert spans(records) == [(2, 2, None), (3, 3, "source-error"), (4, 4, None), (6, 6, None)]
    cut = records[1]
    assert cut.problem == ReadProblem("source-error", f"the line is longer than {LINE_LIMIT} characters; {CUT_NOTE}")
    assert cut.cells == ["x", "y", "x" * (KEPT - 4)]
    assert [r.cells for r in records if r.problem is None] == [["A", "1"], ["B", "2"], ["C", "3"]]
    assert (source.blank_lines, source.lines_read) == (1, 6)


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit-read-whole", "one-more-cut"])
def test_the_line_limit_is_exact(tmp_path: Path, extra: int) -> None:
    """A line of LINE_LIMIT characters is read whole (here: a field too long for csv); one more character and
    it is cut, wherever the chunks of the file end."""
    line = b"x" * (LINE_LIMIT - 2 + extra) + b",1"
    _, records = read(write(tmp_path, b"title,year\n" + line + b"\r\nB,2\n"))
    assert spans(records) == [(2, 2, "source-error"), (3, 3, None)]
    assert records[0].problem is not None
    assert ("the line is longer than" in records[0].problem.message) is bool(extra)
    assert records[0].problem.message.endswith(CUT_NOTE)


def test_the_last_line_too_long_without_line_end(tmp_path: Path) -> None:
    """A line cut at the end of a file that has no last line end is the last row; nothing follows it."""
    source, records = read(write(tmp_path, b"title,year\nA,1\n" + LONG))
    assert spans(records) == [(2, 2, None), (3, 3, "source-error")]
    assert source.lines_read == 3


def test_a_line_too_long_inside_a_quoted_field_ends_like_a_runaway_quote(tmp_path: Path) -> None:
    """A quoted field running over a line too long: the line that opened it is set aside, the lines after it
    read again, the long one as a row cut short."""
    data = b'title,year\nA,1\n"Opened\n' + LONG + b'\nclosed",2\nB,3\n'
    source, records = read(write(tmp_path, data))
    assert spans(records) == [(2, 2, None), (3, 3, "source-error"), (4, 4, "source-error"), (5, 5, None), (6, 6, None)]
    opened, cut = records[1], records[2]
    assert opened.cells == ['"Opened']
    assert opened.problem is not None
    assert "runs on to line 4 (line 4 is longer than" in opened.problem.message
    assert cut.problem is not None
    assert cut.problem.message.endswith(CUT_NOTE)
    assert records[-1].cells == ["B", "3"]
    assert source.lines_read == 6


def test_a_set_aside_line_longer_than_a_field_keeps_its_first_characters(tmp_path: Path) -> None:
    """A line set aside for a field over csv's size limit keeps only its first KEPT characters: every cell of
    rejected.csv can then be read back as a field."""
    limit = csv.field_size_limit()
    _, records = read(write(tmp_path, b"title,year\n" + b"x" * (limit + 10) + b",1\nB,2\n"))
    assert records[0].cells == ["x" * KEPT]
    assert records[0].problem == ReadProblem("source-error", f"a field is longer than {limit} characters; {CUT_NOTE}")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"title," + LONG + b"\nA,1\n", "header on line 1: the line is longer than", id="header-line"),
        pytest.param(b"\n" + b" " * (2 * LINE_LIMIT) + b"\ntitle,year\n", "header on line 2: the line", id="spaces"),
    ],
)
def test_a_header_line_too_long_is_input_error(tmp_path: Path, data: bytes, match: str) -> None:
    """A first non-blank line of more than LINE_LIMIT characters cannot be the header: an InputError says why."""
    with pytest.raises(InputError, match=match) as caught:
        CsvInput(write(tmp_path, data))
    assert CUT_NOTE not in str(caught.value)


def test_batches_of_any_size_read_a_cut_line_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wherever a cut line falls in its batch, its record and the records around it are those of a reader
    taking one record at a time, and `lines_read` after each chunk is the end of its last record."""
    path = write(tmp_path, b"title,year\n" + b"A,1\n" * 5 + LONG + b"\n" + b"C,3\n" * 5)
    monkeypatch.setattr("movymporter.reader._BATCH", 1)
    expected = walk(path, peek=True)
    for size in (2, 3, 7, 1000):
        monkeypatch.setattr("movymporter.reader._BATCH", size)
        found = walk(path, peek=True)
        assert found[:4] == expected[:4], f"batches of {size}"
        assert all(end == lines_read for end, lines_read in found.after_chunks), f"batches of {size}"
    assert [code for _, _, code, _ in expected.records] == [None] * 5 + ["source-error"] + [None] * 5
    assert expected.lines_read == 12


# --- a rejected.csv read again ----------------------------------------------------------------------------------

REPORT_HEADER = b"line;stage;reason;title;year\r\n"


def report(*rows: bytes) -> bytes:
    return REPORT_HEADER + b"".join(row + b"\r\n" for row in rows)


def data_cells(row: bytes) -> list[str]:
    """The cells of a report row after its line, stage and reason, as csv reads them."""
    return next(csv.reader([row.decode(errors="surrogateescape")], delimiter=";"))[3:]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        pytest.param(
            b'3;read;"source-error: a quote opened on this line runs on";"""Unclosed";2000',
            "source-error: a quote opened on this line runs on",
            id="set-aside-line-still-unbalanced",
        ),
        pytest.param(
            b'3;read;"source-error: a closing quote is followed by other characters";"""bad""x";2000',
            "source-error: a closing quote is followed by other characters",
            id="closing-quote-then-text",
        ),
        pytest.param(
            b"3;read;encoding-error: bytes 0xFF are not valid utf-8;Bad\xff;2000",
            "encoding-error: bytes 0xFF are not valid utf-8",
            id="undecodable-byte-still-there",
        ),
        pytest.param(
            "3;read;encoding-error: bytes 0xFF are not valid utf-16;Bad\ufffd;2000".encode(),
            "encoding-error: bytes 0xFF are not valid utf-16",
            id="replacement-character-of-a-utf16-input",
        ),
        pytest.param(
            f'3;read;"source-error: the line is longer than 1 characters; {CUT_NOTE}";Cut;2000'.encode(),
            f"source-error: the line is longer than 1 characters; {CUT_NOTE}",
            id="cut-row-even-if-it-reads",
        ),
        pytest.param(
            b"3;read;missing-cell: the row has 1 field, the header has 2;Short",
            "missing-cell: the row has 1 field, the header has 2",
            id="still-too-short",
        ),
        pytest.param(
            b"3;read;missing-cell: the row has 1 field, the header has 2;Short;2000;more",
            "extra-cell: the row has 3 fields, the header has 2",
            id="edited-to-another-width-counted-without-report-columns",
        ),
        pytest.param(
            b"3;validate;type-error: year must be a whole number;Wide;2000;more",
            "extra-cell: the row has 3 fields, the header has 2",
            id="other-stage-of-the-wrong-width",
        ),
    ],
)
def test_a_report_row_is_refused_again_while_it_has_its_problem(tmp_path: Path, row: bytes, problem: str) -> None:
    """A row reported at stage read keeps its reason while it still has the problem it was reported for (the
    raw text of a set-aside line read as one line, undecodable bytes, a cut); any row of the wrong width gets
    the counts of the input, without the report's three columns."""
    source, records = read(write(tmp_path, report(row)), encoding="utf-8")
    assert source.is_report
    assert spans(records) == [(2, 2, problem.partition(":")[0])]
    assert str(records[0].problem) == problem
    assert records[0].cells == data_cells(row)


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(b'3;read;"source-error: a quote opened on this line runs on";Unclosed;2000', id="quote-removed"),
        pytest.param(b"3;read;encoding-error: bytes 0xFF are not valid utf-8;Bad;2000", id="byte-removed"),
        pytest.param(b"3;read;missing-cell: the row has 1 field, the header has 2;Short;2000", id="cell-added"),
        pytest.param(b'3;validate;constraint-error: year must be from 1888;"Two; Cells";1800', id="validate-row"),
        pytest.param(b"3;delivery;no answer before the run stopped;Film;2000", id="delivery-row"),
    ],
)
def test_an_edited_report_row_goes_on_to_validation(tmp_path: Path, row: bytes) -> None:
    """A row edited out of the problem it was reported for, and any row of another stage, is handed out without
    a problem, as its own cells (without the report's three): validation judges it."""
    _, records = read(write(tmp_path, report(row)), encoding="utf-8")
    assert spans(records) == [(2, 2, None)]
    assert records[0].cells == data_cells(row)
    assert len(records[0].cells) == 2


@pytest.mark.parametrize(
    ("header", "names"),
    [
        pytest.param(["Title", "*Year"], ["title", "year"], id="plain-names"),
        pytest.param(["=Title", "@Year", "-x"], ["=title", "@year", "-x"], id="names-a-spreadsheet-would-run"),
        pytest.param(["'=Title", "year"], ["'=title", "year"], id="a-name-with-an-apostrophe-of-its-own"),
    ],
)
def test_a_report_header_is_the_input_header_without_the_report_columns(
    tmp_path: Path, header: list[str], names: list[str]
) -> None:
    """A rejected.csv's header and names are those of the input it reports on: without line, stage and reason,
    and with the spreadsheet guards the report added taken off."""
    text = ";".join(["line", "stage", "reason", *map(neutralise, header)]) + "\r\n"
    source, _ = read(write(tmp_path, text.encode()))
    assert source.is_report
    assert source.header == header
    assert source.names == names


@pytest.mark.parametrize(
    "cells",
    [
        pytest.param(["Heat", "1995"], id="plain-cells"),
        pytest.param(["=SUM(A1)", "+1995"], id="formulas-guarded-by-the-report"),
        pytest.param(["@home", "-5"], id="at-sign-and-minus"),
        pytest.param(["'=quoted", "''+twice"], id="apostrophes-of-their-own-kept"),
        pytest.param(["'plain", "2000"], id="an-apostrophe-before-text-is-data"),
    ],
)
def test_report_rows_read_as_the_cells_of_the_input(tmp_path: Path, cells: list[str]) -> None:
    """Each row of a rejected.csv comes as the input's cells it holds: without line, stage and reason, and with
    the spreadsheet guards the report added taken off; lines are the report's own."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
    writer.writerow(["line", "stage", "reason", "title", "year"])
    writer.writerow([7, "validate", "type-error: year must be a whole number", *map(neutralise, cells)])
    writer.writerow([9, "delivery", "no answer before the run stopped", *map(neutralise, cells)])
    source, records = read(write(tmp_path, handle.getvalue().encode()))
    assert source.is_report
    assert source.header == ["title", "year"]
    assert spans(records) == [(2, 2, None), (3, 3, None)]
    assert [r.cells for r in records] == [cells, cells]
