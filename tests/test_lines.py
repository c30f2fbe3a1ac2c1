"""Physical lines read a chunk at a time: where lines end, and what becomes of a line longer than a chunk or than
the line limit."""

from __future__ import annotations

import codecs
import io
from string import ascii_letters

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movymporter.lines import STAND_IN, PhysicalLines, key_of

LINE_PIECES = ("a", "é", "日", "🎬", ",", '"', "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028")


def physical_lines(data: bytes, encoding: str = "utf-8", errors: str = "surrogateescape") -> PhysicalLines:
    return PhysicalLines(io.BytesIO(data), codecs.getincrementaldecoder(encoding)(errors=errors))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@given(pieces=st.lists(st.sampled_from(LINE_PIECES), max_size=40), chunk=st.integers(1, 9))
def test_physical_lines_end_where_a_text_file_ends_them(pieces: list[str], chunk: int, encoding: str) -> None:
    """Read in chunks of any size, the lines and their line ends are those of a text file opened with
    newline="": a \\r\\n cut between two chunks is one line end, \\x0b, \\x85 or \\u2028 end no line. A line
    longer than a chunk comes as a stand-in, whose text `whole` gives back."""
    data = "".join(pieces).encode(encoding)
    errors = "surrogateescape" if encoding == "utf-8" else "replace"
    expected = list(io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors=errors, newline=""))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("movymporter.lines.CHUNK", chunk)
        source = physical_lines(data, encoding, errors)
        lines = list(source)
    restored = source.whole(lines) or lines
    assert restored == expected
    assert all(line == text for line, text in zip(lines, restored, strict=True) if len(text) <= chunk)
    assert all(line != text for line, text in zip(lines, restored, strict=True) if len(text) > chunk + 1)


# With chunks of 8 characters, a line limit of 20 and 5 characters kept of a line cut:
SMALL_CHUNK, SMALL_LIMIT, SMALL_KEPT = 8, 20, 5


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("movymporter.lines.CHUNK", SMALL_CHUNK)
    monkeypatch.setattr("movymporter.lines.LINE_LIMIT", SMALL_LIMIT)
    monkeypatch.setattr("movymporter.lines.KEPT", SMALL_KEPT)


@pytest.mark.usefixtures("small_limits")
@pytest.mark.parametrize("end", ["\n", "\r\n", "\r", ""], ids=["lf", "crlf", "lone-cr", "last-line-without-end"])
@pytest.mark.parametrize(
    ("length", "held"),
    [
        pytest.param(6, "as-is", id="shorter-than-a-chunk"),
        pytest.param(7, "as-is-unless-crlf", id="a-chunk-long-with-lf"),
        pytest.param(9, "whole", id="longer-than-a-chunk"),
        pytest.param(SMALL_LIMIT, "whole", id="at-the-line-limit"),
        pytest.param(SMALL_LIMIT + 1, "cut", id="one-over-the-line-limit"),
        pytest.param(3 * SMALL_LIMIT, "cut", id="far-over-the-line-limit"),
    ],
)
@pytest.mark.parametrize("offset", [0, 3, 7], ids=lambda offset: f"starting-{offset}-into-a-chunk")
def test_a_line_is_held_by_its_length_wherever_the_chunks_end(length: int, held: str, end: str, offset: int) -> None:
    """A line no longer than a chunk (with its line end) comes as it is; a longer one comes as a stand-in with
    its line end, whose text `whole` gives back once; one of more than LINE_LIMIT characters (its line end not
    counted) is cut: only its first KEPT characters are held, in `cut`. The lines around it are unchanged."""
    before = "p" * (offset - 1) + "\n" if offset else ""
    text = (ascii_letters * 4)[:length]
    after = "ab\n" if end else ""
    source = physical_lines(f"{before}{text}{end}{after}".encode())
    lines = list(source)
    assert lines == [*filter(None, [before]), lines[bool(before)], *filter(None, [after])]
    line = lines[bool(before)]
    if held == "as-is-unless-crlf":
        held = "whole" if len(text + end) > SMALL_CHUNK else "as-is"
    if held == "as-is":
        assert line == text + end
        assert source.whole(lines) is None
        return
    assert line.startswith(STAND_IN)
    assert line.endswith(end)
    assert not line.removesuffix(end).endswith(("\r", "\n"))
    if held == "whole":
        assert source.cut == {}
        assert source.whole([line]) == [text + end]
        assert source.long == {}, "the text of a long line is held until it is read, and no longer"
    else:
        assert source.long == {}
        assert source.cut == {key_of(line): text[:SMALL_KEPT]}
        assert source.whole([line]) is None


@pytest.mark.usefixtures("small_limits")
def test_each_long_line_has_its_own_key() -> None:
    """Two long lines and a cut one get stand-ins of their own keys: `whole` puts each text back in its place,
    and leaves the cut one and the short ones as they are."""
    first, cut, second = "F" * 12, "C" * (SMALL_LIMIT + 4), "S" * 10
    source = physical_lines(f"{first}\nab\n{cut}\r\n{second}\r\ncd".encode())
    lines = list(source)
    stand_ins = [line for line in lines if line.startswith(STAND_IN)]
    assert len(stand_ins) == 3
    assert len({key_of(line) for line in stand_ins}) == 3
    assert source.whole(lines) == [f"{first}\n", "ab\n", lines[2], f"{second}\r\n", "cd"]
    assert source.cut == {key_of(lines[2]): cut[:SMALL_KEPT]}
