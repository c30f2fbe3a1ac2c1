"""Streaming CSV input: encoding, delimiter, header, physical line numbers, malformed rows.

The file is decoded with ``surrogateescape``: a byte that is not valid in the
chosen encoding becomes a lone surrogate instead of an exception, so one bad
row is reported as ``encoding-error`` while the rest of the file streams on,
and the report can write the row's original bytes back unchanged. (UTF-16 and
UTF-32 cannot carry bytes that way; their undecodable bytes become U+FFFD,
which flags the row just the same.)

``csv.reader`` pulls one physical line at a time, and never reads ahead: its
``line_num`` gives the line on which each record starts and ends, across quoted
multi-line fields and CRLF. A ``tee`` of the lines, kept level with the
reader, hands over the text of each record's lines, so a line can be checked
for undecodable bytes and a record that swallowed the lines after an
unbalanced quote can be split: its first line is rejected and the others are
parsed again. Both are C iterators: a line costs no Python call on its way.

Records are taken in batches: `islice` pulls a few hundred from the reader and
their lines from the tee, and one test of the batch's text finds undecodable
bytes in any of them. A batch of single-line records without such bytes (nearly
every batch of a real file) is handed out as it is; any other batch is put back
and read again record by record, the careful way above. `batches` hands out
the runs of a batch's rows that have the header's width and are not blank as
`Rows`, for a caller that works on many rows at once, and every other record
on its own; `records` hands out each record on its own. What is not handed out
yet of a batch is counted (`_waiting`, and the length of a list iterator), so
`lines_read` and `has_more` do not see the read-ahead.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice, tee
from operator import length_hint
from pathlib import Path
from typing import NamedTuple

from movymporter.errors import InputError
from movymporter.report import REPORT_COLUMNS, restore

DELIMITERS = (",", ";", "\t", "|")
_NUMBER_TYPES = "INT INTEGER BIGINT SMALLINT LONG FLOAT DOUBLE REAL DECIMAL NUMERIC NUMBER NUM"
_TEXT_TYPES = "STRING STR TEXT VARCHAR CHAR CAT CATEGORY CATEGORICAL FACTOR"
_OTHER_TYPES = "BOOL BOOLEAN DATE DATETIME TIME TIMESTAMP"
TYPE_NAMES = frozenset(f"{_NUMBER_TYPES} {_TEXT_TYPES} {_OTHER_TYPES}".split())

_SAMPLE_BYTES = 1 << 20
_SCAN_LIMIT = 64 << 20
_ENOUGH_EVIDENCE = 64
"""Non-ASCII characters seen before the encoding is decided."""
_UNDECODABLE = re.compile("[\udc80-\udcff]+")
_BATCH = 256
"""Records read at once; a batch holding one odd record is read again record by record. The fastest
size measured: 64 pays more per batch, 1024 no longer keeps its lines in the CPU's cache."""


@dataclass(frozen=True)
class Dialect:
    """How the file is read, and whether each part was detected or given."""

    encoding: str
    delimiter: str
    encoding_detected: bool
    delimiter_detected: bool

    def describe(self) -> str:
        name = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[self.delimiter]
        how_enc = "detected" if self.encoding_detected else "given"
        how_delim = "detected" if self.delimiter_detected else "given"
        return f"encoding {self.encoding} ({how_enc}), delimiter {name} ({how_delim})"


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """Why a record could not be read as a row: a short code and a plain sentence."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(slots=True)
class Record:
    """One record of the file: where it starts and ends, and its cells as read.

    Not frozen: one is built per row, and a frozen dataclass takes nearly four times as long to build."""

    line: int
    end_line: int
    cells: list[str]
    problem: ReadProblem | None = None


class Rows(NamedTuple):
    """Records of one line each, on the lines from `first` on, read without a problem; the records of a batch."""

    first: int
    cells: list[list[str]]

    def records(self) -> list[Record]:
        numbers = range(self.first, self.first + len(self.cells))
        return list(map(Record, numbers, numbers, self.cells))


def normalise_name(name: str) -> str:
    """Header matching key: case-insensitive, spaces and a leading `*` trimmed (`*Image` -> `image`)."""
    return name.replace("\ufeff", "").strip().lstrip("*").strip().lower()


def is_type_row(cells: list[str]) -> bool:
    """A line such as INT;INT;STRING;CAT;... that some exports put under the header."""
    names = [cell.strip().upper() for cell in cells if cell.strip()]
    return len(names) * 2 >= len(cells) > 0 and all(name in TYPE_NAMES for name in names)


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252.

    Decided on the first non-ASCII text of the file (scanned up to 64 MiB): if
    it mostly forms valid UTF-8 the file is UTF-8 (an odd broken byte is then an
    encoding error of its row); otherwise it is the single-byte cp1252 of classic
    Windows exports. An incremental decoder carries a character cut between two
    reads over to the next one.
    """
    with _explained(path), path.open("rb") as stream:
        head = stream.read(_SAMPLE_BYTES)
        if head.startswith(b"\xef\xbb\xbf"):
            return "utf-8-sig"
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16"
        if head.count(b"\x00") * 10 > len(head) > 0:
            raise InputError(
                f"{path} looks like a binary file, or UTF-16 without a byte-order mark; "
                "convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8) or pass --encoding"
            )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        good = bad = scanned = 0
        chunk = head
        while good + bad < _ENOUGH_EVIDENCE and scanned < _SCAN_LIMIT:
            final = len(chunk) < _SAMPLE_BYTES
            text = decoder.decode(chunk, final=final)
            if not text.isascii():
                undecodable = sum(len(run) for run in _UNDECODABLE.findall(text))
                bad += undecodable
                good += len(text) - len(text.encode("ascii", errors="ignore")) - undecodable
            scanned += len(chunk)
            if final:
                break
            chunk = stream.read(_SAMPLE_BYTES)
    return "utf-8" if good >= bad else "cp1252"


