"""The contract's fast path: plainly valid rows straight to their record keys, without pydantic.

Most rows of a real export are plainly valid, and pydantic costs several microseconds a row. One regular
expression, written from the plain forms of the table of fields, and a few string tests recognise such rows
and give the key that `schema.record_key` would give (and `schema.plain_body` the body `to_json` would); any
row it is not sure about goes to the model, so pydantic stays the single statement of the contract (and of
its messages).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from pydantic_core import PydanticCustomError

from movymporter.fields import FILM, Field

PlainKey = Callable[[Sequence[str]], str | None]
"""The cells of a row of the expected width -> its record key, or None when the model must decide."""
PlainKeys = Callable[[Iterable[Sequence[str]]], list[str | None]]
"""`PlainKey` for many rows at once: a dry run is little else, and one call per row costs more than the loop."""
Respelt = Callable[[Sequence[str], re.Match[str]], str | None]
"""A plain row's cells and its match -> its key, where a group holds a cell spelt otherwise than its JSON."""

_RESPELLINGS_REMEMBERED = 4096
"""Cells remembered by each field's respelling: the cells of a group are short, and a few make up a column."""


def plain_row(max_year: int, table: Sequence[Field] = FILM) -> re.Pattern[str]:
    """A row's cells in field order joined by '"', which no plain cell contains."""
    return re.compile('"'.join(f"(?:{field.plain_form(max_year)})" for field in table))


def plain_keys_of(
    positions: Mapping[str, int], max_year: int, width: int | None = None, table: Sequence[Field] = FILM
) -> PlainKeys:
    """The fast path of the contract for one header: plainly valid rows straight to their record keys.

    A row qualifies when each cell has the plain form of its field (the year one of the contract's range),
    and the text is printable (no control character, surrogate, or whitespace but the space), without a
    backslash (nothing to escape) or U+FFFD. Such a row passes every rule of the model, and its key is the one
    `record_key` gives, from which `plain_body` writes the bytes `to_json` gives: the property test holds the
    three to it. Absent columns read as empty cells, which is what the model's defaults amount to.

    `width` is the number of cells of a row, when known: a row that holds just the fields, in their
    order (as most exports do), is used as it is, without picking its cells one by one. A row whose
    numbers are whole and whose awards are spelt as sent (most rows) is its own key, joined.
    """
    names = [field.name for field in table]
    pick = itemgetter(*(positions.get(name, -1) for name in names))
    padded = any(name not in positions for name in names)
    in_order = width == len(names) and all(positions.get(name) == index for index, name in enumerate(names))
    match, respelt = _recognition(tuple(table), max_year)

    def keys(rows: Iterable[Sequence[str]]) -> list[str | None]:
        found: list[str | None] = []
        answer = found.append
        laid_out = rows if in_order else (pick((*cells, "")) for cells in rows) if padded else map(pick, rows)
        for values in laid_out:
            row = '"'.join(values)
            if not row.isprintable() or "\\" in row or "\ufffd" in row or (plain := match(row)) is None:
                answer(None)
            elif plain.lastindex is None:
                answer(row)
            else:
                answer(respelt(values, plain))
        return found

    return keys


@lru_cache(maxsize=8)
def _recognition(table: tuple[Field, ...], max_year: int) -> tuple[Callable[[str], re.Match[str] | None], Respelt]:
    """The match of a plain row and its respelling, made once for a table and a year limit: writing them costs
    ten times as much as the rest of the fast path for a header, and tests ask for one for every example."""
    return plain_row(max_year, table).fullmatch, _respelling(table, max_year)


def _respelling(table: Sequence[Field], max_year: int) -> Respelt:
    """The key of a plain row whose groups caught cells spelt otherwise than their JSON (a decimal, the awards in
    another case): each such cell as its field's rule makes it, so the model's rule is the only statement of
    it; None if the rule refuses it (a decimal out of range), which leaves the row to the model.

    A fifth of the rows of a real export need it: which cells the groups stand for, and how each is respelt, is
    found here once for the table, so a row costs its groups, a copy of its cells and the join."""
    # The row's regex has a group for each of these fields (one at most a field), in their order: the nth group
    # is grouped[n], the field's position among the values and its respelling. (Indexed rather than zipped: a
    # zip with `strict=`, which ruff asks for, makes the call a fifth slower.)
    grouped = tuple(
        (index, _respeller(parse, field.kind.key))
        for index, field in enumerate(table)
        if (parse := _group_parse(field, max_year)) is not None
    )

    def respelt(values: Sequence[str], plain: re.Match[str]) -> str | None:
        cells = list(values)
        for group, caught in enumerate(plain.groups()):
            if caught is not None:
                index, respell = grouped[group]
                spelt = respell(caught)
                if spelt is None:
                    return None
                cells[index] = spelt
        return '"'.join(cells)

    return respelt


def _group_parse(field: Field, max_year: int) -> Callable[[str], object] | None:
    """The rule that spells the cell of the field's group in its plain form; None if there is no group."""
    groups, parse = re.compile(field.plain_form(max_year)).groups, field.parse
    if groups > 1 or (groups and parse is None):
        raise ValueError(f"the plain form of {field.name} must hold one group at most, and then a PlainValidator")
    return parse if groups else None


def _respeller(parse: Callable[[str], object], key: Callable[[Any], str] | None) -> Callable[[str], str | None]:
    @lru_cache(maxsize=_RESPELLINGS_REMEMBERED)
    def respell(cell: str) -> str | None:
        try:
            value = parse(cell)
        except PydanticCustomError:
            return None
        return value if key is None else key(value)  # type: ignore[return-value]

    return respell
