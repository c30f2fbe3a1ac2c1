"""The data contract: one pydantic model of what the sink accepts (SPEC sections 2 and 3).

Input values are the strings of a CSV row; the model trims them, parses the
numbers strictly (``1990.0`` is not a year, ``1_990`` is not a number), and
raises one error per failing field, each with a short code in the spirit of
frictionless reports and a plain sentence. A valid row becomes the JSON body
of one POST.

Most rows of a real export are plainly valid, and pydantic costs several
microseconds a row. `Contract.plain_keys` recognises such rows with one
regular expression and a few string tests, and gives the key that
`record_key` would give (and `plain_body` the body `to_json` would); any row
it is not sure about goes to the model, so pydantic stays the single statement
of the contract (and of its messages).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from operator import itemgetter
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError, ValidationInfo
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

from movymporter.errors import InputError

REQUIRED_COLUMNS = ("title", "year")
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
_FIRST_BAD_CHAR = re.compile(f"[{_CONTROL_CHARS}\ufffd]")
_INTEGER = re.compile(r"[+-]?\d+\Z", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+\Z", re.ASCII)
_IMAGE = re.compile(rf".+\.({'|'.join(IMAGE_EXTENSIONS)})\Z")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a row is refused: code, field, and a sentence for a human."""

    code: str
    field: str | None
    message: str
    rule: str
    """The message without the offending value, to count rows by reason."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


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


Text = Annotated[str, StringConstraints(strip_whitespace=True, pattern=TEXT_PATTERN)]


class Movie(BaseModel):
    """A film as the sink accepts it. Field order is the JSON order."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    year: Annotated[int, PlainValidator(_year)]
    length: Annotated[int | float | None, PlainValidator(_length)] = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=TEXT_PATTERN)]
    subject: Text = ""
    actor: Text = ""
    actress: Text = ""
    director: Text = ""
    popularity: Annotated[int | float | None, PlainValidator(_popularity)] = None
    awards: Annotated[str, PlainValidator(_awards)] = ""
    image: Annotated[Text, AfterValidator(_image)] = ""


FIELDS = tuple(Movie.model_fields)
"""The film's fields in JSON order."""

PlainKey = Callable[[Sequence[str]], str | None]
"""The cells of a row of the expected width -> its record key, or None when the model must decide."""
PlainKeys = Callable[[Iterable[Sequence[str]]], list[str | None]]
"""`PlainKey` for many rows at once: a dry run is little else, and one call per row costs more than the loop."""

_TEXT_CELL = r'(?! )[^"]*+(?<! )'
_PLAIN_CELLS = {
    "length": r"[1-9][0-9]{0,14}|((?:0|[1-9][0-9]{0,5})\.[0-9]{1,3})|",
    "title": r'(?! )[^"]++(?<! )',
    "subject": _TEXT_CELL,
    "actor": _TEXT_CELL,
    "actress": _TEXT_CELL,
    "director": _TEXT_CELL,
    "popularity": r"100|[1-9]?[0-9]|((?:100|[1-9]?[0-9])\.[0-9]{1,3})|",
    "awards": r"Yes|No|([yY][eE][sS]|[nN][oO])|",
    "image": r'(?! )[^"]+\.(?:png|jpe?g)|',
}
"""Each field but the year in the forms whose JSON is certain: numbers are ASCII digits without sign,
exponent or leading zero (so an integer is spelt in JSON as written, and a decimal of at most 3 places
below 10**6 as Python's repr, which is also pydantic's spelling), text is anything without a quote and
without a space at either end (nothing to trim). What the key spells otherwise (a decimal, awards in
another case) is in a group, so that a match without a group is its own key. A text cell is followed by
a quote, which it cannot take back: its quantifier is possessive, and the regex engine keeps no
backtracking state for it (a sixth of the match's time); the lookbehind then finds its last character,
or the quote before an empty cell."""
_AWARDS_JSON = {
    "".join(spelling): "".join(spelling).capitalize()
    for word in ("yes", "no", "")
    for spelling in product(*((char, char.upper()) for char in word))
}
"""The awards of `_PLAIN_CELLS` in every case, and their JSON: a lookup costs less than capitalize()."""


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


def _plain_row(max_year: int) -> re.Pattern[str]:
    """A row's cells in field order joined by '"', which no plain cell contains."""
    cells = {"year": digits_between(FIRST_YEAR, min(max_year, 9999), 4), **_PLAIN_CELLS}  # a plain year: 4 digits
    return re.compile('"'.join(f"(?:{cells[name]})" for name in FIELDS))


def record_key(movie: Movie) -> str:
    """What makes two records the same, as a string: equal keys exactly when `to_json` gives equal bodies.

    The values as their JSON spells them (a float as its repr, null as nothing), joined by '"'; a text
    escapes its quotes and backslashes, so that the key splits back into the same values. A dry run needs
    no body, only this, and on the fast path most rows' keys are their cells joined as they are: the
    join the fast path's regex needs anyway."""
    return '"'.join(
        (
            str(movie.year),
            _number_key(movie.length),
            _text_key(movie.title),
            _text_key(movie.subject),
            _text_key(movie.actor),
            _text_key(movie.actress),
            _text_key(movie.director),
            _number_key(movie.popularity),
            movie.awards,
            _text_key(movie.image),
        )
    )


def _number_key(number: float | None) -> str:
    return "" if number is None else repr(number)


def _text_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"') if '"' in text or "\\" in text else text


