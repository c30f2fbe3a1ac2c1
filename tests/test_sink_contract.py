"""The sink's film contract (SPEC section 2), rule by rule, without a process."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from movymporter.sink.contract import STR_FIELDS, Film, Rejected, accept, check_film, decode_film

CURRENT_YEAR = dt.date.today().year
ZERO_FILM: Film = {
    "year": 0,
    "length": 0.0,
    "title": "",
    "subject": "",
    "actor": "",
    "actress": "",
    "director": "",
    "popularity": 0.0,
    "awards": "",
    "image": "",
}
VALID: dict[str, Any] = {"title": "Heat", "year": 1995}


def body(**fields: object) -> bytes:
    """A JSON body: a valid film with the given fields replaced."""
    return json.dumps({**VALID, **fields}).encode()


def raw(fields: str) -> bytes:
    """A JSON body written by hand (for number spellings json.dumps cannot produce), after a valid title and year."""
    return ('{"title": "Heat", "year": 1995, ' + fields + "}").encode()


def film(**fields: object) -> Film:
    """A decoded film: the zero film, made valid, with the given fields replaced."""
    return {**ZERO_FILM, **VALID, **fields}


def reason_of(call: Callable[[], object]) -> str:
    """The one-line reason of the Rejected that call raises."""
    with pytest.raises(Rejected) as info:
        call()
    reason = str(info.value)
    assert reason, "a 400 needs a reason"
    assert "\n" not in reason, f"the reason must be one line: {reason!r}"
    return reason


# --- JSON types


@pytest.mark.parametrize(
    ("payload", "field", "expected"),
    [
        pytest.param(raw('"length": 120'), "length", 120.0, id="length-integer-is-a-number"),
        pytest.param(raw('"length": 90.5'), "length", 90.5, id="length-fraction-is-a-number"),
        pytest.param(raw('"popularity": 5e1'), "popularity", 50.0, id="popularity-exponent-is-a-number"),
        pytest.param(raw('"popularity": -0'), "popularity", 0.0, id="popularity-negative-zero-is-a-number"),
        pytest.param(b'{"year": 1997}', "year", 1997, id="year-integer-is-an-int"),
        pytest.param(b'{"year": -0}', "year", 0, id="year-negative-zero-integer-is-an-int"),
        pytest.param(b'{"year": 9223372036854775807}', "year", 2**63 - 1, id="year-int64-max-decodes"),
        pytest.param(body(title="Alien"), "title", "Alien", id="title-string-is-a-string"),
        pytest.param(body(director=""), "director", "", id="empty-string-is-a-string"),
    ],
)
def test_decode_accepts_the_right_json_type(payload: bytes, field: str, expected: object) -> None:
    """A value of the field's JSON type decodes to the field's Python type."""
    decoded = decode_film(payload)
    assert decoded[field] == expected
    assert type(decoded[field]) is type(expected)


WRONG_TYPES = [
    pytest.param(
        b'{"year": "1997"}', "cannot unmarshal string into field year of type int", id="year-as-string-is-400"
    ),
    pytest.param(b'{"year": 1997.5}', "cannot unmarshal number into field year of type int", id="year-fraction-is-400"),
    pytest.param(b'{"year": 1997.0}', "cannot unmarshal number into field year", id="year-zero-fraction-is-400"),
    pytest.param(b'{"year": 1e3}', "cannot unmarshal number into field year of type int", id="year-exponent-is-400"),
    pytest.param(b'{"year": true}', "cannot unmarshal bool into field year of type int", id="year-as-bool-is-400"),
    pytest.param(b'{"year": [1997]}', "cannot unmarshal array into field year", id="year-as-array-is-400"),
    pytest.param(b'{"year": {}}', "cannot unmarshal object into field year", id="year-as-object-is-400"),
    pytest.param(b'{"year": 9223372036854775808}', "overflows field year", id="year-beyond-int64-is-400"),
    pytest.param(
        b'{"length": "90"}', "cannot unmarshal string into field length of type float64", id="length-as-string-is-400"
    ),
    pytest.param(b'{"length": false}', "cannot unmarshal bool into field length", id="length-as-bool-is-400"),
    pytest.param(
        b'{"popularity": "5"}', "cannot unmarshal string into field popularity", id="popularity-as-string-is-400"
    ),
    pytest.param(
        b'{"popularity": true}', "cannot unmarshal bool into field popularity", id="popularity-as-bool-is-400"
    ),
    pytest.param(
        b'{"popularity": [5]}', "cannot unmarshal array into field popularity", id="popularity-as-array-is-400"
    ),
    pytest.param(
        b'{"title": true}', "cannot unmarshal bool into field title of type string", id="title-as-bool-is-400"
    ),
    pytest.param(b'{"title": ["Heat"]}', "cannot unmarshal array into field title", id="title-as-array-is-400"),
    pytest.param(
        b'{"image": {"src": "a.png"}}', "cannot unmarshal object into field image", id="image-as-object-is-400"
    ),
    *(
        pytest.param(
            f'{{"{name}": 1}}'.encode(),
            f"cannot unmarshal number into field {name} of type string",
            id=f"{name}-as-number-is-400",
        )
        for name in STR_FIELDS
    ),
]


@pytest.mark.parametrize(("payload", "reason"), WRONG_TYPES)
def test_decode_refuses_a_value_of_the_wrong_json_type(payload: bytes, reason: str) -> None:
    """A value of the wrong JSON type is a 400 naming the field and the types."""
    assert reason in reason_of(lambda: decode_film(payload))


# --- missing fields and null


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"{}", id="empty-object-gives-zero-values"),
        pytest.param(json.dumps(dict.fromkeys(ZERO_FILM)).encode(), id="every-field-null-gives-zero-values"),
        pytest.param(b"null", id="null-body-gives-zero-values"),
    ],
)
def test_missing_or_null_fields_take_the_zero_value(payload: bytes) -> None:
    """A missing field or null leaves the zero value: 0 for numbers, "" for strings."""
    decoded = decode_film(payload)
    assert decoded == ZERO_FILM
    assert type(decoded["year"]) is int
    assert type(decoded["length"]) is float
    assert type(decoded["popularity"]) is float


def test_null_optional_fields_pass_as_zero_values() -> None:
    """A null popularity or image stays at the zero value and passes validation."""
    decoded = accept(body(popularity=None, image=None, awards=None), CURRENT_YEAR)
    assert (decoded["popularity"], decoded["image"], decoded["awards"]) == (0.0, "", "")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b'{"year": 1995}', "title is empty", id="missing-title-is-400"),
        pytest.param(b'{"title": null, "year": 1995}', "title is empty", id="null-title-is-400"),
        pytest.param(b'{"title": "Heat"}', "year 0 is outside", id="missing-year-is-400"),
        pytest.param(b'{"title": "Heat", "year": null}', "year 0 is outside", id="null-year-is-400"),
    ],
)
def test_zero_values_still_face_validation(payload: bytes, reason: str) -> None:
    """The zero value of a required field (title, year) is then refused by validation."""
    assert reason in reason_of(lambda: accept(payload, CURRENT_YEAR))


# --- keys


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            b'{"TITLE": "Heat", "Year": 1995, "PoPuLaRiTy": 7}',
            film(popularity=7.0),
            id="keys-match-case-insensitively",
        ),
        pytest.param(
            b'{"title": "Heat", "year": 1995, "rating": "R", "extra": [1, {"a": null}], "Year2": "x"}',
            film(),
            id="unknown-keys-are-ignored-whatever-their-type",
        ),
        pytest.param(b'{"title": "Heat", "year": 1995, "imdb": "\xff"}', film(), id="unknown-key-invalid-utf8-ignored"),
    ],
)
def test_keys_match_like_go_struct_fields(payload: bytes, expected: Film) -> None:
    """Keys match field names case-insensitively and unknown keys are ignored."""
    assert accept(payload, CURRENT_YEAR) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b'{"YEAR": "1995"}', "into field year of type int", id="upper-case-key-still-type-checked"),
        pytest.param(b'{"Title": 5}', "into field title of type string", id="capitalised-key-still-type-checked"),
    ],
)
def test_case_insensitive_keys_are_still_type_checked(payload: bytes, reason: str) -> None:
    """A key matched case-insensitively is held to its field's JSON type."""
    assert reason in reason_of(lambda: decode_film(payload))


