"""Streaming CSV input: records with their physical line numbers, malformed rows set aside.

The file is decoded with ``surrogateescape``: a byte that is not valid in the
chosen encoding becomes a lone surrogate instead of an exception, so one bad
row is reported as ``encoding-error`` while the rest of the file streams on,
and the report can write the row's original bytes back unchanged. (UTF-16 and
UTF-32 cannot carry bytes that way; their undecodable bytes become U+FFFD,
which flags the row just the same.) The lines come from `lines.PhysicalLines`;
a line longer than LINE_LIMIT there becomes a `source-error` row of its first
KEPT characters (inside a quoted field it ends like any runaway quote).

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
bytes in any of them. A batch of single-line records without such bytes
(nearly every batch of a real file) is handed out as it is; any other batch is
put back and read again record by record, the careful way above. Either way
the records come as `Chunk`s, and `lines_read` is always the last line of what
has been handed out or counted, never of what was read ahead.

A rejected.csv imported again (`is_report`) is read as the rows it holds, each judged again by what it
reports (`problems.judged_again`).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice, tee
from pathlib import Path

from movymporter.chunk import NO_PROBLEMS, Chunk, Record
from movymporter.dialect import (
    DELIMITERS,
    Dialect,
    decode_errors,
    detect_delimiter,
    detect_encoding,
    explained,
    has_replaced,
    has_undecodable,
    is_type_row,
    normalise_name,
)
from movymporter.errors import InputError
from movymporter.lines import KEPT, LINE_LIMIT, STAND_IN, PhysicalLines, key_of
from movymporter.problems import (
    CUT_NOTE,
    ReadProblem,
    encoding_problem,
    explain_csv_error,
    judged_again,
    wrong_width,
)
from movymporter.report import REPORT_COLUMNS, restore

_BATCH = 256
"""Records read at once; a batch holding one odd record is read again record by record. The fastest
size measured: 64 pays more per batch, 1024 no longer keeps its lines in the CPU's cache."""


