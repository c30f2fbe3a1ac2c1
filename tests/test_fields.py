"""The table of fields: one entry per field, each with a rule the model applies and a plain form the fast path
matches (SPEC sections 2-3). What the model, the key, the body and the fast path make of the film's table is held
in test_schema.py and test_fastpath.py; here, what the table itself promises, and that one more entry is all a
new field takes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from movymporter import fields
from movymporter.fields import (
    CHOICE,
    CONSTRAINT_ERROR,
    FILM,
    INTEGER,
    NUMBER,
    REQUIRED,
    TEXT,
    TEXT_RULE,
    Field,
    digits_between,
)
from movymporter.schema import FIELDS, Contract, Movie, Problem, terms_of, to_json

MAX_YEAR = 2026
CONTRACT = Contract(max_year=MAX_YEAR)


def test_the_film_is_the_fields_of_the_spec_in_json_order() -> None:
    """The table names the sink's ten fields in the order of the JSON body, and only title and year are required."""
    assert [field.name for field in FILM] == [
        "year", "length", "title", "subject", "actor", "actress", "director", "popularity", "awards", "image",
    ]  # fmt: skip
    assert {field.name for field in FILM if field.required} == {"title", "year"}
    assert {field.name for field in FILM if field.default is REQUIRED} == {"title", "year"}


@pytest.mark.parametrize("field", FILM, ids=lambda field: field.name)
def test_each_plain_form_has_one_group_at_most_and_then_a_parse_rule(field: Field) -> None:
    """A plain form compiles, holds no '"' (the fast path's separator) and at most one group, the cells spelt
    otherwise than their JSON, which the field's PlainValidator then spells. An absent column reads as an empty
    cell: a required field's form does not match one, an optional field's only if the model makes it the default."""
    form = field.plain_form(MAX_YEAR)
    groups = re.compile(form).groups
    assert groups <= 1
    assert '"' not in form.replace('[^"]', "")
    if groups:
        assert field.parse is not None
    if field.required:
        assert re.fullmatch(form, "") is None, "an absent column reads as an empty cell, which a required field lacks"
    elif re.fullmatch(form, ""):
        empty = CONTRACT.validate({"title": "Heat", "year": "1995", field.name: ""})
        assert getattr(empty, field.name) == field.default, "an empty cell is not what an absent column stands for"


@pytest.mark.parametrize("name", ["", "1st", "class", "_hidden", "a-b", "a b", "a.b"])
def test_a_field_name_must_be_a_plain_identifier(name: str) -> None:
    """A name is the model's attribute (`movie.year`): one that is not a plain identifier is refused when the
    table is made."""
    with pytest.raises(ValueError, match="plain identifier"):
        Field(name, TEXT, (TEXT_RULE,), "", "")


def test_parse_is_the_plain_validators_function() -> None:
    """`parse` is what the model applies to a cell (the fast path asks it how a group's cell is spelt)."""
    awards = next(field for field in FILM if field.name == "awards")
    assert next(rule for rule in awards.rules if isinstance(rule, PlainValidator)).func is awards.parse
    assert next(field for field in FILM if field.name == "title").parse is None


REMEMBERING_RULES = ("_year_of", "_length_of", "_popularity_of", "_awards_of")


def test_the_rules_remember_short_valid_cells_only() -> None:
    """A valid cell padded far past any real value gets the same answer as its short spelling, and the rules'
    memory keeps the short spellings only: a file of huge cells cannot make it grow."""
    for name in REMEMBERING_RULES:
        getattr(fields, name).cache_clear()
    pad = " " * 10_000
    padded = {"title": "Heat", "year": pad + "1995", "length": "0" * 10_000 + "90", "popularity": "7" + pad}
    short = {"title": "Heat", "year": "1995", "length": "90", "popularity": "7"}
    long_movie = Contract().validate({**padded, "awards": "yes" + pad})
    assert [getattr(fields, name).cache_info().currsize for name in REMEMBERING_RULES] == [0, 0, 0, 0]
    short_movie = Contract().validate({**short, "awards": "yes"})
    assert [getattr(fields, name).cache_info().currsize for name in REMEMBERING_RULES] == [1, 1, 1, 1]
    assert isinstance(long_movie, Movie)
    assert isinstance(short_movie, Movie)
    assert to_json(long_movie) == to_json(short_movie)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        pytest.param(1888, MAX_YEAR, id="the-years-of-cinema"),
        pytest.param(1888, 1888, id="a-single-year"),
        pytest.param(1888, 9999, id="up-to-the-last-four-digit-year"),
        pytest.param(1900, 1999, id="a-whole-century"),
        pytest.param(1888, 2000, id="ending-on-a-round-year"),
        pytest.param(1999, 2001, id="across-a-millennium"),
        pytest.param(2020, 2019, id="an-empty-range-matches-nothing"),
    ],
)
def test_the_year_pattern_matches_exactly_the_range(low: int, high: int) -> None:
    """digits_between's regex matches every 4-digit spelling from low to high and nothing else."""
    pattern = re.compile(digits_between(low, high, 4))
    assert [year for year in range(10_000) if pattern.fullmatch(f"{year:04d}")] == list(range(low, high + 1))


def test_the_plain_year_is_the_contracts_range_in_four_digits() -> None:
    """The year's plain form covers the contract's years, and stops at 9999 whatever the limit."""
    year = FILM[0]
    assert year.plain_form(MAX_YEAR) == digits_between(fields.FIRST_YEAR, MAX_YEAR, 4)
    assert year.plain_form(12_000) == digits_between(fields.FIRST_YEAR, 9999, 4)


