"""The data contract: Contract.validate on rows of strings, to_json, column_positions (SPEC sections 2-3)."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from typing import Any

import pytest

from movymporter.errors import InputError
from movymporter.fields import FILM
from movymporter.schema import (
    FIELDS,
    REQUIRED_COLUMNS,
    TERMS,
    Contract,
    Movie,
    Problem,
    column_positions,
    plain_body,
    record_key,
    to_json,
)
from movymporter.sink.contract import accept

MAX_YEAR = 2026
CONTRACT = Contract(max_year=MAX_YEAR)
VALID = {"title": "Heat", "year": "1995"}
TEXT_FIELDS = ("title", "subject", "actor", "actress", "director", "image")
IMAGE_RULE = "image must be a file name ending in .png, .jpg, .jpeg (lower case)"


HEAT_WITH_DEFAULTS = {
    "year": 1995,
    "length": None,
    "title": "Heat",
    "subject": "",
    "actor": "",
    "actress": "",
    "director": "",
    "popularity": None,
    "awards": "",
    "image": "",
}
"""A film with only title and year: every other field takes its empty value (null for numbers)."""


def validate(**fields: str) -> Movie | list[Problem]:
    """Validate a valid row with the given fields replaced."""
    return CONTRACT.validate({**VALID, **fields})


def movie(**fields: str) -> Movie:
    result = validate(**fields)
    assert isinstance(result, Movie), f"expected a Movie, got {result}"
    return result


def problems(**fields: str) -> list[Problem]:
    result = validate(**fields)
    assert isinstance(result, list), f"expected problems, got {result!r}"
    return result


ACCEPTED = [
    pytest.param("year", "1990", 1990, id="year-whole-number"),
    pytest.param("year", "1888", 1888, id="year-1888-inclusive"),
    pytest.param("year", str(MAX_YEAR), MAX_YEAR, id="year-max-year-inclusive"),
    pytest.param("year", " 1990 ", 1990, id="year-trimmed"),
    pytest.param("year", "+1990", 1990, id="year-with-plus-sign-accepted"),
    pytest.param("year", "01990", 1990, id="year-with-leading-zero-accepted"),
    pytest.param("title", " Heat ", "Heat", id="title-trimmed"),
    pytest.param("title", "Heat\tII\nThe Return", "Heat\tII\nThe Return", id="title-tab-and-newline-allowed"),
    pytest.param("title", "Amélie — 天国", "Amélie — 天国", id="title-non-ascii-allowed"),
    pytest.param("length", "", None, id="length-empty-is-null"),
    pytest.param("length", "   ", None, id="length-spaces-is-null"),
    pytest.param("length", "90", 90, id="length-integer"),
    pytest.param("length", "90.5", 90.5, id="length-decimal"),
    pytest.param("length", " 1e2 ", 100.0, id="length-exponent-trimmed"),
    pytest.param("length", ".5", 0.5, id="length-leading-dot"),
    pytest.param("popularity", "", None, id="popularity-empty-is-null"),
    pytest.param("popularity", "0", 0, id="popularity-0-inclusive"),
    pytest.param("popularity", "100", 100, id="popularity-100-inclusive"),
    pytest.param("popularity", "68.5", 68.5, id="popularity-decimal"),
    pytest.param("popularity", "100.0", 100.0, id="popularity-100.0-inclusive"),
    pytest.param("awards", "yes", "Yes", id="awards-lower-yes"),
    pytest.param("awards", "YES", "Yes", id="awards-upper-yes"),
    pytest.param("awards", "No", "No", id="awards-no"),
    pytest.param("awards", " nO ", "No", id="awards-mixed-case-trimmed"),
    pytest.param("awards", "", "", id="awards-empty"),
    pytest.param("image", "", "", id="image-empty"),
    pytest.param("image", "a.png", "a.png", id="image-png"),
    pytest.param("image", "a.jpg", "a.jpg", id="image-jpg"),
    pytest.param("image", "a.jpeg", "a.jpeg", id="image-jpeg"),
    pytest.param("image", " dir/a b.png ", "dir/a b.png", id="image-trimmed"),
    pytest.param("subject", " Drama ", "Drama", id="subject-trimmed"),
    pytest.param("actor", "Pacino, Al", "Pacino, Al", id="actor-with-comma"),
    pytest.param("actress", "", "", id="actress-empty"),
    pytest.param("director", " Mann, Michael ", "Mann, Michael", id="director-trimmed"),
]


@pytest.mark.parametrize(("field", "raw", "expected"), ACCEPTED)
def test_accepted_value(field: str, raw: str, expected: Any) -> None:
    """A value the contract accepts becomes the given Python value of that field, with the same type."""
    value = getattr(movie(**{field: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("field", "raw", "expected"), ACCEPTED)
def test_accepted_row_is_accepted_by_the_sink(field: str, raw: str, expected: Any) -> None:
    """Every row the contract accepts is a body the sink's own reading of the contract accepts too."""
    stored = accept(to_json(movie(**{field: raw})), MAX_YEAR)
    assert stored[field] == (0 if expected is None else expected)  # the sink stores null as zero