def decode_errors(encoding: str) -> str:
    """How undecodable bytes are kept: as surrogates (original bytes recoverable) where the
    encoding is a superset of ASCII, as U+FFFD for the wide encodings (UTF-16, UTF-32)."""
    return "surrogateescape" if b"a,\n".decode(encoding, errors="ignore") == "a,\n" else "replace"


def estimate_rows(path: Path, size: int) -> int:
    """Rows in the file, guessed from the mean length of its first lines; sizes in-memory tables."""
    with _explained(path), path.open("rb") as stream:
        head = stream.read(1 << 16)
    return size * max(head.count(b"\n"), 1) // max(len(head), 1)


def detect_delimiter(header_line: str) -> str:
    """The candidate that occurs most often outside quotes in the header line.

    The header is the one line whose cells are short names free of delimiters,
    which makes it a steadier signal than data rows full of commas in titles
    (csv.Sniffer looks at those and is easily misled).
    """
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def has_undecodable(text: str) -> bool:
    """Whether a line decoded with surrogateescape holds a NUL or an undecodable byte (a lone surrogate).

    Encoding to UTF-8 refuses a surrogate, and finds one three times faster than a regex search."""
    if "\x00" in text:
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def has_replaced(text: str) -> bool:
    """Whether a line of UTF-16/32, decoded with errors="replace", holds a NUL or an undecodable byte (U+FFFD)."""
    return "\x00" in text or "\ufffd" in text