# --- adding a field ----------------------------------------------------------------------------------------------


def _rule(name: str, spellings: dict[str, Any]) -> PlainValidator:
    """A test field's rule: a cell (trimmed, any case) is one of `spellings`' keys, and stands for its value."""

    def parse(value: Any) -> Any:
        text = str(value).strip()
        if text.lower() not in spellings:
            message = f"{name} must be one of {', '.join(spellings)}"
            raise PydanticCustomError(CONSTRAINT_ERROR, message + f", got {text!r}", {"rule": message})
        return spellings[text.lower()]

    return PlainValidator(parse)


COLOUR = _rule("colour", {"": "", "colour": "Colour", "bw": "BW"})
BUDGET = _rule("budget", {"": None, "7": 7, "12.5": 12.5, "12.50": 12.5})
RANK = _rule("rank", {str(rank): rank for rank in range(1, 11)})
EXTRA_FIELDS = [
    pytest.param(
        Field("country", TEXT, (TEXT_RULE,), r'(?! )[^"]*+(?<! )', ""),
        "Côte d'Ivoire",
        "Côte d'Ivoire",
        "a\x07",
        id="text",
    ),
    pytest.param(Field("budget", NUMBER, (BUDGET,), r"7|(12\.50?)|", None), "12.50", 12.5, "-3", id="number-respelt"),
    pytest.param(Field("colour", CHOICE, (COLOUR,), r"Colour|BW|([bB][wW])|", ""), "bw", "BW", "sepia", id="choice"),
    pytest.param(Field("rank", INTEGER, (RANK,), r"[1-9]|10"), "7", 7, "0", id="required-integer"),
]
"""A field of each kind: the entry, a plain cell of it, its value, and a cell its rule refuses."""
FULL_ROW = {
    "year": "1995", "length": "170", "title": "Heat", "subject": "Action", "actor": "Pacino, Al",
    "actress": "Judd, Ashley", "director": "Mann, Michael", "popularity": "68.5", "awards": "yes", "image": "heat.png",
}  # fmt: skip
"""A plain row of the film (a decimal and the awards to respell), to which a test adds a field."""


@pytest.mark.parametrize("at", [3, len(FILM)], ids=["after-the-title", "last"])
@pytest.mark.parametrize(("extra", "cell", "value", "refused"), EXTRA_FIELDS)
def test_adding_a_field_is_one_entry_in_the_table(extra: Field, cell: str, value: Any, refused: str, at: int) -> None:
    """The film's table with one more entry gives a model, a record key, a body and a fast path that all carry
    the new field, at its place in the JSON order; a value its rule refuses is a problem of that field, and the
    fast path leaves it to the model."""
    table = (*FILM[:at], extra, *FILM[at:])
    names = [field.name for field in table]
    terms = terms_of(table)
    contract = Contract(max_year=MAX_YEAR, terms=terms)
    row = {**FULL_ROW, extra.name: cell}
    film = contract.validate(row)
    assert isinstance(film, terms.model)
    assert list(terms.model.model_fields) == list(terms.names) == names
    body = to_json(film)
    assert list(json.loads(body)) == names
    assert json.loads(body) == {**json.loads(to_json(CONTRACT.validate(FULL_ROW))), extra.name: value}
    key = terms.record_key(film)
    assert key.split('"')[at] == (str(value) if extra.kind.quoted else json.dumps(value))
    assert terms.plain_body(key) == body

    positions = {name: index for index, name in enumerate(names)}
    cells = [row[name] for name in names]
    assert contract.plain_key(positions, len(cells))(cells) == key
    assert contract.plain_key(positions)([*cells, "notes"]) == key
    assert Contract(max_year=MAX_YEAR, fast_path=False, terms=terms).plain_key(positions, len(cells))(cells) is None

    [problem] = contract.validate({**row, extra.name: refused})
    assert (problem.code, problem.field) == (CONSTRAINT_ERROR, extra.name)
    assert (
        contract.plain_key(positions, len(cells))([refused if name == extra.name else row[name] for name in names])
        is None
    )


@pytest.mark.parametrize(("extra", "cell", "value", "refused"), EXTRA_FIELDS)
def test_an_added_field_without_its_column_takes_its_default_or_is_required(
    extra: Field, cell: str, value: Any, refused: str
) -> None:
    """A row of a header without the new column gets the field's default, on the fast path as in the model, or
    is refused for lacking it when the field has no default."""
    terms = terms_of((*FILM, extra))
    contract = Contract(max_year=MAX_YEAR, terms=terms)
    positions = {name: index for index, name in enumerate(FIELDS)}
    cells = list(FULL_ROW.values())
    result = contract.validate(FULL_ROW)
    if extra.required:
        assert result == [
            Problem(CONSTRAINT_ERROR, extra.name, f"{extra.name} is required", f"{extra.name} is required")
        ]
        assert contract.plain_key(positions, len(cells))(cells) is None
    else:
        assert isinstance(result, terms.model)
        assert getattr(result, extra.name) == extra.default
        assert contract.plain_key(positions, len(cells))(cells) == terms.record_key(result)
    assert extra.name not in FIELDS, "the film's own terms changed"
    assert extra.name not in Movie.model_fields
