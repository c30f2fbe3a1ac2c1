"""Hostile input: generated CSV bytes never crash the importer, and every line of them is accounted for.

The property tests run in dry-run mode (no sink) on files built from realistic
headers and rows salted with what real exports contain: stray and doubled
quotes, embedded delimiters and line breaks of every kind, NUL and other
control characters, U+FFFD, text in four encodings, bytes invalid in the
encoding, fields at the csv module's size limit, and files cut short. Under the
ci Hypothesis profile (`make test`) they are derandomized, so CI runs the same
examples every time; the dev profile (`make test-fast`) runs a tenth of them.

The whole-file cases go through the command line in-process: input that
cannot be a CSV file is one clear line on stderr and exit status 2.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import logging
import os
import re
import signal
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from movymporter import pipeline
from movymporter.cli import main
from movymporter.errors import InputError
from movymporter.reader import CsvInput
from movymporter.report import DUPLICATES, REJECTED, SUMMARY
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import assert_accounted, examples

FIELD_LIMIT = csv.field_size_limit()
DELIMITERS = (",", ";", "\t", "|")
NEWLINES = ("\n", "\r\n", "\r")
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "utf-16")

FUZZ = settings(
    max_examples=examples(400),
    # make_settings is a factory: each example passes its own report and state folders.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- what the generated files are made of --------------------------------------------------------

HEADERS = (
    ("title", "year"),
    ("year", "title"),
    ("year", "length", "title", "subject", "actor", "actress", "director", "popularity", "awards", "image"),
    ("title", "year", "popularity", "awards", "image"),
    ("title", "year", "notes"),
    ("title", "year", "title"),  # a column twice: the run must stop with a clear InputError
    ("name", "year"),  # no title column: likewise
)
TYPE_NAMES = {
    "year": "INT",
    "length": "INT",
    "popularity": "FLOAT",
    "awards": "BOOL",
    "subject": "CAT",
}
NAME_STYLES: tuple[Callable[[str], str], ...] = (
    str,
    str.upper,
    str.capitalize,
    lambda name: f" {name} ",
    lambda name: f"*{name.capitalize()}",
    lambda name: f" * {name}",
)
GOOD_VALUES = {
    "year": ("1990", "2001", " 1888 ", "+1999"),
    "length": ("", "102", "1.5", " 90 "),
    "title": ("Casablanca", "Amélie", "Ça, alors; oui | non\tbien", 'The "Best"', "Two\nlines", "  Spaces  "),
    "subject": ("", "Drama", "Comédie"),
    "actor": ("", "Bogart, Humphrey"),
    "actress": ("", "Bergman, Ingrid"),
    "director": ("", "Almodóvar, Pedro"),
    "popularity": ("", "0", "100", "55.5"),
    "awards": ("", "Yes", "no", "YES"),
    "image": ("", "a.png", "cover.jpeg"),
    "notes": ("", "anything"),
    "name": ("", "Casablanca"),
}
HOSTILE_VALUES = (
    # values the contract refuses
    "1990.0", "abc", "-5", "0", "nan", "inf", "1e400", "1,5", "101", "1887", "99999999999999999999", "maybe",
    "a.PNG", "image", "", " ",
    # quoting gone wrong (inserted raw, these break the record's shape)
    '"', '""', '"abc', 'abc"', '"a"b', '"a""b"', '"multi\nline"', '"open\r\nnext',
    # embedded delimiters and line breaks
    ",", ";", "\t", "|", "a,b;c|d\te", "\n", "\r\n", "\r", "x\ry",
    # characters text must not contain, or that trip up decoders and spreadsheets
    "\x00", "a\x00b", "\x01bad", "\x1b[31m", "\x7f", "\x85", "\x9f", "\ufffd", "caf\ufffd", "\ufeff", "\u2028",
    "=1+1", "+33 1", "-x", "@sum", "'=x",
    # text that is fine
    "é", "日本語", "🎬", "Ünïcödé ñ",
)  # fmt: skip
BAD_BYTES = {
    "utf-8": (b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"),
    "utf-8-sig": (b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80"),
    "cp1252": (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d"),
    "utf-16": (b"\x00\xd8", b"\x00\xdc", b"\x3d\xd8", b"A", b"\x80"),
}
# Damaged UTF-16 (an odd byte, a lone surrogate, cut inside a character) is generated too: its
# undecodable bytes must become encoding errors of their rows, not a crash.
DAMAGE_UTF16 = True
# Around csv.field_size_limit(): rare, because each one is a large file.
HUGE_SIZES = (FIELD_LIMIT - 1, FIELD_LIMIT, FIELD_LIMIT + 1, FIELD_LIMIT * 3 // 2)


def quoted(cell: str) -> str:
    """The cell as a CSV writer quotes it: in double quotes, inner quotes doubled."""
    return '"' + cell.replace('"', '""') + '"'


@st.composite
def cells_line(draw: st.DrawFn, columns: tuple[str, ...], delimiter: str) -> str:
    """One row's text without its line ending: good, bad and hostile cells, quoted properly or inserted raw."""
    width = len(columns) + draw(st.sampled_from((0, 0, 0, 0, -1, 1)))
    texts = []
    for index in range(max(width, 0)):
        column = columns[index] if index < len(columns) else "notes"
        value = draw(
            st.one_of(
                st.sampled_from(GOOD_VALUES[column]),
                st.sampled_from(HOSTILE_VALUES),
                st.text(max_size=6),
            )
        )
        texts.append(quoted(value) if draw(st.booleans()) else value)
    return delimiter.join(texts)