# --- validation rules

RULE_PASSES = [
    pytest.param({"title": "Heat"}, CURRENT_YEAR, id="title-non-empty-passes"),
    pytest.param({"title": " "}, CURRENT_YEAR, id="title-single-space-is-not-empty"),
    pytest.param({"year": 1888}, CURRENT_YEAR, id="year-1888-passes"),
    pytest.param({"year": CURRENT_YEAR}, CURRENT_YEAR, id="year-current-year-passes"),
    pytest.param({"year": 1999}, 1999, id="year-equal-to-given-current-year-passes"),
    pytest.param({"popularity": 0.0}, CURRENT_YEAR, id="popularity-0-passes"),
    pytest.param({"popularity": 100.0}, CURRENT_YEAR, id="popularity-100-passes"),
    pytest.param({"popularity": 55.5}, CURRENT_YEAR, id="popularity-fraction-passes"),
    pytest.param({"awards": ""}, CURRENT_YEAR, id="awards-empty-passes"),
    pytest.param({"awards": "Yes"}, CURRENT_YEAR, id="awards-Yes-passes"),
    pytest.param({"awards": "No"}, CURRENT_YEAR, id="awards-No-passes"),
    pytest.param({"image": ""}, CURRENT_YEAR, id="image-empty-passes"),
    pytest.param({"image": "a.png"}, CURRENT_YEAR, id="image-png-passes"),
    pytest.param({"image": "a.jpg"}, CURRENT_YEAR, id="image-jpg-passes"),
    pytest.param({"image": "a.jpeg"}, CURRENT_YEAR, id="image-jpeg-passes"),
    pytest.param({"image": "posters/heat.v2.png"}, CURRENT_YEAR, id="image-path-with-dots-passes"),
    pytest.param({"title": "Amélie", "actor": "千と千尋"}, CURRENT_YEAR, id="non-ascii-text-passes"),
    pytest.param({"subject": "🎬 Drama"}, CURRENT_YEAR, id="astral-character-passes"),
]