REFUSED = [
    pytest.param("year", "1990.0", "type-error", "year must be a whole number", id="year-decimal-is-type-error"),
    pytest.param("year", "1_990", "type-error", "year must be a whole number", id="year-underscore-is-type-error"),
    pytest.param("year", "1e3", "type-error", "year must be a whole number", id="year-exponent-is-type-error"),
    pytest.param("year", "MCMXC", "type-error", "year must be a whole number", id="year-text-is-type-error"),
    pytest.param("year", "１９９０", "type-error", "year must be a whole number", id="year-non-ascii-digits"),
    pytest.param("year", "1887", "constraint-error", "year must be from 1888 to 2026", id="year-before-1888"),
    pytest.param("year", "2027", "constraint-error", "year must be from 1888 to 2026", id="year-after-max-year"),
    pytest.param("year", "-1990", "constraint-error", "year must be from 1888 to 2026", id="year-negative"),
    pytest.param("year", "", "constraint-error", "year is required", id="year-empty-is-required"),
    pytest.param("year", "   ", "constraint-error", "year is required", id="year-spaces-is-required"),
    pytest.param("title", "", "constraint-error", "title is required", id="title-empty-is-required"),
    pytest.param("title", "   ", "constraint-error", "title is required", id="title-spaces-is-required"),
    pytest.param("length", "0", "constraint-error", "length must be a positive number", id="length-zero"),
    pytest.param("length", "0.0", "constraint-error", "length must be a positive number", id="length-zero-decimal"),
    pytest.param("length", "-1", "constraint-error", "length must be a positive number", id="length-negative"),
    pytest.param("length", "1e400", "constraint-error", "length must be a finite number", id="length-overflows-float"),
    pytest.param("length", "nan", "type-error", "length must be a number", id="length-nan"),
    pytest.param("length", "inf", "type-error", "length must be a number", id="length-inf"),
    pytest.param("length", "1_0", "type-error", "length must be a number", id="length-underscore"),
    pytest.param("length", "90 min", "type-error", "length must be a number", id="length-with-unit"),
    pytest.param("popularity", "100.5", "constraint-error", "popularity must be from 0 to 100", id="popularity-above"),
    pytest.param("popularity", "-0.5", "constraint-error", "popularity must be from 0 to 100", id="popularity-below"),
    pytest.param(
        "popularity",
        "7,5",
        "type-error",
        "popularity must be a number (use a dot as the decimal separator)",
        id="popularity-decimal-comma-hint",
    ),
    pytest.param("popularity", "NaN", "type-error", "popularity must be a number", id="popularity-nan"),
    pytest.param("popularity", "Infinity", "type-error", "popularity must be a number", id="popularity-infinity"),
    pytest.param(
        "popularity", "1e400", "constraint-error", "popularity must be a finite number", id="popularity-overflows-float"
    ),
    pytest.param(
        "awards", "Maybe", "constraint-error", "awards must be Yes, No (any case) or empty", id="awards-maybe"
    ),
    pytest.param("awards", "true", "constraint-error", "awards must be Yes, No (any case) or empty", id="awards-true"),
    pytest.param("image", "a.PNG", "constraint-error", IMAGE_RULE, id="image-upper-case-ext"),
    pytest.param("image", ".png", "constraint-error", IMAGE_RULE, id="image-no-name"),
    pytest.param("image", "a.gif", "constraint-error", IMAGE_RULE, id="image-gif"),
    pytest.param("image", "a.png.gif", "constraint-error", IMAGE_RULE, id="image-png-not-last"),
    pytest.param("image", "apng", "constraint-error", IMAGE_RULE, id="image-no-dot"),
]


