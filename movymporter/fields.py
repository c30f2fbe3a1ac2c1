"""The film's fields in one table (SPEC sections 2 and 3): everything else about the contract is derived from it.

Each entry says what a field is in the sink's JSON (its kind: how the record key and the body spell it), its
default (none: the field is required), its rule (pydantic constraints, or a function of the cell that the model
applies as a PlainValidator), and its plain form: a regex of the cells whose JSON is certain without the model,
for the fast path. `schema` makes the pydantic model, the record key and the body of them, `fastpath` the one
regex of a plain row and the respelling of what its groups catch; so a new field is one entry here (and its rule,
if none below fits). This module imports nothing of the project's, so that everything else can import it.

The rules take the strings of a CSV row: they trim them, parse the numbers strictly (``1990.0`` is not a year,
``1_990`` is not a number), and fail with a short code in the spirit of frictionless reports and a plain
sentence.
"""

from __future__ import annotations

import datetime as dt
import keyword
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import AfterValidator, PlainValidator, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError

FIRST_YEAR = 1888
POPULARITY_RANGE = (0, 100)
AWARDS = {"yes": "Yes", "no": "No", "": ""}
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")

TYPE_ERROR = "type-error"
CONSTRAINT_ERROR = "constraint-error"
ENCODING_ERROR = "encoding-error"