@st.composite
def good_line(draw: st.DrawFn, columns: tuple[str, ...], delimiter: str) -> str:
    """A row the contract accepts, each cell quoted whenever it needs to be."""
    texts = []
    for column in columns:
        value = draw(st.sampled_from(GOOD_VALUES[column]))
        needs_quotes = any(char in value for char in f'"\r\n{delimiter}')
        texts.append(quoted(value) if needs_quotes or draw(st.booleans()) else value)
    return delimiter.join(texts)


@st.composite
def hostile_csv(draw: st.DrawFn) -> bytes:
    """A realistic-but-hostile CSV file as bytes: header, optional type row, rows, encoding, damage."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    columns = draw(st.sampled_from(HEADERS[:-2] * 4 + HEADERS[-2:]))
    newline = draw(st.sampled_from(NEWLINES))
    names = [draw(st.sampled_from(NAME_STYLES))(column) for column in columns]
    if draw(st.booleans()):
        names = [quoted(name) for name in names]
    lines = draw(st.lists(st.sampled_from(("", "  ", delimiter * 3)), max_size=2))
    lines.append(delimiter.join(names) + draw(st.sampled_from(("",) * 5 + (delimiter,))))
    if draw(st.booleans()):
        lines.append(delimiter.join(TYPE_NAMES.get(column, "STRING") for column in columns))
    rows = draw(
        st.lists(
            st.one_of(
                cells_line(columns, delimiter),
                good_line(columns, delimiter),
                st.sampled_from(("", " ", "\t", '""', delimiter * (len(columns) - 1), delimiter * 5)),
            ),
            max_size=12,
        )
    )
    for index in draw(st.lists(st.integers(0, 11), max_size=3)):
        if index < len(rows):
            rows.append(rows[index])  # an exact duplicate further down
    huge = draw(st.sampled_from((None,) * 24 + HUGE_SIZES))
    if huge is not None:
        cell = draw(st.sampled_from(("x", "é", "\n"))) * huge
        cell = draw(st.sampled_from((cell, quoted(cell), '"' + cell)))  # raw, quoted, or a quote never closed
        cells = [GOOD_VALUES[column][0] for column in columns]
        cells[draw(st.integers(0, len(cells) - 1))] = cell
        rows.insert(draw(st.integers(0, len(rows))), delimiter.join(cells))
    lines += rows
    endings = [draw(st.sampled_from((newline,) * 4 + NEWLINES)) for _ in lines]
    text = "".join(line + ending for line, ending in zip(lines, endings, strict=True))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no line ending after the last line
    encoding = draw(st.sampled_from(ENCODINGS))
    data = text.encode(encoding, errors="replace")
    if encoding == "utf-16" and not DAMAGE_UTF16:
        return data
    intact = data
    damage = st.sampled_from(BAD_BYTES[encoding]) | st.binary(min_size=1, max_size=3)
    for position, junk in sorted(draw(st.lists(st.tuples(st.integers(0, len(data)), damage), max_size=3)))[::-1]:
        data = data[:position] + junk + data[position:]
    if draw(st.sampled_from((False, False, False, True))):
        data = data[: draw(st.integers(0, len(data)))]  # a file cut short
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) and not DAMAGE_UTF16:
        return intact  # damage that made a UTF-16 byte-order mark: the same bug
    return data


@st.composite
def binary_after_header(draw: st.DrawFn) -> bytes:
    """A valid header line, then arbitrary bytes, some of them line breaks, delimiters, quotes and NUL."""
    header = draw(
        st.sampled_from(
            (b"title,year\n", b"Year;Length;Title\r\n", b"title\tyear\tawards\n", b"\xef\xbb\xbftitle|year\n")
        )
    )
    pieces = st.one_of(
        st.binary(min_size=1, max_size=12),
        st.sampled_from(
            (b"\n", b"\r\n", b"\r", b",", b";", b"\t", b"|", b'"', b"\x00", b"2000", b"Film", b"\xe9", b"\xc3\xa9")
        ),
    )
    return header + b"".join(draw(st.lists(pieces, max_size=40)))


# --- running the importer and checking what it reports -------------------------------------------


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """main() configures the root logger and installs signal handlers; undo both for the tests that follow."""
    root = logging.getLogger()
    level = root.level
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)  # logging.basicConfig's, bound to a capture stream that is now closed
    root.setLevel(level)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def any_field_size() -> Iterator[None]:
    """Let this test's own csv readers take the over-long fields the reports keep (the limit is global)."""
    limit = csv.field_size_limit(1 << 30)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def physical_lines(data: bytes, encoding: str) -> int:
    """Lines of the file as universal newlines split them (CRLF, LF, lone CR), decoded as the importer did."""
    # "replace", not "surrogateescape": it decodes any damage (surrogateescape refuses bytes below 0x80 in UTF-16).
    lines = re.split(r"\r\n|\r|\n", data.decode(encoding, errors="replace"))
    if lines[-1] == "":
        lines.pop()  # the file ends with a line terminator
    return len(lines)