class CsvInput:
    """An open CSV file whose dialect and header are known; its records are streamed as chunks.

    A rejected.csv (`is_report`) reads as the rows it holds: its header and cells come without the report's
    line, stage and reason columns, and with its spreadsheet guards taken off (`report.restore`)."""

    def __init__(self, path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> None:
        self.path = path
        chosen_encoding = encoding or detect_encoding(path)
        with explained(path):
            errors = decode_errors(chosen_encoding)
            decoder = codecs.getincrementaldecoder(chosen_encoding)(errors=errors)
            self._file = path.open("rb")
            self.size = path.stat().st_size
        self._physical = PhysicalLines(self._file, decoder)
        self._lines = iter(self._physical)
        self._suspect: Callable[[str], bool] = has_undecodable if errors == "surrogateescape" else has_replaced
        self.lines_read = 0
        """Physical lines consumed: those of every record handed out or counted (blank, type row, header), and
        nothing read ahead."""
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
        self.lines_read = header.end_line
        self._width = len(header.cells)
        names = [normalise_name(name) for name in header.cells]
        self.is_report = tuple(names[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS
        if self.is_report:
            # A rejected.csv imported again: its header names carry spreadsheet guards like its cells.
            self.header = [restore(name) for name in header.cells[len(REPORT_COLUMNS) :]]
            self.names = [normalise_name(name) for name in self.header]
        else:
            self.header, self.names = header.cells, names

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
        """Whether any line is left after `lines_read` (after a stop, to tell where reading ended).

        Reads one line ahead and puts it back, so `lines_read` does not change."""
        if self.lines_read < self._base + self._csv.line_num:
            return True  # read ahead, or handed out and not used (`stop_before`)
        waiting = self._unread()
        if not waiting:
            with self._decoding():
                line = next(self._lines, None)
            if line is None:
                return False
            waiting = [line]
        self._restart(self.lines_read, waiting)
        return True

    def stop_before(self, line: int) -> None:
        """Reading stops before `line`, a line of the chunk just handed out: the caller used the records before it
        and no more, so `lines_read` ends before it and `has_more` is true."""
        self.lines_read = line - 1

    def chunks(self) -> Iterator[Chunk]:
        """The data records in file order; blank lines and the type row are counted, not handed out.

        A batch of plain single-line records (`_next_batch`) is handed out as runs of the rows that have the
        header's width and whose first cell has text (so are not blank), and every other record on its own."""
        while batch := self._next_batch():
            if type(batch) is Chunk:
                yield from self._runs(batch)
                continue
            for record in batch:
                if (shaped := self._shaped(record)) is not None:
                    yield Chunk.of(shaped)
        self.lines_read = max(self.lines_read, self._base + self._csv.line_num)

    def _runs(self, batch: Chunk) -> Iterator[Chunk]:
        """A batch as runs of plain rows, and the other rows (and the first record, maybe a type row) alone."""
        rows, first, width = batch.cells, batch.lines[0], self._width
        if self.is_report:  # each row is judged by the problem it was reported for
            odd: Iterable[int] = range(len(rows))
        else:
            odd = [i for i, cells in enumerate(rows) if len(cells) != width or not cells[0] or cells[0].isspace()]
        if not odd and not self._type_row_possible:
            self.lines_read = batch.ends[-1]
            yield batch
            return
        start = 0
        for end in [*odd, len(rows)]:
            while self._type_row_possible and start < end:
                if (record := self._shaped(Record(first + start, first + start, rows[start]))) is not None:
                    yield Chunk.of(record)
                start += 1
            if end > start:
                numbers = range(first + start, first + end)
                self.lines_read = numbers[-1]
                yield Chunk(rows[start:end], numbers, numbers, NO_PROBLEMS)
            if end < len(rows) and (record := self._shaped(Record(first + end, first + end, rows[end]))) is not None:
                yield Chunk.of(record)
            start = end + 1

    def _shaped(self, record: Record) -> Record | None:
        """The record as handed out (a wrong width is its problem), or None for a blank line or the type row,
        which are counted instead. Either way, its lines are read."""
        self.lines_read = record.end_line
        cells = record.cells
        if record.problem is None and (not cells or (_no_text(cells[0]) and not "".join(cells).strip())):
            self.blank_lines += record.end_line - record.line + 1
            return None
        if self._type_row_possible:
            self._type_row_possible = False
            if is_type_row(cells):
                self.type_row_line = record.line
                return None
        if self.is_report:
            data, problem = judged_again(
                cells,
                record.problem,
                delimiter=self._delimiter,
                width=len(self.header),
                encoding=self.dialect.encoding,
                suspect=self._suspect,
            )
            return Record(record.line, record.end_line, data, problem)
        if record.problem is None and len(cells) != self._width:
            return Record(record.line, record.end_line, cells, wrong_width(len(cells), self._width or 0))
        return record

    def _next_batch(self) -> Chunk | list[Record]:
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
            if not rows:
                return []
            numbers = range(self._base + start + 1, self._base + start + 1 + len(rows))
            return Chunk(rows, numbers, numbers, NO_PROBLEMS)
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
                    return self._split_off_first_line(number, lines, explain_csv_error(error))
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
            return Record(start, end, cells, encoding_problem(text, self.dialect.encoding))
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
            cut = next((index for index, line in enumerate(rest, start=number + 1) if line.startswith(STAND_IN)), 0)
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
        if line.startswith(STAND_IN):
            return self._cut_record(number, line)
        if self._suspect(line):
            problem = encoding_problem(line, self.dialect.encoding)
        else:
            problem = ReadProblem("source-error", reason)
        text = line.rstrip("\r\n")
        if len(text) > csv.field_size_limit():
            text = text[:KEPT]
            problem = ReadProblem(problem.code, f"{problem.message}; {CUT_NOTE}")
        return Record(number, number, text.split(self._delimiter), problem)

    def _cut_record(self, number: int, stand_in: str) -> Record:
        """The record of a line cut for its length: the characters kept of it, split on the delimiter."""
        kept = self._physical.cut.pop(key_of(stand_in))
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


def _header_trouble(header: Record | None) -> str:
    """Why the header cannot be read, for a person: not what is said of a data row that cannot be."""
    if header is None or header.problem is None:
        return "no header line"
    message = header.problem.message
    if message.startswith("a quote opened on this line"):
        return "its quotes are unbalanced (a quote is never closed)"
    return message.removesuffix(f"; {CUT_NOTE}")