@pytest.mark.parametrize(("fields", "current_year"), RULE_PASSES)
def test_check_film_passes_films_within_the_rules(fields: dict[str, object], current_year: int) -> None:
    """A film inside every rule passes check_film, and accept returns it unchanged."""
    check_film(film(**fields), current_year)
    assert accept(body(**fields), current_year) == film(**fields)


RULE_FAILURES = [
    pytest.param({"title": ""}, CURRENT_YEAR, "title is empty", id="title-empty-is-400"),
    pytest.param({"year": 1887}, CURRENT_YEAR, f"year 1887 is outside 1888..{CURRENT_YEAR}", id="year-1887-is-400"),
    pytest.param(
        {"year": CURRENT_YEAR + 1},
        CURRENT_YEAR,
        f"year {CURRENT_YEAR + 1} is outside 1888..{CURRENT_YEAR}",
        id="year-after-current-year-is-400",
    ),
    pytest.param({"year": 2000}, 1999, "year 2000 is outside 1888..1999", id="year-after-given-current-year-is-400"),
    pytest.param({"year": -1995}, CURRENT_YEAR, "year -1995 is outside", id="year-negative-is-400"),
    pytest.param(
        {"popularity": -0.5}, CURRENT_YEAR, "popularity -0.5 is outside 0..100", id="popularity-below-0-is-400"
    ),
    pytest.param(
        {"popularity": 100.01}, CURRENT_YEAR, "popularity 100.01 is outside 0..100", id="popularity-above-100-is-400"
    ),
    *(
        pytest.param(
            {"awards": value},
            CURRENT_YEAR,
            f'awards {json.dumps(value)} is not one of "", "Yes", "No"',
            id=f"awards-{value.strip() or 'blank'}{'-padded' if value != value.strip() else ''}-is-400",
        )
        for value in ("yes", "YES", "no", "NO", "Y", "true", " Yes", "No ", " ")
    ),
    *(
        pytest.param(
            {"image": value},
            CURRENT_YEAR,
            f"image {json.dumps(value)} does not match .+\\.(png|jpg|jpeg)$",
            id=f"image-{label}-is-400",
        )
        for value, label in [
            (".png", "extension-alone"),
            ("a.PNG", "upper-case-PNG"),
            ("a.Jpg", "mixed-case-Jpg"),
            ("a.png\n", "trailing-newline"),
            ("a.png ", "trailing-space"),
            ("a.gif", "gif"),
            ("a.png.txt", "png-not-last"),
            ("apng", "no-dot"),
            ("a.jpe", "jpe"),
        ]
    ),
    *(
        pytest.param(
            {name: "Heat \ufffd"},
            CURRENT_YEAR,
            f"{name} is not valid UTF-8 or contains U+FFFD",
            id=f"{name}-fffd-is-400",
        )
        for name in STR_FIELDS
    ),
    pytest.param({"director": "Mann \ud800"}, CURRENT_YEAR, "director is not valid UTF-8", id="lone-surrogate-is-400"),
]