def report_encoding(encoding: str) -> str:
    """How to read a report written in `encoding` (a summary's report_encoding): UTF-8 ones carry a byte-order
    mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


def read_report(path: Path, *, delimiter: str, encoding: str) -> list[list[str]]:
    """A report's rows; only line numbers, stages and reasons are read from them, so any damage is replaced."""
    with any_field_size(), path.open(encoding=report_encoding(encoding), errors="replace", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter, strict=True))


def records_with_start_lines(path: Path, *, delimiter: str, encoding: str) -> list[tuple[int, list[str]]]:
    """Each record of a well-formed CSV file (a report) with the physical line on which it starts."""
    found: list[tuple[int, list[str]]] = []
    number = 0

    def numbered(handle: Iterator[str]) -> Iterator[str]:
        nonlocal number
        for text in handle:
            number += 1
            yield text

    with (
        any_field_size(),
        path.open(encoding=report_encoding(encoding), errors="surrogateescape", newline="") as handle,
    ):
        reader = csv.reader(numbered(handle), delimiter=delimiter, strict=True)
        while True:
            start = number + 1
            cells = next(reader, None)
            if cells is None:
                return found
            found.append((start, cells))


def note(label: str) -> None:
    """Count `label` in hypothesis' statistics (pytest --hypothesis-show-statistics) when under @given."""
    if currently_in_test_context():
        event(label)


def dry_run(
    make_settings: Callable[..., Settings], csv_in: Path, report_dir: Path, **options: str
) -> pipeline.RunResult | None:
    """Run the importer without a sink; None when it refused the file with a clear one-line InputError.

    Any other exception fails the test: that is what a user would see as a traceback.
    """
    settings = make_settings(
        csv_in=csv_in, dry_run=True, report_dir=report_dir, state_dir=report_dir / "state", **options
    )
    try:
        return pipeline.run(settings)
    except InputError as error:
        message = str(error)
        note("input error: " + re.sub(r"/\S*|\d+|'.*|\(.*", "", message)[:60].strip())
        assert message, "an input error says what is wrong"
        assert "\n" not in message, "an input error is one line"
        assert not (report_dir / SUMMARY).exists(), "a refused file leaves no summary behind"
        return None


def problem_codes(reason: str) -> list[str]:
    """The codes in a rejected.csv reason: 'type-error: ...; constraint-error: ...' -> both codes."""
    return re.findall(r"(?:^|; )([a-z]+-(?:error|cell)): ", reason)


