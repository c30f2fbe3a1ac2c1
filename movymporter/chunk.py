"""What the reader hands out and the run works on: records of the file, a chunk of them at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from movymporter.problems import ReadProblem


@dataclass(slots=True)
class Record:
    """One record of the file: where it starts and ends, and its cells as read.

    Not frozen: one is built per row, and a frozen dataclass takes nearly four times as long to build."""

    line: int
    end_line: int
    cells: list[str]
    problem: ReadProblem | None = None


NO_PROBLEMS: Mapping[int, ReadProblem] = MappingProxyType({})


@dataclass(slots=True)
class Chunk:
    """Records that follow one another in the file, in columns: what the reader hands out.

    Most often a run of rows of one line each, read without a problem, whose `lines` and `ends` are one
    range; any other record comes as a chunk of its own. A caller working on many rows at once (the
    contract's fast path) takes the cells whole; `problems` holds, by index, why a row could not be read."""

    cells: list[list[str]]
    lines: Sequence[int]
    """The line each record starts on."""
    ends: Sequence[int]
    """The line each record ends on."""
    problems: Mapping[int, ReadProblem]

    @classmethod
    def of(cls, record: Record) -> Chunk:
        problems = NO_PROBLEMS if record.problem is None else {0: record.problem}
        return cls([record.cells], (record.line,), (record.end_line,), problems)

    def __len__(self) -> int:
        return len(self.cells)

    def records(self) -> list[Record]:
        problems = self.problems
        return [
            Record(line, end, cells, problems.get(index))
            for index, (line, end, cells) in enumerate(zip(self.lines, self.ends, self.cells, strict=True))
        ]