@pytest.mark.parametrize(("field", "raw", "code", "message"), REFUSED)
def test_refused_value(field: str, raw: str, code: str, message: str) -> None:
    """A value breaking a rule gives exactly one problem: its code, its field, and a plain message."""
    [problem] = problems(**{field: raw})
    assert (problem.code, problem.field) == (code, field)
    assert problem.message.startswith(message)
    assert str(problem) == f"{code}: {problem.message}"


@pytest.mark.parametrize(("field", "raw", "code", "message"), REFUSED)
def test_rule_holds_no_value(field: str, raw: str, code: str, message: str) -> None:
    """Problem.rule is the message without the offending value, so rows can be counted by reason."""
    [problem] = problems(**{field: raw})
    assert problem.rule == message
    shown = problem.message.removeprefix(problem.rule)
    if raw.strip():
        assert shown.startswith(", got ")  # the value is shown after the rule, in the message only
        assert raw.strip() in shown
    else:
        assert shown == ""


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        pytest.param("year", "1887", "3000", id="year-out-of-range"),
        pytest.param("year", "1990.0", "x", id="year-not-whole"),
        pytest.param("length", "0", "-5", id="length-not-positive"),
        pytest.param("popularity", "101", "-1", id="popularity-out-of-range"),
        pytest.param("image", "a.gif", "b.PNG", id="image-bad-extension"),
        pytest.param("title", "a\x07", "b\x1b", id="control-character"),
    ],
)
def test_different_bad_values_share_one_rule(field: str, first: str, second: str) -> None:
    """Two different values breaking the same rule give the same rule (and different messages)."""
    [one] = problems(**{field: first})
    [two] = problems(**{field: second})
    assert one.rule == two.rule
    assert one.message != two.message


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize(
    ("char", "code", "message"),
    [
        pytest.param("\x07", "constraint-error", "contains a control character (U+0007)", id="bell"),
        pytest.param("\x00", "constraint-error", "contains a control character (U+0000)", id="nul"),
        pytest.param("\x1b", "constraint-error", "contains a control character (U+001B)", id="escape"),
        pytest.param("\x7f", "constraint-error", "contains a control character (U+007F)", id="delete"),
        pytest.param("\x85", "constraint-error", "contains a control character (U+0085)", id="c1-next-line"),
        pytest.param("\ufffd", "encoding-error", "contains U+FFFD", id="replacement-character"),
        pytest.param("\udcff", "encoding-error", "is not valid text", id="undecodable-byte-from-reader"),
    ],
)
def test_bad_character_in_any_text_field(field: str, char: str, code: str, message: str) -> None:
    """A control character, U+FFFD or an undecoded byte inside any text field is refused with its code."""
    value = f"a{char}b.png" if field == "image" else f"a{char}b"
    [problem] = problems(**{field: value})
    assert (problem.code, problem.field) == (code, field)
    assert problem.message.startswith(f"{field} {message}")
    assert char not in problem.rule


@pytest.mark.parametrize("field", TEXT_FIELDS[:5])
@pytest.mark.parametrize("char", ["\t", "\n"], ids=["tab", "newline"])
def test_tab_and_newline_are_allowed_in_text(field: str, char: str) -> None:
    """Tab and newline are the control characters text may hold."""
    assert getattr(movie(**{field: f"a{char}b"}), field) == f"a{char}b"


