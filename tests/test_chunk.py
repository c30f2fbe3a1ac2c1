"""What the reader hands out: records of the file in chunks, whose columns give back each record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from movymporter.chunk import NO_PROBLEMS, Chunk, Record
from movymporter.problems import ReadProblem

SHORT = ReadProblem("missing-cell", "the row has 1 field, the header has 2")
UNCLOSED = ReadProblem("source-error", "a quote opened on this line runs on to line 5")


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(Record(2, 2, ["Heat", "1995"]), id="a-plain-row"),
        pytest.param(Record(3, 5, ["Multi\nline\nfilm", "1990"]), id="a-record-over-three-lines"),
        pytest.param(Record(7, 7, ["Short"], SHORT), id="a-row-with-a-problem"),
        pytest.param(Record(8, 8, []), id="a-record-without-cells"),
    ],
)
def test_a_chunk_of_one_record_gives_it_back(record: Record) -> None:
    """A record on its own is a chunk of one: its lines, its cells and its problem by index 0, and taken apart
    it is the record again."""
    chunk = Chunk.of(record)
    assert len(chunk) == 1
    assert (list(chunk.lines), list(chunk.ends), chunk.cells) == ([record.line], [record.end_line], [record.cells])
    assert dict(chunk.problems) == ({} if record.problem is None else {0: record.problem})
    assert chunk.records() == [record]


@pytest.mark.parametrize(
    ("cells", "lines", "ends", "problems", "expected"),
    [
        pytest.param([], range(3, 3), range(3, 3), NO_PROBLEMS, [], id="an-empty-chunk-has-no-records"),
        pytest.param(
            [["A", "1"], ["B", "2"], ["C", "3"]],
            range(3, 6),
            range(3, 6),
            NO_PROBLEMS,
            [Record(3, 3, ["A", "1"]), Record(4, 4, ["B", "2"]), Record(5, 5, ["C", "3"])],
            id="a-run-of-rows-numbered-by-a-range",
        ),
        pytest.param(
            [["A", "1"], ["Short"], ['"Open', "2"]],
            [3, 5, 6],
            [4, 5, 6],
            {1: SHORT, 2: UNCLOSED},
            [Record(3, 4, ["A", "1"]), Record(5, 5, ["Short"], SHORT), Record(6, 6, ['"Open', "2"], UNCLOSED)],
            id="each-problem-goes-to-the-record-of-its-index",
        ),
    ],
)
def test_a_chunk_taken_apart_gives_its_records_in_order(
    cells: list[list[str]],
    lines: Sequence[int],
    ends: Sequence[int],
    problems: Mapping[int, ReadProblem],
    expected: list[Record],
) -> None:
    """A chunk's columns give one record per row: its start and end line, its cells and its problem, if any."""
    chunk = Chunk(cells, lines, ends, problems)
    assert len(chunk) == len(cells)
    assert chunk.records() == expected


def test_chunks_without_problems_share_one_read_only_mapping() -> None:
    """A record read without a problem makes a chunk of no problems, the empty mapping all such chunks share,
    which cannot be given a problem by accident."""
    chunk = Chunk.of(Record(2, 2, ["A", "1"]))
    assert chunk.problems is NO_PROBLEMS
    assert NO_PROBLEMS == {}
    with pytest.raises(TypeError):
        NO_PROBLEMS[0] = SHORT  # type: ignore[index]
    assert NO_PROBLEMS == {}


@pytest.mark.parametrize(
    ("lines", "ends"),
    [
        pytest.param(range(3, 5), range(3, 6), id="fewer-lines-than-rows"),
        pytest.param(range(3, 7), range(3, 6), id="more-lines-than-rows"),
    ],
)
def test_a_chunk_whose_columns_differ_in_length_is_not_taken_apart(lines: range, ends: range) -> None:
    """Columns of different lengths are a mistake of the one who built the chunk: taking it apart fails loudly
    rather than drop a record."""
    chunk = Chunk([["A", "1"], ["B", "2"], ["C", "3"]], lines, ends, NO_PROBLEMS)
    with pytest.raises(ValueError, match="zip"):
        chunk.records()