def check_accounting(data: bytes, path: Path, result: pipeline.RunResult, report_dir: Path) -> None:
    """Every row and every physical line of the input is accounted for, once, in the summary and the reports."""
    summary = result.summary
    assert_accounted(summary)
    assert summary["valid"] + summary["invalid"] + summary["duplicates"] == summary["rows"], summary
    assert result.exit_status == (ExitStatus.ROWS_NOT_DELIVERED if summary["invalid"] else ExitStatus.OK)
    assert json.loads((report_dir / SUMMARY).read_text(encoding="ascii")) == summary

    encoding, delimiter, lines = summary["encoding"], summary["delimiter"], summary["lines"]
    assert lines == physical_lines(data, encoding), "the run read every line of the file"
    first_data_line = summary["header_line"] + 1

    written_in = summary["report_encoding"]
    rejected = read_report(report_dir / REJECTED, delimiter=delimiter, encoding=written_in)
    duplicates = read_report(report_dir / DUPLICATES, delimiter=delimiter, encoding=written_in)
    assert rejected[0][:3] == ["line", "stage", "reason"]
    rejected_lines = [int(row[0]) for row in rejected[1:]]
    assert len(rejected_lines) == summary["invalid"]
    assert summary["rows"] == len(rejected_lines) + summary["valid"] + summary["duplicates"]
    assert len(set(rejected_lines)) == len(rejected_lines), "a line is rejected twice"
    assert all(first_data_line <= line <= lines for line in rejected_lines), (rejected_lines, lines)
    assert summary["type_row_line"] not in rejected_lines
    for row in rejected[1:]:
        assert row[1] in ("read", "validate"), row[:3]
        assert problem_codes(row[2]), f"no problem code in {row[2]!r}"
        for code in problem_codes(row[2]):
            note(f"{row[1]}: {code}")

    assert duplicates[0] == ["line", "duplicate_of"]
    pairs = [(int(line), int(first)) for line, first in duplicates[1:]]
    assert len(pairs) == summary["duplicates"]
    assert all(first_data_line <= first < line <= lines for line, first in pairs), pairs
    repeated = {line for line, _ in pairs}
    assert len(repeated) == len(pairs), "a line is listed twice as a duplicate"
    assert not repeated & set(rejected_lines), "a line is both rejected and a duplicate"
    assert not {first for _, first in pairs} & set(rejected_lines), "a duplicate repeats a rejected row"

    # The same file read directly: header, type row, records and blank lines cover each line once.
    with CsvInput(path) as source:
        header_end = source.lines_read
        records = [record for chunk in source.chunks() for record in chunk.records()]
    covered = [*range(source.header_line, header_end + 1), *filter(None, [source.type_row_line])]
    for record in records:
        covered.extend(range(record.line, record.end_line + 1))
    assert len(covered) == len(set(covered)), "a line belongs to two records"
    assert set(covered) <= set(range(1, lines + 1))
    assert source.blank_lines + len(covered) == lines == source.lines_read
    assert len(records) == summary["rows"]
    assert summary["blank"] == source.blank_lines

    note(f"read as {encoding}")
    if summary["duplicates"]:
        note("duplicates")
    if summary["type_row_line"]:
        note("type row")
    if any(record.end_line > record.line for record in records):
        note("a record over several lines")
    if len(data) > FIELD_LIMIT:
        note("a field at the size limit")


