"""Streaming CSV input: encoding, delimiter, header, physical line numbers, malformed rows.

The file is decoded with ``surrogateescape``: a byte that is not valid in the
chosen encoding becomes a lone surrogate instead of an exception, so one bad
row is reported as ``encoding-error`` while the rest of the file streams on,
and the report can write the row's original bytes back unchanged. (UTF-16 and
UTF-32 cannot carry bytes that way; their undecodable bytes become U+FFFD,
which flags the row just the same.)

`PhysicalLines` reads the file in chunks, decodes them and splits them into the
lines a text file iterator would give (\n, \r\n or a lone \r ends a line),
a chunk at a time. A line longer than a chunk is held apart and a short
stand-in takes its place, at which csv stops with an error: the record is then
read again the careful way (below) with the line's text, so a batch holds at
most one long line. A line longer than LINE_LIMIT is not held at all: its first
KEPT characters are kept, the rest skipped, and it is a `source-error` row of
those characters (inside a quoted field it ends like any runaway quote).

``csv.reader`` pulls one physical line at a time, and never reads ahead: its
``line_num`` gives the line on which each record starts and ends, across quoted
multi-line fields and CRLF. A ``tee`` of the lines, kept level with the
reader, hands over the text of each record's lines, so a line can be checked
for undecodable bytes and a record that swallowed the lines after an
unbalanced quote can be split: its first line is rejected (its raw text split
on the delimiter, at most KEPT characters of it when it is longer than a field
may be) and the others are parsed again. The csv module's field size limit
bounds what a runaway quote swallows, and so what the tee holds. All of these
are C iterators: a line costs no Python call on its way.

Records are taken in batches: `islice` pulls a few hundred from the reader and
their lines from the tee, and one test of the batch's text finds undecodable
bytes in any of them. A batch of single-line records without
such bytes (nearly every batch of a real file) is handed out as it is; any
other batch is put back and read again record by record, the careful way
above. `batches` hands out the runs of a batch's rows that have the header's
width and are not blank as `Rows`, for a caller that works on many rows at
once, and every other record on its own; `records` hands out each record on
its own. What is not handed out yet of a batch is counted (`_waiting`, and the
length of a list iterator), so `lines_read` and `has_more` do not see the
read-ahead.

A rejected.csv imported again (`is_report`) is read row by row, and each row is
judged by what it reports (`CsvInput._judged_again`): a row refused at stage
read keeps its reason, whatever encoding the report is read in, for as long as
it has the problem it was reported for. So an unedited rejected.csv is refused
again row for row, and only an edit lets a row through to validation. A row cut
for its length never goes through: its data are incomplete, so the fix belongs
in the original file. Rows of the other stages are read like any row; a row of
the wrong width is counted without the report's three columns.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from itertools import chain, islice, tee
from operator import length_hint
from pathlib import Path
from typing import BinaryIO, NamedTuple

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
_CHUNK = 1 << 15
"""Bytes read and decoded at once, then split into lines. A line longer than this many characters is longer than
a chunk: it is held apart (`PhysicalLines`), so that a batch holds at most one long line, and 256 of these
characters at most for each of its other lines."""
LINE_LIMIT = 1 << 20
"""Characters a line may have (its line end not counted): a longer line is cut, so one line cannot fill the
memory."""
KEPT = 4096
"""Characters kept of a line that is cut: enough to recognise the row in the report."""
CUT_NOTE = f"only the first {KEPT} characters of the line are kept"
"""Ends the reason of a row cut short. Its data are incomplete, so it is refused again when its rejected.csv is
imported: the fix belongs in the original file."""
_MARK = "\ud800"
"""A lone surrogate outside U+DC80..U+DCFF: never decoded from a file (nor in UTF-16, whose damage becomes
U+FFFD)."""
_STAND_IN = '"' + _MARK
"""Starts the stand-in for a line longer than a chunk: `"`, _MARK, its key, `"`, _MARK, its line end. A closing
quote followed by a character other than a delimiter is an error for csv in strict mode, at the start of a line
as inside a quoted field, so csv stops at the stand-in whatever it was reading, and the record is read the
careful way, with the line's text (`PhysicalLines.whole`), or as a row cut short."""
_NOT_LINE_ENDS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Where `str.splitlines` ends a line and a text file does not."""
_READ_CODES = frozenset(("source-error", "encoding-error", "missing-cell", "extra-cell"))
"""The codes of the problems a row can have at stage read."""


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


class PhysicalLines:
    """The lines of a file, each with its line end, as iterating a text file opened with newline="" gives them:
    a line ends at \\n, \\r\\n or a lone \\r, and nowhere else (`str.splitlines` also splits at \\x0b, \\x85,
    \\u2028 and others), except that a line longer than a chunk comes as a stand-in.

    The file is read and decoded a chunk at a time and each chunk split into lines in C (`_split_lines`);
    `chain.from_iterable` hands the lines out, so a line costs no Python call: only a chunk does. A line
    longer than a chunk ends in a later chunk than it starts, so only the line carried over from one chunk to
    the next needs its length checked. Such a line is held in `long` and a stand-in (`_STAND_IN`) takes its
    place; a line longer than LINE_LIMIT is not even read on: its first KEPT characters are held in `cut`, the
    rest up to its line end is skipped.
    """

    def __init__(self, stream: BinaryIO, decoder: codecs.IncrementalDecoder) -> None:
        self._read = stream.read
        self._decode = decoder.decode
        self.long: dict[int, str] = {}
        """The text of each line longer than a chunk, by the key in its stand-in, until it is read."""
        self.cut: dict[int, str] = {}
        """The first KEPT characters of each line longer than LINE_LIMIT, by the key in its stand-in."""
        self._keys = 0

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._chunks())

    def whole(self, lines: list[str]) -> list[str] | None:
        """`lines` with the text of each long line (not cut) in place of its stand-in; None if there is none."""
        if not any(map(self._held_whole, lines)):
            return None
        return [self.long.pop(_key(line)) + _line_end_of(line) if self._held_whole(line) else line for line in lines]

    def _held_whole(self, line: str) -> bool:
        return line.startswith(_STAND_IN) and _key(line) in self.long

    def _chunks(self) -> Iterator[list[str]]:
        """The lines of each chunk; a line cut by the end of a chunk comes whole with the next."""
        carry = ""  # the last line read, not known to be complete: no line end yet, or a \r a \n may follow
        skipping = False  # the line being read is cut: what comes before its line end is skipped
        for text in self._texts():
            if skipping:
                end = _line_end(text)
                if end < 0:
                    continue
                text, skipping = text[end:], False
            lines = _split_lines(text)
            joined = bool(carry)
            if joined:
                _join(carry, lines)
            carry = "" if lines[-1][-1] == "\n" else lines.pop()
            if joined and lines and len(lines[0]) > _CHUNK:
                lines[0] = self._stand_in(lines[0])
            if len(carry) > LINE_LIMIT:
                carry = self._stand_in(carry)
                skipping = carry[-1] != "\r"
            if lines:
                yield lines
        if carry:
            yield [self._stand_in(carry) if len(carry) > _CHUNK else carry]

    def _texts(self) -> Iterator[str]:
        """The file decoded, a chunk at a time; a character cut between two chunks is decoded with the second."""
        while True:
            data = self._read(_CHUNK)
            if text := self._decode(data, not data):
                yield text
            if not data:
                return

    def _stand_in(self, line: str) -> str:
        """The stand-in for a long line, with its line end; the line's text (or its start) is held by its key."""
        text = line.rstrip("\r\n")
        self._keys += 1
        if len(text) > LINE_LIMIT:
            self.cut[self._keys] = text[:KEPT]
        else:
            self.long[self._keys] = text
        return f'{_STAND_IN}{self._keys}"{_MARK}{line[len(text) :]}'