@pytest.mark.parametrize(("fields", "current_year", "reason"), RULE_FAILURES)
def test_check_film_refuses_films_outside_the_rules(fields: dict[str, object], current_year: int, reason: str) -> None:
    """A film breaking one rule is refused with a one-line reason naming the field and the rule."""
    assert reason in reason_of(lambda: check_film(film(**fields), current_year))


def test_check_film_reports_one_rule_in_a_fixed_order() -> None:
    """A film breaking several rules gets the reason of the first rule checked (title before year)."""
    reason = reason_of(lambda: check_film(film(title="", year=1000, awards="maybe"), CURRENT_YEAR))
    assert reason == "title is empty"


# --- bytes of the body: UTF-8, surrogates, JSON syntax, number range

ENCODING_FAILURES = [
    pytest.param(b'{"title": "Caf\xe9", "year": 1995}', "title", id="latin1-byte-in-title-is-400"),
    *(
        pytest.param(
            b'{"title": "Heat", "year": 1995, "' + name.encode() + b'": "x\xffy"}', name, id=f"{name}-ff-is-400"
        )
        for name in STR_FIELDS
        if name != "title"
    ),
    pytest.param(b'{"title": "\xe2\x82", "year": 1995}', "title", id="truncated-sequence-is-400"),
    pytest.param(b'{"title": "\xc0\xaf", "year": 1995}', "title", id="overlong-encoding-is-400"),
    pytest.param(b'{"title": "\xed\xa0\x80", "year": 1995}', "title", id="utf8-encoded-surrogate-is-400"),
    pytest.param(b'{"title": "\xef\xbf\xbd", "year": 1995}', "title", id="raw-fffd-is-400"),
    pytest.param(b'{"title": "\\ufffd", "year": 1995}', "title", id="escaped-fffd-is-400"),
    pytest.param(b'{"title": "\\ud800", "year": 1995}', "title", id="lone-high-surrogate-escape-is-400"),
    pytest.param(b'{"title": "\\udfff", "year": 1995}', "title", id="lone-low-surrogate-escape-is-400"),
    pytest.param(b'{"actor": "\\ud83cx", "title": "Heat", "year": 1995}', "actor", id="unpaired-surrogate-is-400"),
    pytest.param(b'{"title": "\\udfac\\ud83c", "year": 1995}', "title", id="reversed-surrogate-pair-is-400"),
]


@pytest.mark.parametrize(("payload", "field"), ENCODING_FAILURES)
def test_accept_refuses_bad_unicode_in_strings(payload: bytes, field: str) -> None:
    """Invalid UTF-8, U+FFFD or a lone surrogate in a string field is a 400 naming that field."""
    assert f"{field} is not valid UTF-8 or contains U+FFFD" in reason_of(lambda: accept(payload, CURRENT_YEAR))