def test_every_failing_field_is_reported() -> None:
    """A row with three bad fields reports all three problems, in field order."""
    found = problems(year="x", length="0", popularity="101", awards="Maybe", title=" ")
    assert [(p.field, p.code) for p in found] == [
        ("year", "type-error"),
        ("length", "constraint-error"),
        ("title", "constraint-error"),
        ("popularity", "constraint-error"),
        ("awards", "constraint-error"),
    ]
    found = problems(year="1990.0", subject="\x07", image="a.gif")
    assert {p.field for p in found} == {"year", "subject", "image"}


@pytest.mark.parametrize(
    ("row", "fields"),
    [
        pytest.param({"year": "1995"}, ["title"], id="title-column-absent"),
        pytest.param({"title": "Heat"}, ["year"], id="year-column-absent"),
        pytest.param({}, ["year", "title"], id="both-absent"),
    ],
)
def test_absent_required_value_is_required(row: dict[str, str], fields: list[str]) -> None:
    """A row without a title or year key is refused with 'is required' for each."""
    found = CONTRACT.validate(row)
    assert isinstance(found, list)
    assert [(p.field, p.code, p.message) for p in found] == [
        (f, "constraint-error", f"{f} is required") for f in fields
    ]


def test_unknown_keys_are_ignored_and_absent_optional_fields_default() -> None:
    """Keys outside the contract are ignored; absent optional fields take empty/null values."""
    result = CONTRACT.validate({"title": "Heat", "year": "1995", "budget": "60M", "line": "7"})
    assert isinstance(result, Movie)
    assert result.model_dump() == HEAT_WITH_DEFAULTS


def test_default_max_year_is_the_current_year() -> None:
    """Contract() without max_year accepts this year and refuses the next one."""
    this_year = dt.date.today().year
    contract = Contract()
    assert contract.max_year == this_year
    assert isinstance(contract.validate({"title": "Heat", "year": str(this_year)}), Movie)
    refused = contract.validate({"title": "Heat", "year": str(this_year + 1)})
    assert isinstance(refused, list)
    assert refused[0].rule == f"year must be from 1888 to {this_year}"


def test_integer_length_beyond_float_range_is_refused() -> None:
    """A length written as an integer too big for a float is refused like 1e400."""
    [problem] = problems(length="1" + "0" * 309)
    assert (problem.field, problem.rule) == ("length", "length must be a finite number")


@pytest.mark.parametrize("field", ["length", "popularity"])
def test_a_number_padded_with_thousands_of_zeros_is_that_number(field: str) -> None:
    """Leading zeros do not count against Python's 4300-digit limit for int(): 000...07 is 7."""
    movie = Contract().validate({"title": "Heat", "year": "1995", field: "0" * 5000 + "7"})
    assert isinstance(movie, Movie)
    assert getattr(movie, field) == 7


@pytest.mark.parametrize("field", ["year", "length", "popularity"])
def test_very_long_number_gets_a_plain_message(field: str) -> None:
    """A 5000-digit number is refused with the field's own plain rule, not a Python internals message."""
    [problem] = problems(**{field: "9" * 5000})
    assert problem.field == field
    assert problem.rule.startswith(f"{field} must be")
    assert "4300" not in problem.message


# --- to_json ------------------------------------------------------------------------------------


def test_to_json_is_the_body_the_sink_expects() -> None:
    """to_json gives the fields in contract order, trimmed, ints as ints, awards normalised."""
    full = movie(
        title=" Heat ",
        year="1995",
        length="170",
        subject="Action",
        actor="Pacino, Al",
        actress="Judd, Ashley",
        director="Mann, Michael",
        popularity="68.5",
        awards="yes",
        image="heat.png",
    )
    assert to_json(full) == (
        b'{"year":1995,"length":170,"title":"Heat","subject":"Action","actor":"Pacino, Al",'
        b'"actress":"Judd, Ashley","director":"Mann, Michael","popularity":68.5,"awards":"Yes","image":"heat.png"}'
    )
    assert list(json.loads(to_json(full))) == list(FIELDS)


