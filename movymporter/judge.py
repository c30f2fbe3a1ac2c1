"""Each row of a chunk judged against the contract: valid, with its record key, or invalid, with every reason.

Pure: nothing is counted or written here (the ledger does that), so a chunk can be judged anywhere, and the
same chunk is always judged the same. The contract's fast path takes the chunk's cells whole; only the rows it
is not sure about go to the pydantic model, one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from movymporter.chunk import Chunk
from movymporter.schema import Contract, Movie, PlainKeys, record_key

READ = "read"
VALIDATE = "validate"


@dataclass(slots=True)
class Judged:
    """The verdicts of a chunk's rows, by index."""

    keys: list[str | None]
    """The record key of each valid row; None for an invalid one."""
    movies: dict[int, Movie] = field(default_factory=dict)
    """The valid rows the model checked (the others' bodies are written from their keys)."""
    problems: dict[int, tuple[str, Sequence[object]]] = field(default_factory=dict)
    """The stage (read or validate) and the problems of each invalid row."""


class Judge:
    """Judges the chunks of one input: its columns are known, and so is the fast path for its rows."""

    def __init__(self, contract: Contract, positions: Mapping[str, int], width: int) -> None:
        self._contract = contract
        self._fields = list(positions.items())
        self._plain_keys: PlainKeys = contract.plain_keys(positions, width)

    def judge(self, chunk: Chunk) -> Judged:
        cells, problems = chunk.cells, chunk.problems
        keys = self._plain_keys(cells) if not problems else [None] * len(cells)
        judged = Judged(keys)
        if None not in keys:
            return judged
        for index, key in enumerate(keys):
            if key is not None:
                continue
            problem = problems.get(index)
            if problem is not None:
                judged.problems[index] = (READ, (problem,))
                continue
            result = self._contract.validate(self._values(cells[index], chunk.ends[index] > chunk.lines[index]))
            if isinstance(result, list):
                judged.problems[index] = (VALIDATE, result)
            else:
                keys[index] = record_key(result)
                judged.movies[index] = result
        return judged

    def _values(self, cells: list[str], multi_line: bool) -> dict[str, str]:
        values = {name: cells[index] for name, index in self._fields}
        if multi_line:
            # A cell that spans lines in a CRLF file carries the file's line ending, not data.
            values = {name: value.replace("\r\n", "\n") for name, value in values.items()}
        return values