def import_bytes(data: bytes, make_settings: Callable[..., Settings]) -> None:
    """Write `data` to a fresh folder, import it in a dry run, and check the accounting of the result."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.csv"
        path.write_bytes(data)
        result = dry_run(make_settings, path, Path(folder) / "reports")
        if result is not None:
            check_accounting(data, path, result, Path(folder) / "reports")


# --- properties ----------------------------------------------------------------------------------


@FUZZ
@given(data=hostile_csv())
@example(data=b'title;year\r\nINT;INT\r\n"Multi\r\nline";1990\r\n"open;1991\r\nB;1992\r\n;\r\n"Multi\r\nline";1990')
@example(data=b"title|year\rA|2000\r\rA|2000\r|\r")
@example(data="*Title\t Year \r\nCafé\t2000\r\nCafé\t2000\r\nNaïve\t1887\r\n".encode("cp1252"))
@example(data=b'title,year\n"' + b"x" * FIELD_LIMIT + b'",2000\nA,2000\n')
@example(data=b'title,year\n"' + b"x" * (FIELD_LIMIT + 1) + b'",2000\nA,2000\n')
@example(data=b'title,year\n"' + b"\n" * FIELD_LIMIT + b"A,2000\n")
@example(data=b"title,year\nA,2000\nB\x00,2001\n\xff,2002\nC,20")
def test_hostile_csv_never_crashes_and_every_line_is_accounted_for(
    data: bytes, make_settings: Callable[..., Settings]
) -> None:
    """Whatever the bytes, a dry run ends in a clear InputError or in reports that account for every line."""
    import_bytes(data, make_settings)


@settings(FUZZ, max_examples=examples(300))
@given(data=binary_after_header())
def test_binary_after_a_header_never_crashes(data: bytes, make_settings: Callable[..., Settings]) -> None:
    """Arbitrary bytes after a valid header line are rejected row by row, never with a traceback."""
    import_bytes(data, make_settings)


@settings(FUZZ, max_examples=examples(300))
@given(data=hostile_csv())
def test_rows_refused_by_validation_are_refused_again_when_rejected_csv_is_reimported(
    data: bytes, make_settings: Callable[..., Settings]
) -> None:
    """rejected.csv fed back unchanged gives each row refused by validation the same cells and the same reason."""
    with tempfile.TemporaryDirectory() as folder:
        path, first_dir, second_dir = Path(folder) / "input.csv", Path(folder) / "first", Path(folder) / "second"
        path.write_bytes(data)
        first = dry_run(make_settings, path, first_dir)
        if first is None:
            return
        check_accounting(data, path, first, first_dir)
        delimiter = first.summary["delimiter"]
        report = records_with_start_lines(
            first_dir / REJECTED, delimiter=delimiter, encoding=first.summary["report_encoding"]
        )
        refused = [(start, cells) for start, cells in report[1:] if cells[1] == "validate"]

        second = dry_run(make_settings, first_dir / REJECTED, second_dir)

        assert second is not None, "a rejected.csv can always be imported again"
        assert_accounted(second.summary)
        assert second.summary["delimiter"] == delimiter
        again = records_with_start_lines(
            second_dir / REJECTED, delimiter=delimiter, encoding=second.summary["report_encoding"]
        )
        assert again[0] == report[0], "the report of a report has the same columns"
        by_line = {int(cells[0]): cells[1:] for _, cells in again[1:]}
        for start, cells in refused:
            assert by_line.get(start) == cells[1:], f"line {start} of the first rejected.csv"
        if refused:
            note("rows refused by validation re-imported")


# --- bugs found by the properties, kept as the smallest inputs that show them -------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("title,year\nA,2000\n".encode("utf-16")[:-1], id="utf16-cut-one-byte-short"),
        pytest.param("title,year\n".encode("utf-16") + b"A", id="utf16-odd-trailing-byte"),
        pytest.param(
            "title,year\n".encode("utf-16") + b"\x00\xd8" + "A,2000\n".encode("utf-16-le"), id="utf16-lone-surrogate"
        ),
        pytest.param(b"\xff\xfetitle,year\n", id="cp1252-file-starting-with-y-thorn"),
    ],
)
def test_damaged_utf16_is_reported_not_a_crash(data: bytes, make_settings: Callable[..., Settings]) -> None:
    """A UTF-16 file with bytes that are not UTF-16 gets its bad line rejected, like UTF-8 and cp1252 files do."""
    import_bytes(data, make_settings)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_given_encoding_that_does_not_fit_is_not_a_crash(
    encoding: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A UTF-8 file read with a wrong --encoding ends in a clear InputError or rejected rows, not a traceback."""
    path = tmp_path / "input.csv"
    path.write_bytes(b"title,year\nA,2000\n")

    dry_run(make_settings, path, tmp_path / "reports", encoding=encoding)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("title,year\n".encode("utf-16") + b"\x80", id="utf16-odd-trailing-high-byte"),
        pytest.param(
            "title,year\n".encode("utf-16") + b"\x80\xdc" + "A,2000\n".encode("utf-16-le"),
            id="utf16-lone-low-surrogate",
        ),
    ],
)
def test_undecodable_utf16_row_is_written_to_the_report(data: bytes, make_settings: Callable[..., Settings]) -> None:
    """The row of a UTF-16 file holding an undecodable byte goes to rejected.csv with its bytes kept."""
    import_bytes(data, make_settings)