def _key(stand_in: str) -> int:
    return int(stand_in[len(_STAND_IN) : stand_in.index('"', len(_STAND_IN))])


def _line_end_of(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def _split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its line end, split where a text file opened with newline="" splits them:
    by `str.splitlines`, the fastest, unless `text` holds a character at which only `str.splitlines` ends a line
    (rare: the test is a few `memchr`), then by `io.StringIO`."""
    if any(map(text.__contains__, _NOT_LINE_ENDS)):
        return StringIO(text, newline="").readlines()
    return text.splitlines(True)


def _join(carry: str, lines: list[str]) -> None:
    """Put the line carried over from the chunk before in front of the chunk's lines: as the start of the first,
    or as a line of its own when it ended with a \\r that is not followed by a \\n."""
    if carry[-1] == "\r" and lines[0] != "\n":
        lines.insert(0, carry)
    else:
        lines[0] = carry + lines[0]


def _line_end(text: str) -> int:
    """Where the first line of `text` ends (its \\r or \\n), or -1."""
    cr, lf = text.find("\r"), text.find("\n")
    return cr if lf < 0 or 0 <= cr < lf else lf


class CsvInput:
    """An open CSV file whose dialect and header are known; records are streamed."""

    def __init__(self, path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> None:
        self.path = path
        chosen_encoding = encoding or detect_encoding(path)
        with _explained(path):
            errors = decode_errors(chosen_encoding)
            decoder = codecs.getincrementaldecoder(chosen_encoding)(errors=errors)
            self._file = path.open("rb")
            self.size = path.stat().st_size
        self._physical = PhysicalLines(self._file, decoder)
        self._lines = iter(self._physical)
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
            self._file.close()
            raise

    def _open(self, delimiter: str | None, encoding: str | None, chosen_encoding: str) -> None:
        """Find the dialect and read the header."""
        path = self.path
        self._width: int | None = None
        self.is_report = False
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
            raise InputError(f"{path}: cannot read the header on line {first[0]}: {_header_trouble(header)}")
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
        return self._file.tell()

    def _restart(self, base: int, replay: list[str]) -> None:
        """Read on from line `base` + 1: first the lines of `replay` (read before, to be read again), then the file.

        The lines before, already read, are forgotten."""
        self._base = base
        self._replay = replay
        ahead, self._behind = tee(chain(replay, self._lines) if replay else self._lines)
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
                line = next(self._lines, None)
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
        if self.is_report:  # each row is judged by the problem it was reported for
            odd: Iterable[int] = range(len(rows))
        else:
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
        if record.problem is not None:
            return record
        if self.is_report:
            return self._judged_again(record)
        if len(cells) != width:
            return Record(record.line, record.end_line, cells, _wrong_width(len(cells), width))
        return record

    def _judged_again(self, record: Record) -> Record:
        """A row of a rejected.csv, with the problem that keeps it from being read, if it still has one.

        The cells of a row reported at stage read are what the reader made of a line it could not read; a
        line set aside is its raw text split on the delimiter, which, quoted in the report, reads back as plain
        cells, maybe valid ones. So such a row is judged again, as its line, by the problem it was reported
        for: undecodable bytes still there, its text still not one line csv can read; a row cut for its length
        always has it. Then it keeps the report's reason, the same whatever encoding the report is read in.
        Any row (of any stage) with undecodable bytes, or of the wrong width (counted without the report's
        columns, so an unchanged row gets its first reason), is refused at stage read; the others go on to
        validation.
        """
        cells = record.cells
        data = [restore(cell) for cell in cells[len(REPORT_COLUMNS) :]]
        text = self._delimiter.join(data)
        stage = cells[1].strip() if len(cells) > 1 else ""
        reported = _reported_problem(restore(cells[2])) if stage == "read" and len(cells) > 2 else None
        if reported is not None and self._still_has(reported, text):
            problem = reported
        elif self._suspect(text):
            problem = _encoding_problem(text, self.dialect.encoding)
        elif len(data) != (width := len(self.header) - len(REPORT_COLUMNS)):
            problem = _wrong_width(len(data), width)
        else:
            return record
        return Record(record.line, record.end_line, cells, problem)

    def _still_has(self, reported: ReadProblem, text: str) -> bool:
        """Whether the line a report row holds still has the problem it was reported for (a wrong width is
        judged again as for any row, and gives the same reason while the row is unchanged)."""
        if reported.message.endswith(CUT_NOTE):
            return True
        if reported.code == "encoding-error":
            return has_undecodable(text) or has_replaced(text)
        if reported.code == "source-error":
            return not _reads_as_one_line(text, self._delimiter)
        return False

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
        """The next record, read on its own: one of undecodable bytes is an encoding-error, a malformed one has its
        first line set aside (`_split_off_first_line`), one with a line longer than a chunk is read again with its
        text; None at the end."""
        reader = self._csv
        while True:
            try:
                cells = next(reader)
                break
            except StopIteration:
                return None
            except csv.Error as error:
                if reader.line_num == self._done:
                    return None
                number = self._base + self._done + 1
                lines = list(islice(self._behind, reader.line_num - self._done))
                if (whole := self._physical.whole(lines)) is None:
                    return self._split_off_first_line(number, lines, _explain_csv_error(error))
                self._restart(number - 1, whole + self._unread())  # read again, with the text of its long lines
                reader = self._csv
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
        if self.is_report:
            return Record(start, end, cells)  # a report's rows are judged on their cells, in `_judged_again`
        if self._suspect(text):
            return Record(start, end, cells, _encoding_problem(text, self.dialect.encoding))
        if lines is not None and self._width is not None and len(cells) != self._width:
            reason = f"that record has {len(cells)} fields where the header has {self._width}"
            return self._split_off_first_line(start, lines, reason)
        return Record(start, end, cells)

    def _split_off_first_line(self, number: int, lines: list[str], reason: str) -> Record:
        """Reject the first line of a record, line `number`; the lines after it are parsed again.

        A quote that opens a field and never closes properly makes csv read the
        following lines as part of that field; setting only the first line aside
        keeps the good rows after it. A line cut for its length stops csv too: it
        is read again, as a row of its own.
        """
        first, rest = lines[0], lines[1:]
        self._restart(number, rest + self._unread())
        if rest:
            cut = next((index for index, line in enumerate(rest, start=number + 1) if line.startswith(_STAND_IN)), 0)
            if cut:
                reason = f"line {cut} is longer than {LINE_LIMIT} characters"
            reason = (
                f"a quote opened on this line runs on to line {number + len(rest)} ({reason}); "
                "this line is set aside and the lines after it are read again"
            )
        return self._set_aside(number, first, reason)

    def _set_aside(self, number: int, line: str, reason: str) -> Record:
        """The record of a line that cannot be read as a row: its text split on the delimiter.

        Of a line longer than a field may be, only the first KEPT characters are kept, so that every cell of
        rejected.csv can be read back as a field."""
        if line.startswith(_STAND_IN):
            return self._cut_record(number, line)
        if self._suspect(line):
            problem = _encoding_problem(line, self.dialect.encoding)
        else:
            problem = ReadProblem("source-error", reason)
        text = line.rstrip("\r\n")
        if len(text) > csv.field_size_limit():
            text = text[:KEPT]
            problem = ReadProblem(problem.code, f"{problem.message}; {CUT_NOTE}")
        return Record(number, number, text.split(self._delimiter), problem)

    def _cut_record(self, number: int, stand_in: str) -> Record:
        """The record of a line cut for its length: the characters kept of it, split on the delimiter."""
        kept = self._physical.cut.pop(_key(stand_in))
        problem = ReadProblem("source-error", f"the line is longer than {LINE_LIMIT} characters; {CUT_NOTE}")
        return Record(number, number, kept.split(self._delimiter), problem)

    def _first_non_blank_line(self) -> tuple[int, str]:
        """The header's line and its number: lines before it that are empty, or only delimiters (Excel), count
        as blank."""
        with self._decoding():
            for number, line in enumerate(self._lines, start=1):
                text = (self._physical.whole([line]) or [line])[0]  # a line longer than a chunk, as its text
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
        self._file.close()

    def __enter__(self) -> CsvInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _no_text(cell: str) -> bool:
    return not cell or cell.isspace()


def _wrong_width(found: int, width: int) -> ReadProblem:
    code = "missing-cell" if found < width else "extra-cell"
    return ReadProblem(code, f"the row has {found} field{'s' * (found != 1)}, the header has {width}")


def _header_trouble(header: Record | None) -> str:
    """Why the header cannot be read, for a person: not what is said of a data row that cannot be."""
    if header is None or header.problem is None:
        return "no header line"
    message = header.problem.message
    if message.startswith("a quote opened on this line"):
        return "its quotes are unbalanced (a quote is never closed)"
    return message.removesuffix(f"; {CUT_NOTE}")


def _reported_problem(reason: str) -> ReadProblem | None:
    """The read problem a rejected.csv gives as a row's reason ("code: message"), or None when it is not one."""
    code, colon, message = reason.partition(": ")
    return ReadProblem(code, message) if colon and code in _READ_CODES else None


def _reads_as_one_line(text: str, delimiter: str) -> bool:
    """Whether `text`, read as one line of the file, is a row: its quotes are balanced and nothing follows one."""
    try:
        next(csv.reader((text,), delimiter=delimiter, strict=True), None)
    except csv.Error:
        return False
    return True


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