class CsvInput:
    """An open CSV file whose dialect and header are known; records are streamed."""

    def __init__(self, path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> None:
        self.path = path
        chosen_encoding = encoding or detect_encoding(path)
        with _explained(path):
            errors = decode_errors(chosen_encoding)
            self._stream = path.open(encoding=chosen_encoding, errors=errors, newline="")
            self.size = path.stat().st_size
        self._suspect: Callable[[str], bool] = has_undecodable if errors == "surrogateescape" else has_replaced
        self._held: Iterator[Record] = iter(())
        """Records read but not handed out yet, one line each: of a careful batch in `batches`, or of the
        current Rows in `records`."""
        self._waiting = 0
        """Lines read but not handed out yet by `batches` when it hands a batch out in parts (these are not in
        `_held`), or given back by the caller."""
        self._type_row_possible = True
        """The next record is the first after the header, which may be a type row."""
        self._careful_until = 0
        """Up to this line, records are read one by one (a batch that held an odd record)."""
        try:
            self._open(delimiter, encoding, chosen_encoding)
        except BaseException:
            self._stream.close()
            raise

    def _open(self, delimiter: str | None, encoding: str | None, chosen_encoding: str) -> None:
        """Find the dialect and read the header."""
        path = self.path
        self._width: int | None = None
        first = self._first_non_blank_line()
        self._delimiter = delimiter or detect_delimiter(first[1])
        self.dialect = Dialect(
            encoding=chosen_encoding,
            delimiter=self._delimiter,
            encoding_detected=encoding is None,
            delimiter_detected=delimiter is None,
        )
        self._restart(first[0] - 1, [first[1]])
        self.blank_lines = first[0] - 1
        self.type_row_line: int | None = None
        header = self._next_record()
        if header is None or header.problem is not None:
            why = "no header line"
            if header is not None and header.problem is not None:
                runaway = header.problem.message.startswith("a quote opened on this line")
                why = "its quotes are unbalanced (a quote is never closed)" if runaway else header.problem.message
            raise InputError(f"{path}: cannot read the header on line {first[0]}: {why}")
        self.header_line = header.line
        self._width = len(header.cells)
        names = [normalise_name(name) for name in header.cells]
        self.is_report = tuple(names[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS
        # A rejected.csv imported again: its header names carry spreadsheet guards like its cells.
        self.header = [restore(name) for name in header.cells] if self.is_report else header.cells
        self.names = [normalise_name(name) for name in self.header] if self.is_report else names

    @property
    def lines_read(self) -> int:
        """Physical lines consumed: read from the file and not waiting to be read again."""
        return self._base + self._csv.line_num - self._waiting - length_hint(self._held)

    @property
    def bytes_read(self) -> int:
        return self._stream.buffer.tell()

    def _restart(self, base: int, replay: list[str]) -> None:
        """Read on from line `base` + 1: first the lines of `replay` (read before, to be read again), then the file.

        The lines before, already read, are forgotten."""
        self._base = base
        self._replay = replay
        ahead, self._behind = tee(chain(replay, self._stream) if replay else self._stream)
        self._csv = csv.reader(ahead, delimiter=self._delimiter, strict=True)
        self._done = 0
        """Lines of this reader that belong to records already returned; `_behind` is that far."""

    def _unread(self) -> list[str]:
        """The lines put back to be read again that the reader has not reached yet."""
        return self._replay[self._csv.line_num :]

    def has_more(self) -> bool:
        """Whether any line is left to read (after a stop, to tell where reading ended).

        Reads one line ahead and puts it back, so `lines_read` does not change."""
        if self._waiting or length_hint(self._held):
            return True
        waiting = self._unread()
        if not waiting:
            with self._decoding():
                line = next(self._stream, None)
            if line is None:
                return False
            waiting = [line]
        self._restart(self.lines_read, waiting)
        return True

    def give_back(self, rows: int) -> None:
        """The last `rows` rows of the Rows just handed out were not used, and the caller reads no further:
        `lines_read` and `has_more` count them as not read."""
        self._waiting += rows

    def records(self) -> Iterator[Record]:
        """Data records in file order; blank lines and the type row are counted, not yielded."""
        for batch in self.batches():
            if type(batch) is Rows:
                self._held = held = iter(batch.records())  # `batches` has nothing in `_held` while it waits at a Rows
                yield from held
            else:
                yield batch

    def batches(self) -> Iterator[Rows | Record]:
        """Data records in file order: runs of records of the header's width whose first cell has text (so not
        blank) as `Rows`, any other record on its own. Blank lines and the type row are counted, not yielded."""
        width = len(self.header)
        while batch := self._next_batch():
            if type(batch) is Rows:
                yield from self._runs(batch, width)
                continue
            self._held = held = iter(batch)
            for record in held:
                if (shaped := self._shaped(record, width)) is not None:
                    yield shaped

    def _runs(self, batch: Rows, width: int) -> Iterator[Rows | Record]:
        """A batch as runs of plain rows, and the other rows (and the first record, maybe a type row) alone."""
        rows, first = batch.cells, batch.first
        odd = [i for i, cells in enumerate(rows) if len(cells) != width or not cells[0] or cells[0].isspace()]
        if not odd and not self._type_row_possible:
            yield batch
            return
        self._waiting = len(rows)
        start = 0
        for end in [*odd, len(rows)]:
            while self._type_row_possible and start < end:
                self._waiting -= 1
                if (record := self._shaped(Record(first + start, first + start, rows[start]), width)) is not None:
                    yield record
                start += 1
            if end > start:
                self._waiting -= end - start
                yield Rows(first + start, rows[start:end])
            if end < len(rows):
                self._waiting -= 1
                if (record := self._shaped(Record(first + end, first + end, rows[end]), width)) is not None:
                    yield record
            start = end + 1

    def _shaped(self, record: Record, width: int) -> Record | None:
        """The record as handed out (a wrong width is its problem), or None for a blank line or the type row,
        which are counted instead."""
        cells = record.cells
        if record.problem is None and (not cells or (_no_text(cells[0]) and not "".join(cells).strip())):
            self.blank_lines += record.end_line - record.line + 1
            return None
        if self._type_row_possible:
            self._type_row_possible = False
            if is_type_row(cells):
                self.type_row_line = record.line
                return None
        if record.problem is None and len(cells) != width:
            return _wrong_width(record, width)
        return record

    def _next_batch(self) -> Rows | list[Record]:
        """The next records: a batch of plain single-line ones, or one record read the careful way; [] at the end.

        A batch that fails (a malformed or multi-line record, an undecodable byte) is put back, and its lines
        are read again by `_next_record`, which knows what to make of each odd record."""
        if self._base + self._done < self._careful_until:
            record = self._next_record()
            return [] if record is None else [record]
        reader, start = self._csv, self._done
        try:
            rows = list(islice(reader, _BATCH))
        except csv.Error:
            rows = None
        except UnicodeError as error:
            raise self._refused(error) from None
        count = reader.line_num - start
        lines = list(islice(self._behind, count))
        if rows is not None and len(rows) == count and not self._suspect("".join(lines)):
            self._done = reader.line_num
            return Rows(self._base + start + 1, rows) if rows else []
        self._restart(self._base + start, lines + self._unread())
        self._careful_until = self._base + max(count, 1)
        record = self._next_record()
        return [] if record is None else [record]

    def _next_record(self) -> Record | None:
        reader = self._csv
        try:
            cells = next(reader)
        except StopIteration:
            return None
        except csv.Error as error:
            if reader.line_num == self._done:
                return None
            return self._split_off_first_line(_explain_csv_error(error))
        except UnicodeError as error:
            raise self._refused(error) from None
        count = reader.line_num - self._done
        self._done = reader.line_num
        end = self._base + self._done
        start = end - count + 1
        if count == 1:
            lines = None
            text = next(self._behind)
        else:
            lines = list(islice(self._behind, count))
            text = "".join(lines)
        if self._suspect(text):
            return Record(start, end, cells, _encoding_problem(text, self.dialect.encoding))
        if lines is not None and self._width is not None and len(cells) != self._width:
            reason = f"that record has {len(cells)} fields where the header has {self._width}"
            return self._split_off_first_line(reason, lines)
        return Record(start, end, cells)

    def _split_off_first_line(self, reason: str, lines: list[str] | None = None) -> Record:
        """Reject the first line of the current record; the lines after it are parsed again.

        A quote that opens a field and never closes properly makes csv read the
        following lines as part of that field; setting only the first line aside
        keeps the good rows after it. `lines` are the record's, when they were taken already.
        """
        if lines is None:
            lines = list(islice(self._behind, self._csv.line_num - self._done))
            number = self._base + self._done + 1
        else:
            number = self._base + self._done - len(lines) + 1
        first, rest = lines[0], lines[1:]
        self._restart(number, rest + self._unread())
        cells = first.rstrip("\r\n").split(self.dialect.delimiter)
        if self._suspect(first):
            return Record(number, number, cells, _encoding_problem(first, self.dialect.encoding))
        if rest:
            reason = (
                f"a quote opened on this line runs on to line {number + len(rest)} ({reason}); "
                "this line is set aside and the lines after it are read again"
            )
        return Record(number, number, cells, ReadProblem("source-error", reason))

    def _first_non_blank_line(self) -> tuple[int, str]:
        """The header's line and its number: lines before it that are empty, or only delimiters (Excel), count
        as blank."""
        with self._decoding():
            for number, text in enumerate(self._stream, start=1):
                if text.strip().strip("".join(DELIMITERS)).strip():
                    return number, text
        raise InputError(f"{self.path} is empty: there is no header line")

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        """Undecodable bytes are kept or replaced; a UnicodeError is a codec refusing the whole file."""
        try:
            yield
        except UnicodeError as error:
            raise self._refused(error) from None

    def _refused(self, error: UnicodeError) -> InputError:
        return InputError(f"{self.path} cannot be read in the encoding given: {error}")

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> CsvInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _no_text(cell: str) -> bool:
    return not cell or cell.isspace()


def _wrong_width(record: Record, width: int) -> Record:
    found = len(record.cells)
    code = "missing-cell" if found < width else "extra-cell"
    return Record(
        record.line,
        record.end_line,
        record.cells,
        ReadProblem(code, f"the row has {found} field{'s' * (found != 1)}, the header has {width}"),
    )


def _encoding_problem(text: str, encoding: str) -> ReadProblem:
    if "\x00" in text:
        return ReadProblem("encoding-error", "the line contains a NUL byte (binary data, or a UTF-16 file?)")
    run = _UNDECODABLE.search(text)
    if run is None:
        return ReadProblem("encoding-error", f"the line has bytes that are not valid {encoding}")
    shown = " ".join(f"0x{ord(char) - 0xDC00:02X}" for char in run.group()[:8])
    hint = "; if the whole file is cp1252, pass --encoding cp1252" if encoding.startswith("utf-8") else ""
    return ReadProblem("encoding-error", f"bytes {shown} are not valid {encoding}{hint}")


def _explain_csv_error(error: csv.Error) -> str:
    text = str(error)
    if text.startswith("field larger than field limit"):
        return f"a field is longer than {csv.field_size_limit()} characters"
    if text == "unexpected end of data":
        return "a quoted field is not closed before the end of the file"
    if text.endswith("expected after '\"'"):
        return 'a closing quote is followed by other characters (a quote inside a quoted field must be doubled: "")'
    return f"malformed CSV ({text})"


@contextmanager
def _explained(path: Path) -> Iterator[None]:
    """Turn the OS's reasons for not reading a file into one plain sentence."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a CSV file") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
