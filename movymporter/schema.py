"""The data contract: one pydantic model of what the sink accepts (SPEC sections 2 and 3).

The model, the record key and the body are all made from one table of fields (`fields.FILM`), so that a new
field is one entry there. Input values are the strings of a CSV row; the model raises one error per failing
field, each with a short code in the spirit of frictionless reports and a plain sentence. A valid row becomes
the JSON body of one POST.

Most rows never reach the model: `Contract.plain_keys` recognises the plainly valid ones (see `fastpath`) and
gives the key that `record_key` would give, from which `plain_body` writes the body `to_json` would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from movymporter.errors import InputError
from movymporter.fastpath import PlainKey, PlainKeys, plain_keys_of
from movymporter.fields import (
    BAD_TEXT_CHAR,
    CONSTRAINT_ERROR,
    ENCODING_ERROR,
    FILM,
    FIRST_YEAR,
    TEXT_PATTERN,
    TYPE_ERROR,
    Field,
    Kind,
    digits_between,
)

# What other modules import from here, including what the table and the fast path define.
__all__ = [
    "CONSTRAINT_ERROR",
    "ENCODING_ERROR",
    "FIELDS",
    "FIRST_YEAR",
    "REQUIRED_COLUMNS",
    "TERMS",
    "TEXT_PATTERN",
    "TYPE_ERROR",
    "Contract",
    "ContractModel",
    "Movie",
    "PlainKey",
    "PlainKeys",
    "Problem",
    "Terms",
    "column_positions",
    "digits_between",
    "plain_body",
    "plain_keys_of",
    "record_key",
    "terms_of",
    "to_json",
]


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


class ContractModel(BaseModel):
    """What the model of any table of fields is: frozen (a record is a value), blind to columns outside it."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True, slots=True)
class Terms:
    """What one table of fields makes of the contract: the model and the spellings of its records."""

    table: tuple[Field, ...]
    names: tuple[str, ...]
    """The fields in JSON order."""
    model: type[ContractModel]
    record_key: Callable[[ContractModel], str]
    plain_body: Callable[[str], bytes]

    def __reduce__(self) -> str | tuple[Any, ...]:
        # A contract may judge rows in another process: the film's terms go there by name, so that the model there
        # is the same class; other terms are made again there from their table.
        return "TERMS" if self is TERMS else (terms_of, (self.table, self.model.__name__))


_MODEL_DOC = "A film as the sink accepts it. Field order is the JSON order."


def terms_of(table: Sequence[Field], name: str = "Movie") -> Terms:
    """The model (`name`, its fields in the table's order, which is the JSON order) and the key and body
    functions of a table of fields."""
    table = tuple(table)
    definitions: dict[str, Any] = {field.name: (_annotation(field), field.default) for field in table}
    model = create_model(name, __base__=ContractModel, __module__=__name__, __doc__=_MODEL_DOC, **definitions)
    return Terms(table, tuple(field.name for field in table), model, RecordKey.of(table), PlainBody.of(table))


def _annotation(field: Field) -> Any:
    return Annotated[(field.kind.type, *field.rules)] if field.rules else field.kind.type


@dataclass(frozen=True, slots=True)
class RecordKey:
    """What makes two records the same, as a string: equal keys exactly when `to_json` gives equal bodies.

    The values as their JSON spells them (a float as its repr, null as nothing), joined by '"'; a text escapes its
    quotes and backslashes, so that the key splits back into the same values. A dry run needs no body, only this,
    and on the fast path most rows' keys are their cells joined as they are: the join the fast path's regex needs
    anyway."""

    spellings: tuple[tuple[str, Callable[[Any], str] | None], ...]
    """Each field's attribute, in JSON order, and how its kind spells the value (None: as it is)."""

    @classmethod
    def of(cls, table: Sequence[Field]) -> RecordKey:
        return cls(tuple((field.name, field.kind.key) for field in table))

    def __call__(self, movie: ContractModel) -> str:
        spelt: list[str] = []
        for name, spell in self.spellings:
            value = getattr(movie, name)
            spelt.append(value if spell is None else spell(value))
        return '"'.join(spelt)


@dataclass(frozen=True, slots=True)
class PlainBody:
    """The JSON body of a record whose key the fast path gave: the bytes `to_json` gives for it.

    Such a key holds no quote or backslash in its values (nothing was escaped), so it splits into one spelling
    per field: the value's JSON, but for the quotes of a string and the null of an empty number, which the
    field's kind says."""

    members: tuple[tuple[str, Kind], ...]
    """Each field's name, in JSON order, and its kind."""

    @classmethod
    def of(cls, table: Sequence[Field]) -> PlainBody:
        return cls(tuple((field.name, field.kind) for field in table))

    def __call__(self, key: str) -> bytes:
        written: list[str] = []
        for (name, kind), spelling in zip(self.members, key.split('"'), strict=True):
            value = "null" if kind.nullable and not spelling else spelling
            written.append(f'"{name}":"{value}"' if kind.quoted else f'"{name}":{value}')
        return ("{" + ",".join(written) + "}").encode()


TERMS = terms_of(FILM)
"""The film's terms: the model, record_key and plain_body below."""
Movie = TERMS.model
FIELDS = TERMS.names
"""The film's fields in JSON order."""
REQUIRED_COLUMNS = tuple(sorted(field.name for field in FILM if field.required))
"""The columns a header must have (the fields without a default), in alphabetical order: the order in which the
message of a header without them names them."""
record_key = TERMS.record_key
plain_body = TERMS.plain_body


class Contract:
    """Validates rows against the model for one run (the year limit is fixed when the run starts).

    `fast_path=False` leaves every row to the model: slower, and the same results, which is how the fast path
    is held to them."""

    def __init__(self, max_year: int | None = None, fast_path: bool = True, *, terms: Terms = TERMS) -> None:
        self.max_year = max_year or dt.date.today().year
        self.fast_path = fast_path
        self.terms = terms
        self._model = terms.model
        self._context = {"max_year": self.max_year}

    def plain_keys(self, positions: Mapping[str, int], width: int | None = None) -> PlainKeys:
        """The fast path for rows of `width` cells laid out as `positions` says (see `plain_keys_of`); with the
        fast path off, None for every row."""
        if not self.fast_path:
            return _model_decides
        return plain_keys_of(positions, self.max_year, width, self.terms.table)

    def plain_key(self, positions: Mapping[str, int], width: int | None = None) -> PlainKey:
        """`plain_keys` for one row at a time."""
        keys = self.plain_keys(positions, width)
        return lambda cells: keys((cells,))[0]

    def validate(self, values: dict[str, str]) -> ContractModel | list[Problem]:
        """The movie, or every problem of the row (not just the first)."""
        try:
            return self._model.model_validate(values, context=self._context)
        except ValidationError as error:
            return [_problem(detail) for detail in error.errors(include_url=False)]


def _model_decides(rows: Iterable[Sequence[str]]) -> list[str | None]:
    return [None for _ in rows]


def to_json(movie: ContractModel) -> bytes:
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
        bad = BAD_TEXT_CHAR.search(value)
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