def test_a_utf16_file_cut_short_through_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-16 export cut one byte short has its last line rejected (or is refused), never a traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films.csv").write_bytes("title,year\nA,2000\n".encode("utf-16")[:-1])

    status = main(["--csv", "films.csv", "--dry-run", "--report-dir", "reports", "--no-progress"])

    assert status in (ExitStatus.ROWS_NOT_DELIVERED, ExitStatus.USAGE)
    assert "Traceback" not in capsys.readouterr().err


def test_rejected_csv_of_a_utf8_file_is_reimported_as_utf8(make_settings: Callable[..., Settings]) -> None:
    """Re-importing an unchanged rejected.csv with the encoding detected refuses the same rows again."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.csv"
        path.write_bytes("title,year\nCafé,2000\n".encode() + b"Bad\xff,2000\n")
        first = dry_run(make_settings, path, Path(folder) / "first")
        assert first is not None
        assert (first.summary["encoding"], first.summary["valid"], first.summary["invalid"]) == ("utf-8", 1, 1)

        second = dry_run(make_settings, Path(folder) / "first" / REJECTED, Path(folder) / "second")

        assert second is not None
        assert second.summary["encoding"] == "utf-8-sig", "UTF-8 reports carry a BOM, so they are read back as UTF-8"
        assert (second.summary["valid"], second.summary["invalid"]) == (0, 1)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"title;\tyear\nA;1800\n", id="tab-before-a-required-name"),
        pytest.param(b"title;year;=notes\nA;1800;x\n", id="formula-like-extra-name"),
    ],
)
def test_guarded_header_names_read_back_as_the_same_columns(
    data: bytes, make_settings: Callable[..., Settings]
) -> None:
    """A header name the report guards against spreadsheets is the same column when rejected.csv is re-imported."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.csv"
        path.write_bytes(data)
        first = dry_run(make_settings, path, Path(folder) / "first")
        assert first is not None
        assert first.summary["invalid"] == 1

        second = dry_run(make_settings, Path(folder) / "first" / REJECTED, Path(folder) / "second")

        assert second is not None, "the report of a file that was accepted can be imported"
        header = (Path(folder) / "first" / REJECTED).read_bytes().splitlines()[0]
        assert (Path(folder) / "second" / REJECTED).read_bytes().splitlines()[0] == header


# --- whole files that are not CSV, through the command line ---------------------------------------


def png_image() -> bytes:
    """A small valid PNG: signature, IHDR, IDAT, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(16 * 49)))
        + chunk(b"IEND", b"")
    )


def xlsx_workbook() -> bytes:
    """A zip archive shaped like an Excel workbook, the usual wrong file for 'the CSV export'."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<?xml version='1.0'?><Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData/></worksheet>")
    return buffer.getvalue()


