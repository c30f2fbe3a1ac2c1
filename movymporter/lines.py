"""Physical lines of a file, as a text file iterator would give them, read and split a chunk at a time.

`PhysicalLines` reads the file in chunks, decodes them and splits them into the lines a text file iterator
would give (\\n, \\r\\n or a lone \\r ends a line), a chunk at a time. A line longer than a chunk is held
apart and a short stand-in takes its place, at which csv stops with an error: the reader then reads the record
again the careful way with the line's text, so a batch holds at most one long line. A line longer than
LINE_LIMIT is not held at all: its first KEPT characters are kept, the rest skipped.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from io import StringIO
from itertools import chain
from typing import BinaryIO

CHUNK = 1 << 15
"""Bytes read and decoded at once, then split into lines. A line longer than this many characters is longer than
a chunk: it is held apart (`PhysicalLines`), so that a batch holds at most one long line, and 256 of these
characters at most for each of its other lines."""
LINE_LIMIT = 1 << 20
"""Characters a line may have (its line end not counted): a longer line is cut, so one line cannot fill the
memory."""
KEPT = 4096
"""Characters kept of a line that is cut: enough to recognise the row in the report."""
_MARK = "\ud800"
"""A lone surrogate outside U+DC80..U+DCFF: never decoded from a file (nor in UTF-16, whose damage becomes
U+FFFD)."""
STAND_IN = '"' + _MARK
"""Starts the stand-in for a line longer than a chunk: `"`, _MARK, its key, `"`, _MARK, its line end. A closing
quote followed by a character other than a delimiter is an error for csv in strict mode, at the start of a line
as inside a quoted field, so csv stops at the stand-in whatever it was reading, and the record is read the
careful way, with the line's text (`PhysicalLines.whole`), or as a row cut short."""
_NOT_LINE_ENDS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Where `str.splitlines` ends a line and a text file does not."""


class PhysicalLines:
    """The lines of a file, each with its line end, as iterating a text file opened with newline="" gives them:
    a line ends at \\n, \\r\\n or a lone \\r, and nowhere else (`str.splitlines` also splits at \\x0b, \\x85,
    \\u2028 and others), except that a line longer than a chunk comes as a stand-in.

    The file is read and decoded a chunk at a time and each chunk split into lines in C (`_split_lines`);
    `chain.from_iterable` hands the lines out, so a line costs no Python call: only a chunk does. A line
    longer than a chunk ends in a later chunk than it starts, so only the line carried over from one chunk to
    the next needs its length checked. Such a line is held in `long` and a stand-in (`STAND_IN`) takes its
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
        return [self.long.pop(key_of(line)) + _line_end_of(line) if self._held_whole(line) else line for line in lines]

    def _held_whole(self, line: str) -> bool:
        return line.startswith(STAND_IN) and key_of(line) in self.long

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
            if joined and lines and len(lines[0]) > CHUNK:
                lines[0] = self._stand_in(lines[0])
            if len(carry) > LINE_LIMIT:
                carry = self._stand_in(carry)
                skipping = carry[-1] != "\r"
            if lines:
                yield lines
        if carry:
            yield [self._stand_in(carry) if len(carry) > CHUNK else carry]

    def _texts(self) -> Iterator[str]:
        """The file decoded, a chunk at a time; a character cut between two chunks is decoded with the second."""
        while True:
            data = self._read(CHUNK)
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
        return f'{STAND_IN}{self._keys}"{_MARK}{line[len(text) :]}'


def key_of(stand_in: str) -> int:
    return int(stand_in[len(STAND_IN) : stand_in.index('"', len(STAND_IN))])


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