@pytest.mark.parametrize(
    ("payload", "title"),
    [
        pytest.param('{"title": "Amélie", "year": 2001}'.encode(), "Amélie", id="utf8-text-passes"),
        pytest.param(b'{"title": "Am\\u00e9lie", "year": 2001}', "Amélie", id="escaped-bmp-character-passes"),
        pytest.param(b'{"title": "\\ud83c\\udfac", "year": 2001}', "🎬", id="escaped-surrogate-pair-passes"),
        pytest.param(b'{"title": "tab\\there", "year": 2001}', "tab\there", id="escaped-tab-passes"),
    ],
)
def test_accept_passes_valid_unicode(payload: bytes, title: str) -> None:
    """Valid UTF-8 text and well-formed escapes decode to the intended characters."""
    assert accept(payload, CURRENT_YEAR)["title"] == title


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"", "invalid JSON", id="empty-body-is-400"),
        pytest.param(b"   \n", "invalid JSON", id="blank-body-is-400"),
        pytest.param(b'{"title": "Heat"', "invalid JSON", id="unterminated-object-is-400"),
        pytest.param(b"{'title': 'Heat'}", "invalid JSON", id="single-quotes-are-400"),
        pytest.param(b'{"title": "Heat", "year": 1995,}', "invalid JSON", id="trailing-comma-is-400"),
        pytest.param(b'{"title": "Heat", "year": 1995} {}', "invalid JSON", id="trailing-data-is-400"),
        pytest.param(b'\xef\xbb\xbf{"title": "Heat", "year": 1995}', "invalid JSON", id="utf8-bom-is-400"),
        pytest.param(b'{"title": "Heat", "year": 1995, "popularity": NaN}', "invalid JSON", id="NaN-is-400"),
        pytest.param(b'{"title": "Heat", "year": 1995, "length": Infinity}', "invalid JSON", id="Infinity-is-400"),
        pytest.param(
            b'{"title": "Heat", "year": 1995, "length": -Infinity}', "invalid JSON", id="minus-Infinity-is-400"
        ),
        pytest.param(b'{"title": "Heat", "year": 1995, "other": NaN}', "invalid JSON", id="NaN-in-unknown-key-is-400"),
        pytest.param(b'{"title": "Heat", "year": 01995}', "invalid JSON", id="leading-zero-is-400"),
        pytest.param(b"[]", "cannot unmarshal array into a film object", id="array-body-is-400"),
        pytest.param(b'[{"title": "Heat", "year": 1995}]', "cannot unmarshal array", id="array-of-films-is-400"),
        pytest.param(b'"Heat"', "cannot unmarshal string into a film object", id="string-body-is-400"),
        pytest.param(b"1995", "cannot unmarshal number into a film object", id="number-body-is-400"),
        pytest.param(b"true", "cannot unmarshal bool into a film object", id="bool-body-is-400"),
    ],
)
def test_decode_refuses_bodies_that_are_not_a_json_object(payload: bytes, reason: str) -> None:
    """Invalid JSON (NaN and Infinity included) or a JSON value other than an object is a 400."""
    assert reason in reason_of(lambda: decode_film(payload))


def test_decode_accepts_whitespace_around_the_object() -> None:
    """Whitespace and newlines around and inside a JSON object are valid JSON."""
    assert decode_film(b'\n  {\n "title" : "Heat" ,\r\n "year" : 1995 }  \n') == film()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(raw('"length": 1e400'), "number out of range for field length", id="length-1e400-is-400"),
        pytest.param(
            raw('"popularity": -1e309'), "out of range for field popularity", id="popularity-minus-1e309-is-400"
        ),
        pytest.param(raw('"length": 1' + "0" * 400), "out of range for field length", id="length-400-digit-int-is-400"),
        pytest.param(b'{"year": 1e400}', "cannot unmarshal number into field year", id="year-1e400-is-400"),
        pytest.param(b'{"year": 1' + b"0" * 400 + b"}", "overflows field year", id="year-400-digit-int-is-400"),
    ],
)
def test_decode_refuses_numbers_out_of_range(payload: bytes, reason: str) -> None:
    """A number beyond float64 (or int64 for year) is a 400, never inf in the store."""
    assert reason in reason_of(lambda: decode_film(payload))


@pytest.mark.parametrize(
    ("payload", "length"),
    [
        pytest.param(raw('"length": 1.7976931348623157e308'), 1.7976931348623157e308, id="largest-float-passes"),
        pytest.param(raw('"length": 5e-324'), 5e-324, id="smallest-subnormal-passes"),
        pytest.param(raw('"length": -12'), -12.0, id="negative-length-passes-no-rule-on-length"),
    ],
)
def test_decode_accepts_numbers_in_float_range(payload: bytes, length: float) -> None:
    """Any finite float64 is a valid length (the sink has no rule on length)."""
    assert accept(payload, CURRENT_YEAR)["length"] == length


def test_accept_returns_every_field_with_its_type() -> None:
    """accept returns all ten fields, numbers as int/float and text as given."""
    full = {
        "year": 1995,
        "length": 170,
        "title": "Heat",
        "subject": "Action",
        "actor": "Pacino, Al",
        "actress": "Judd, Ashley",
        "director": "Mann, Michael",
        "popularity": 68,
        "awards": "No",
        "image": "heat.jpeg",
    }
    assert accept(json.dumps(full).encode(), CURRENT_YEAR) == {**full, "length": 170.0, "popularity": 68.0}