def run_main(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> tuple[int, str]:
    """main() on `name` in a dry run; its exit status and stderr."""
    try:
        status = main(["--csv", name, "--dry-run", "--report-dir", "reports", "--no-progress"])
    except (Exception, SystemExit) as error:  # a crash, or argparse giving up: not the clear message wanted
        pytest.fail(f"main() raised {error!r}; stderr: {capsys.readouterr().err}")
    return status, capsys.readouterr().err


def assert_one_clear_error(status: int, err: str, *fragments: str) -> None:
    """Exit 2 and one line 'movymporter: error: ...' on stderr holding each fragment; no traceback."""
    assert status == ExitStatus.USAGE, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "movymporter: error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("movymporter: error: "), errors[0]
    assert err.rstrip("\n").endswith(errors[0]), "the error is the last thing said"
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(png_image(), ["films.csv", "looks like a binary file"], id="png-image"),
        pytest.param(xlsx_workbook(), ["films.csv", "looks like a binary file"], id="excel-workbook"),
        pytest.param(gzip.compress(b"title,year\nA,2000\n" * 50), ["films.csv", "header"], id="gzip-archive"),
        pytest.param(bytes(64), ["films.csv", "binary"], id="nul-bytes"),
        pytest.param(
            "title,year\nA,2000\n".encode("utf-16-le"), ["UTF-16 without a byte-order mark"], id="utf16-no-bom"
        ),
        pytest.param(
            b'{"films": [{"title": "Casablanca", "year": 1942}, {"title": "Alien", "year": 1979}]}\n',
            ["required columns title and year not found"],
            id="json-document",
        ),
        pytest.param(b'[\n  {"title": "Casablanca", "year": 1942}\n]\n', ["required columns"], id="json-pretty"),
        pytest.param(
            b"Dear team,\nplease find the films attached; the file is big.\nRegards | Ann\n",
            ["required columns title and year not found"],
            id="prose",
        ),
        pytest.param(b"<!DOCTYPE html>\n<html><body>title,year</body></html>\n", ["required columns"], id="html-page"),
        pytest.param(b"", ["films.csv is empty"], id="empty-file"),
        pytest.param(b" \n\t\n\r\n   ", ["films.csv is empty"], id="whitespace-only"),
        pytest.param(b",,,\n;;;\r\n\t|\n", ["films.csv is empty"], id="delimiters-only"),
        pytest.param(b'"title,year\nA,2000\n', ["films.csv", "header", "quotes"], id="header-quote-never-closed"),
        pytest.param(b"name,year\nA,2000\n", ["required column title not found", "'name'"], id="no-title-column"),
    ],
)
def test_a_file_that_is_not_csv_exits_2_with_one_clear_line(
    data: bytes,
    fragments: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Binary, JSON, prose, empty or blank input is refused before any row is read: exit 2, one line, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films.csv").write_bytes(data)

    status, err = run_main(tmp_path, capsys, "films.csv")

    assert_one_clear_error(status, err, *fragments)
    assert not (tmp_path / "reports" / SUMMARY).exists()


def make_directory(folder: Path) -> tuple[str, list[str]]:
    (folder / "films.csv").mkdir()
    return "films.csv", ["films.csv is a directory, not a CSV file"]


def make_nothing(folder: Path) -> tuple[str, list[str]]:
    return "films.csv", ["no such file: films.csv"]


def make_dangling_symlink(folder: Path) -> tuple[str, list[str]]:
    (folder / "films.csv").symlink_to(folder / "gone.csv")
    return "films.csv", ["no such file: films.csv"]


def make_symlink_loop(folder: Path) -> tuple[str, list[str]]:
    (folder / "films.csv").symlink_to(folder / "films.csv")
    return "films.csv", ["cannot read films.csv"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(make_directory, id="directory"),
        pytest.param(make_nothing, id="missing-file"),
        pytest.param(make_dangling_symlink, id="dangling-symlink"),
        pytest.param(make_symlink_loop, id="symlink-loop"),
    ],
)
def test_a_path_that_is_not_a_readable_file_exits_2_with_one_clear_line(
    make: Callable[[Path], tuple[str, list[str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A directory, a missing file or a broken link as CSV_IN: exit 2 and one line naming the path."""
    monkeypatch.chdir(tmp_path)
    name, fragments = make(tmp_path)

    status, err = run_main(tmp_path, capsys, name)

    assert_one_clear_error(status, err, *fragments)


def test_an_unreadable_file_exits_2_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file the user may not read: exit 2 and 'permission denied' naming it (as root, open() is made to refuse)."""
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "films.csv"
    locked.write_text("title,year\nA,2000\n")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads mode 000 files: make opening this one fail as it would for a user
        real_open = Path.open

        def refusing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self.absolute() == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refusing_open)

    status, err = run_main(tmp_path, capsys, "films.csv")

    assert_one_clear_error(status, err, "cannot read films.csv: permission denied")


def test_an_overlong_header_field_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header with a 200,000-character name is refused (exit 2) with a message about its length, not quotes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films.csv").write_bytes(b"title," + b"x" * 200_000 + b",year\nA,1,2000\n")

    status, err = run_main(tmp_path, capsys, "films.csv")

    assert_one_clear_error(status, err, "longer than")
    assert "quote" not in err


def test_the_error_for_a_long_header_line_stays_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A minified JSON export (one 200 KB line) is refused in a message a person can read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films.csv").write_text(json.dumps([{"title": f"Film {n}", "year": 2000} for n in range(5000)]))

    status, err = run_main(tmp_path, capsys, "films.csv")

    assert_one_clear_error(status, err, "required columns title and year not found")
    assert len(err) < 2000