def plain_body(key: str) -> bytes:
    """The JSON body of a record whose key the fast path gave: the bytes `to_json` gives for it."""
    year, length, title, subject, actor, actress, director, popularity, awards, image = key.split('"')
    return (
        f'{{"year":{year},"length":{length or "null"},"title":"{title}","subject":"{subject}",'
        f'"actor":"{actor}","actress":"{actress}","director":"{director}",'
        f'"popularity":{popularity or "null"},"awards":"{awards}","image":"{image}"}}'.encode()
    )


def plain_keys_of(positions: Mapping[str, int], max_year: int, width: int | None = None) -> PlainKeys:
    """The fast path of the contract for one header: plainly valid rows straight to their record keys.

    A row qualifies when its year is a plain one of the contract's range, each other cell has a form
    of `_PLAIN_CELLS`, and the text is printable (no control character, surrogate, or whitespace but
    the space), without a backslash (nothing to escape) or U+FFFD. Such a row passes every rule of
    Movie, and its key is the one `record_key` gives, from which `plain_body` writes the bytes `to_json`
    gives: the property test holds the three to it. Absent columns read as empty cells, which is what
    the model's defaults amount to.

    `width` is the number of cells of a row, when known: a row that holds just the fields, in their
    order (as most exports do), is used as it is, without picking its cells one by one. A row whose
    numbers are whole and whose awards are spelt as sent (most rows) is its own key, joined.
    """
    pick = itemgetter(*(positions.get(name, -1) for name in FIELDS))
    padded = any(name not in positions for name in FIELDS)
    in_order = width == len(FIELDS) and all(positions.get(name) == index for index, name in enumerate(FIELDS))
    match = _plain_row(max_year).fullmatch

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
                answer(_respelt(values))
        return found

    return keys


def _respelt(values: Sequence[str]) -> str | None:
    """The key of a plain row that spells a decimal or the awards otherwise than its JSON; None if a decimal
    is out of its range (left to the model, which says so)."""
    length, popularity = values[1], values[7]
    if "." in length:
        if float(length) <= 0:
            return None
        length = repr(float(length))
    if "." in popularity:
        if float(popularity) > POPULARITY_RANGE[1]:
            return None
        popularity = repr(float(popularity))
    return '"'.join((values[0], length, *values[2:7], popularity, _AWARDS_JSON[values[8]], values[9]))


class Contract:
    """Validates rows against Movie for one run (the year limit is fixed when the run starts)."""

    def __init__(self, max_year: int | None = None) -> None:
        self.max_year = max_year or dt.date.today().year
        self._context = {"max_year": self.max_year}

    def plain_keys(self, positions: Mapping[str, int], width: int | None = None) -> PlainKeys:
        """The fast path for rows of `width` cells laid out as `positions` says (see `plain_keys_of`)."""
        return plain_keys_of(positions, self.max_year, width)

    def plain_key(self, positions: Mapping[str, int], width: int | None = None) -> PlainKey:
        """`plain_keys` for one row at a time."""
        keys = self.plain_keys(positions, width)
        return lambda cells: keys((cells,))[0]

    def validate(self, values: dict[str, str]) -> Movie | list[Problem]:
        """The movie, or every problem of the row (not just the first)."""
        try:
            return Movie.model_validate(values, context=self._context)
        except ValidationError as error:
            return [_problem(detail) for detail in error.errors(include_url=False)]


def to_json(movie: Movie) -> bytes:
    return movie.model_dump_json().encode()


def column_positions(names: list[str], shown: list[str] | None = None) -> dict[str, int]:
    """Which column holds each field; InputError when a required column is missing or doubled.

    `names` are the normalised header names, `shown` the header as written, for the message."""
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in FIELDS:
            if name in positions:
                raise InputError(f"the column {name!r} appears twice (columns {positions[name] + 1} and {index + 1})")
            positions[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        written = shown if shown is not None else names
        found = ", ".join(repr(name if len(name) <= 40 else name[:37] + "...") for name in written[:20]) or "none"
        if len(written) > 20:
            found += f" and {len(written) - 20} more"
        raise InputError(
            f"required column{'s' * (len(missing) > 1)} {' and '.join(missing)} not found in the header "
            f"(columns found: {found}); names are matched ignoring case, spaces and a leading '*'"
        )
    return positions


def _problem(detail: Any) -> Problem:
    field = str(detail["loc"][0]) if detail["loc"] else None
    kind, value = detail["type"], detail.get("input")
    if kind in (TYPE_ERROR, CONSTRAINT_ERROR, ENCODING_ERROR):
        return Problem(kind, field, detail["msg"], detail["ctx"]["rule"])
    if kind == "string_pattern_mismatch" and isinstance(value, str):
        bad = _FIRST_BAD_CHAR.search(value)
        if bad is None or bad.group() == "\ufffd":
            rule = f"{field} contains U+FFFD, the mark of text decoded with the wrong encoding"
            return Problem(ENCODING_ERROR, field, rule, rule)
        rule = f"{field} contains a control character"
        return Problem(CONSTRAINT_ERROR, field, f"{rule} (U+{ord(bad.group()):04X})", rule)
    if kind in ("missing", "string_too_short"):
        return Problem(CONSTRAINT_ERROR, field, f"{field} is required", f"{field} is required")
    if kind == "string_unicode":
        rule = f"{field} is not valid text"
        return Problem(ENCODING_ERROR, field, rule, rule)
    code = TYPE_ERROR if kind.endswith(("_type", "_parsing")) else CONSTRAINT_ERROR
    return Problem(code, field, f"{field}: {detail['msg']}", f"{field}: {kind}")