# Tab and newline are the only control characters allowed in text; U+FFFD marks
# text that was decoded with the wrong encoding somewhere upstream.
_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
TEXT_PATTERN = f"^[^{_CONTROL_CHARS}\ufffd]*$"
BAD_TEXT_CHAR = re.compile(f"[{_CONTROL_CHARS}\ufffd]")
"""The first character that breaks TEXT_PATTERN: it tells a control character from text in the wrong encoding."""
_INTEGER = re.compile(r"[+-]?\d+\Z", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+\Z", re.ASCII)
_IMAGE = re.compile(rf".+\.({'|'.join(IMAGE_EXTENSIONS)})\Z")


def _fail(code: str, rule: str, value: object | None = None) -> PydanticCustomError:
    shown = "" if value is None else f", got {value!r}"
    return PydanticCustomError(code, rule + shown, {"rule": rule})


T = TypeVar("T")
_REMEMBERED = 4096
"""Valid cells remembered by each rule below (a few distinct values make up most of a column): a row the model
checks, most often because one of its cells is invalid, then costs a lookup for each of the others."""
_SHORT = 32
"""Only cells up to this length are remembered, so the memory stays small whatever the file holds (a valid
number can be padded with spaces or zeros up to the csv field limit)."""


def _remembered(rule: Callable[..., T], text: str, *limits: int) -> T:
    """`rule(text, *limits)`, where `rule` is an lru_cache: from the cache for a short text, straight for a long
    one, which the cache does not keep."""
    return rule(text, *limits) if len(text) <= _SHORT else rule.__wrapped__(text, *limits)  # type: ignore[attr-defined]


def _year(value: Any, info: ValidationInfo) -> int:
    last = info.context["max_year"] if info.context else dt.date.today().year
    return _remembered(_year_of, str(value), last)


@lru_cache(maxsize=_REMEMBERED)
def _year_of(value: str, last: int) -> int:
    text = value.strip()
    if not text:
        raise _fail(CONSTRAINT_ERROR, "year is required")
    if not _INTEGER.match(text):
        raise _fail(TYPE_ERROR, "year must be a whole number", _shown(text))
    # A year of more than 6 digits is out of range whatever it is; int() of a huge one is slow or refused.
    year = int(text) if len(text) <= 6 else None
    if year is None or not FIRST_YEAR <= year <= last:
        raise _fail(CONSTRAINT_ERROR, f"year must be from {FIRST_YEAR} to {last}", _shown(text))
    return year


def _number(field: str, text: str) -> int | float | None:
    """A JSON number from a cell: ints stay ints, anything beyond a double's range is refused."""
    text = text.strip()
    if not text:
        return None
    if not _DECIMAL.match(text):
        hint = " (use a dot as the decimal separator)" if _DECIMAL_COMMA.match(text) else ""
        raise _fail(TYPE_ERROR, f"{field} must be a number{hint}", _shown(text))
    number = float(text)
    if not math.isfinite(number):
        raise _fail(CONSTRAINT_ERROR, f"{field} must be a finite number", _shown(text))
    if not _INTEGER.match(text):
        return number
    # Finite, so at most 309 digits once leading zeros are gone: int() refuses more than 4300.
    digits = text.lstrip("+-").lstrip("0") or "0"
    return int("-" + digits if text.startswith("-") else digits)


def _shown(text: str) -> str:
    """A value as quoted in a message: long ones are cut."""
    return text if len(text) <= 40 else text[:37] + "..."


def _length(value: Any) -> int | float | None:
    return _remembered(_length_of, str(value))


@lru_cache(maxsize=_REMEMBERED)
def _length_of(value: str) -> int | float | None:
    number = _number("length", value)
    if number is not None and number <= 0:
        raise _fail(CONSTRAINT_ERROR, "length must be a positive number", number)
    return number


def _popularity(value: Any) -> int | float | None:
    return _remembered(_popularity_of, str(value))


@lru_cache(maxsize=_REMEMBERED)
def _popularity_of(value: str) -> int | float | None:
    number = _number("popularity", value)
    low, high = POPULARITY_RANGE
    if number is not None and not low <= number <= high:
        raise _fail(CONSTRAINT_ERROR, f"popularity must be from {low} to {high}", number)
    return number


def _awards(value: Any) -> str:
    return _remembered(_awards_of, str(value))


@lru_cache(maxsize=_REMEMBERED)
def _awards_of(value: str) -> str:
    text = value.strip()
    awards = AWARDS.get(text.lower())
    if awards is None:
        raise _fail(CONSTRAINT_ERROR, "awards must be Yes, No (any case) or empty", text)
    return awards


def _image(value: str) -> str:
    if value and not _IMAGE.search(value):
        extensions = ", ".join(f".{ext}" for ext in IMAGE_EXTENSIONS)
        raise _fail(CONSTRAINT_ERROR, f"image must be a file name ending in {extensions} (lower case)", value)
    return value


def _number_key(number: float | None) -> str:
    return "" if number is None else repr(number)


def _text_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"') if '"' in text or "\\" in text else text


def digits_between(low: int, high: int, digits: int) -> str:
    """A regex for the numbers from `low` to `high`, each written with `digits` digits (zero-padded): so a
    plain year is checked within the fast path's one match, not by a lookup after it."""
    if high >= 10**digits:
        raise ValueError(f"{high} has more than {digits} digits")
    if low > high:
        return "(?!)"
    return _digits_between(str(low).zfill(digits), str(high).zfill(digits))


def _digits_between(low: str, high: str) -> str:
    if not low:
        return ""
    if low == "0" * len(low) and high == "9" * len(high):
        return f"[0-9]{{{len(low)}}}"
    if low[0] == high[0]:
        return low[0] + _digits_between(low[1:], high[1:])
    rest = len(low) - 1
    parts = [low[0] + _digits_between(low[1:], "9" * rest)]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(high[0] + _digits_between("0" * rest, high[1:]))
    return f"(?:{'|'.join(parts)})"


def _plain_years(max_year: int) -> str:
    """A plain year has 4 digits: so one range regex covers the contract's years up to 9999."""
    return digits_between(FIRST_YEAR, min(max_year, 9999), 4)


@dataclass(frozen=True, slots=True)
class Kind:
    """A JSON type of the sink's, as the record key and the body spell its values.

    The key is the values joined by '"', so a text escapes its quotes and backslashes there (the key then
    splits back into the same values); the body is written from a key the fast path gave, so from the key's
    spellings."""

    type: Any
    """The Python type of a valid value."""
    key: Callable[[Any], str] | None
    """A value as the record key spells it; None when the value is its own spelling (a string that needs no
    escape)."""
    quoted: bool
    """The body writes the key's spelling in quotes: a JSON string."""
    nullable: bool = False
    """The body writes an empty spelling as null (a number whose cell was empty)."""


INTEGER = Kind(int, str, quoted=False)
NUMBER = Kind(int | float | None, _number_key, quoted=False, nullable=True)
TEXT = Kind(str, _text_key, quoted=True)
CHOICE = Kind(str, None, quoted=True)
"""A string of a few words without quote or backslash, so the key spells it as it is."""

REQUIRED: Any = ...
"""The default of a field without one: the model refuses a row that lacks it."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the film: the single statement of its part of the contract."""

    name: str
    """The JSON key, and the column name (matched ignoring case)."""
    kind: Kind
    rules: tuple[Any, ...]
    """Pydantic metadata, applied in order: StringConstraints, AfterValidator, or a PlainValidator of a function
    of the cell (with the validation info if it takes two arguments) that gives the value or raises the
    PydanticCustomError of a refused cell."""
    plain: str | Callable[[int], str]
    """The regex of its plain cells (or a function of the contract's last year giving it): cells the model
    accepts as they are, each spelt in the key as its value would be, or else caught by a group, which the
    fast path spells as the PlainValidator makes it. A plain cell never holds '"', the fast path's separator;
    an absent column reads as an empty cell, so a required field's form does not match one, and an optional
    field's does only if its default is what the rule makes of it."""
    default: Any = REQUIRED

    def __post_init__(self) -> None:
        # The model makes each name an attribute (`movie.year`), and pydantic takes one with a leading underscore
        # for a private attribute, not a field: so a name is one that can be written after the dot.
        if not self.name.isidentifier() or keyword.iskeyword(self.name) or self.name.startswith("_"):
            raise ValueError(f"a field's name must be a plain identifier, not {self.name!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def parse(self) -> Callable[..., Any] | None:
        """The function of the field's PlainValidator: the fast path asks it how a cell of a group is spelt."""
        return next((rule.func for rule in self.rules if isinstance(rule, PlainValidator)), None)

    def plain_form(self, max_year: int) -> str:
        return self.plain if isinstance(self.plain, str) else self.plain(max_year)


TEXT_RULE = StringConstraints(strip_whitespace=True, pattern=TEXT_PATTERN)
REQUIRED_TEXT_RULE = StringConstraints(strip_whitespace=True, min_length=1, pattern=TEXT_PATTERN)
_TEXT_CELL = r'(?! )[^"]*+(?<! )'

FILM: tuple[Field, ...] = (
    Field("year", INTEGER, (PlainValidator(_year),), _plain_years),
    Field("length", NUMBER, (PlainValidator(_length),), r"[1-9][0-9]{0,14}|((?:0|[1-9][0-9]{0,5})\.[0-9]{1,3})|", None),
    Field("title", TEXT, (REQUIRED_TEXT_RULE,), r'(?! )[^"]++(?<! )'),
    Field("subject", TEXT, (TEXT_RULE,), _TEXT_CELL, ""),
    Field("actor", TEXT, (TEXT_RULE,), _TEXT_CELL, ""),
    Field("actress", TEXT, (TEXT_RULE,), _TEXT_CELL, ""),
    Field("director", TEXT, (TEXT_RULE,), _TEXT_CELL, ""),
    Field(
        "popularity",
        NUMBER,
        (PlainValidator(_popularity),),
        r"100|[1-9]?[0-9]|((?:100|[1-9]?[0-9])\.[0-9]{1,3})|",
        None,
    ),
    Field("awards", CHOICE, (PlainValidator(_awards),), r"Yes|No|([yY][eE][sS]|[nN][oO])|", ""),
    Field("image", TEXT, (TEXT_RULE, AfterValidator(_image)), r'(?! )[^"]+\.(?:png|jpe?g)|', ""),
)
"""The film in JSON order: name, kind, rules, plain form, default (none: required). The plain forms: numbers are
ASCII digits without sign, exponent or leading zero (so an integer is spelt in JSON as written, and a decimal of
at most 3 places below 10**6 as Python's repr, which is also pydantic's spelling), text is anything without a
quote and without a space at either end (nothing to trim). A text cell is followed by a quote, which it cannot
take back: its quantifier is possessive, and the regex engine keeps no backtracking state for it (a sixth of the
match's time); the lookbehind then finds its last character, or the quote before an empty cell."""