def test_to_json_sends_null_for_empty_numbers() -> None:
    """Empty length and popularity are sent as null; empty text as empty strings."""
    body = json.loads(to_json(movie()))
    assert body == HEAT_WITH_DEFAULTS


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"length": "90", "popularity": "7"}, b'"length":90,', id="integers-stay-integers"),
        pytest.param({"length": "90.0"}, b'"length":90.0,', id="decimal-stays-decimal"),
        pytest.param({"awards": "NO"}, b'"awards":"No"', id="awards-normalised"),
        pytest.param({"title": "Amélie"}, '"title":"Amélie"'.encode(), id="utf8-not-escaped"),
        pytest.param({"title": 'Say "hi"\n'}, b'"title":"Say \\"hi\\""', id="quotes-escaped-newline-trimmed"),
    ],
)
def test_to_json_spelling(fields: dict[str, str], expected: bytes) -> None:
    """to_json spells numbers and text the way the sink decodes them."""
    assert expected in to_json(movie(**fields))


def test_equal_rows_give_equal_json() -> None:
    """Rows differing only in spacing and awards case give identical bodies (so duplicates are found)."""
    assert to_json(movie(title=" Heat", awards="YES")) == to_json(movie(title="Heat ", awards="yes"))


# --- column_positions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["title", "year"], {"title": 0, "year": 1}, id="required-only"),
        pytest.param(
            ["year", "length", "title", "subject", "actor", "actress", "director", "popularity", "awards", "image"],
            {name: index for index, name in enumerate(FIELDS)},
            id="classic-film-columns",
        ),
        pytest.param(["id", "year", "budget", "title", ""], {"year": 1, "title": 3}, id="unknown-columns-ignored"),
        pytest.param(
            ["line", "stage", "reason", "title", "year"], {"title": 3, "year": 4}, id="report-columns-ignored"
        ),
    ],
)
def test_column_positions(names: list[str], expected: dict[str, int]) -> None:
    """column_positions maps each contract field to its column index, ignoring other columns."""
    assert column_positions(names) == expected


@pytest.mark.parametrize(
    ("names", "match"),
    [
        pytest.param(["year", "length"], r"required column title not found", id="title-missing"),
        pytest.param(["title", "length"], r"required column year not found", id="year-missing"),
        pytest.param(["length", "image"], r"required columns title and year not found", id="both-missing"),
        pytest.param([], r"columns found: none", id="no-columns"),
        pytest.param(["title", "year", "title"], r"'title' appears twice \(columns 1 and 3\)", id="title-doubled"),
        pytest.param(
            ["title", "image", "year", "image"], r"'image' appears twice \(columns 2 and 4\)", id="image-doubled"
        ),
    ],
)
def test_column_positions_refuses_unusable_header(names: list[str], match: str) -> None:
    """A missing required column or a doubled column is an InputError naming it."""
    with pytest.raises(InputError, match=match):
        column_positions(names)


def test_missing_column_message_lists_the_columns_found() -> None:
    """The missing-column message lists what the header had and how names are matched."""
    with pytest.raises(InputError) as caught:
        column_positions(["titel", "jahr"])
    message = str(caught.value)
    assert "columns found: 'titel', 'jahr'" in message
    assert "ignoring case, spaces and a leading '*'" in message


# --- the contract from its table of fields ---------------------------------------------------------------------


def test_the_model_is_the_table() -> None:
    """The model's fields, FIELDS and the JSON order are the table's, and a field without a default is required."""
    assert list(Movie.model_fields) == list(FIELDS) == [field.name for field in FILM]
    assert {name for name, field in Movie.model_fields.items() if field.is_required()} == set(REQUIRED_COLUMNS)
    assert TERMS.model is Movie
    assert (TERMS.record_key, TERMS.plain_body) == (record_key, plain_body)


def test_a_contract_and_its_movies_pickle() -> None:
    """A contract (and a movie) survive pickling, as they must to be judged in a worker process; the film's
    terms go by name, so the model on the other side is the same class."""
    contract = Contract(max_year=MAX_YEAR, fast_path=False)
    copy = pickle.loads(pickle.dumps(contract))
    assert (copy.max_year, copy.fast_path) == (MAX_YEAR, False)
    assert copy.terms is TERMS
    heat = copy.validate({**VALID, "length": "170.5"})
    assert isinstance(heat, Movie)
    assert pickle.loads(pickle.dumps(heat)) == heat == CONTRACT.validate({**VALID, "length": "170.5"})
