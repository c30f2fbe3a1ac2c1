"""The film contract of the original Go sink, restated in Python.

Deliberately independent of the importer's schema: the sink and the importer
each implement SPEC section 2 on their own, so a test that sends the
importer's output to the sink checks one reading of the contract against
the other.

Decoding follows Go's ``encoding/json`` into a struct: keys match field names
case-insensitively, unknown keys are ignored, ``null`` leaves the zero value,
a value of the wrong JSON type is an error, and invalid UTF-8 inside strings
becomes U+FFFD (which validation then refuses).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

INT_FIELDS = ("year",)
FLOAT_FIELDS = ("length", "popularity")
STR_FIELDS = ("title", "subject", "actor", "actress", "director", "awards", "image")
FIELDS = ("year", "length", "title", "subject", "actor", "actress", "director", "popularity", "awards", "image")

FIRST_YEAR = 1888
AWARDS = ("", "Yes", "No")
IMAGE_PATTERN = r".+\.(png|jpg|jpeg)$"
# Go's `$` without the m flag matches only at the very end of the text; Python's
# matches before a trailing newline too, so the compiled form uses `\Z`.
_IMAGE_RE = re.compile(IMAGE_PATTERN.removesuffix("$") + r"\Z")
_BAD_UNICODE_RE = re.compile("[\ud800-\udfff\ufffd]")
_FOLDED = {name.casefold(): name for name in FIELDS}
_INT64 = (-(2**63), 2**63 - 1)

Film = dict[str, Any]


class Rejected(ValueError):
    """A request the sink answers with 400; the message is the one-line body."""


def zero_film() -> Film:
    return {name: (0 if name in INT_FIELDS else 0.0 if name in FLOAT_FIELDS else "") for name in FIELDS}


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"invalid character {name!r} looking for beginning of value")


def _convert(name: str, value: object) -> object:
    if name in STR_FIELDS:
        if isinstance(value, str):
            return value
        expected = "string"
    elif name in INT_FIELDS:
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64[0] <= value <= _INT64[1]:
                return value
            raise Rejected(f"json: number {value} overflows field {name} of type int")
        expected = "int"
    else:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
            raise Rejected(f"json: number out of range for field {name} of type float64")
        expected = "float64"
    raise Rejected(f"json: cannot unmarshal {_json_kind(value)} into field {name} of type {expected}")


def decode_film(body: bytes) -> Film:
    """Turn a request body into a film, or raise Rejected with the reason."""
    text = body.decode("utf-8", errors="replace")
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        reason = str(error).splitlines()[0] if str(error) else "syntax error"
        raise Rejected(f"invalid JSON: {reason}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise Rejected(f"json: cannot unmarshal {_json_kind(document)} into a film object")
    film = zero_film()
    for key, value in document.items():
        name = key if key in film else _FOLDED.get(key.casefold())
        if name is None or value is None:
            continue
        film[name] = _convert(name, value)
    return film


def check_film(film: Film, current_year: int) -> None:
    """Raise Rejected with the first rule the film breaks, in a fixed order."""
    for name in STR_FIELDS:
        if _BAD_UNICODE_RE.search(film[name]):
            raise Rejected(f"{name} is not valid UTF-8 or contains U+FFFD")
    if film["title"] == "":
        raise Rejected("title is empty")
    if not FIRST_YEAR <= film["year"] <= current_year:
        raise Rejected(f"year {film['year']} is outside {FIRST_YEAR}..{current_year}")
    if not 0 <= film["popularity"] <= 100:
        raise Rejected(f"popularity {film['popularity']:g} is outside 0..100")
    if film["awards"] not in AWARDS:
        raise Rejected(f'awards {json.dumps(film["awards"])} is not one of "", "Yes", "No"')
    if film["image"] and not _IMAGE_RE.search(film["image"]):
        raise Rejected(f"image {json.dumps(film['image'])} does not match {IMAGE_PATTERN}")


def accept(body: bytes, current_year: int) -> Film:
    """Decode and validate a body; the film to store, or Rejected."""
    film = decode_film(body)
    check_film(film, current_year)
    return film
