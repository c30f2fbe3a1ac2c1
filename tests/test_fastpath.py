"""The contract's fast path: Contract.plain_key gives exactly record_key(Movie), or leaves the row to the model.

The fast path gives record keys (and `plain_body` their JSON) without pydantic
for rows that are plainly valid. It is only right if, whenever it answers, the
model accepts the same row, gives it the same key, and serialises it to the
same bytes; and keys are only right if they are equal exactly when bodies are.
The property tests below hold them to that, the first on rows built from plain
values salted with the forms where a hand-written check is most likely to go
wrong: number spellings, case folding, whitespace, escapes and characters
outside ASCII, the second on pairs of films that differ by little. The table tests pin which rows take the fast path,
so a change that quietly sends every row to pydantic fails too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bench.generate import write
from movymporter import pipeline
from movymporter.fields import FILM, TEXT, TEXT_RULE, Field
from movymporter.report import DUPLICATES, REJECTED
from movymporter.schema import FIELDS, Contract, Movie, PlainKeys, Problem, plain_body, record_key, terms_of, to_json
from movymporter.settings import Settings
from tests.conftest import examples

MAX_YEAR = 2026
CONTRACT = Contract(max_year=MAX_YEAR)
MODEL_ONLY = Contract(max_year=MAX_YEAR, fast_path=False)
"""The same contract with the fast path off: every row goes to the model, which is what the fast path must agree
with."""
ALL_COLUMNS = {name: index for index, name in enumerate(FIELDS)}
PLAIN_ROW = {
    "year": "1943",
    "length": "108",
    "title": "Paper Moon",
    "subject": "Action",
    "actor": "Olsen, Sven",
    "actress": "Quintero, Olga",
    "director": "García, Teresa",
    "popularity": "88",
    "awards": "Yes",
    "image": "OlsenSven.jpg",
}

PROPERTY = settings(max_examples=examples(1500))
"""Many examples: each is cheap, and the forms that go wrong are rare among them."""

PLAIN_VALUES = {
    "year": ("1888", "1943", "2000", str(MAX_YEAR)),
    "length": ("", "1", "90", "108", "1.5", "0.5", "123456.789", "999999999999999"),
    "title": ("Heat", "Paper Moon 3", "Amélie", "天国と地獄", "🎬 Film", "A, B; C | D", "It's", "a  b"),
    "subject": ("", "Drama", "Science Fiction", "Comédie"),
    "actor": ("", "Pacino, Al", "Müller, Jonas"),
    "actress": ("", "Judd, Ashley", "Zúñiga, Vera"),
    "director": ("", "Mann, Michael", "Almodóvar, Pedro"),
    "popularity": ("", "0", "7", "55", "100", "68.5", "99.999", "100.0", "0.001"),
    "awards": ("", "Yes", "No", "yes", "no", "YES", "NO", "yEs", "nO"),
    "image": ("", "a.png", "cover.jpeg", "x.jpg", "dir/a b.png", "..png", "été.jpg"),
}
NUMBER_EDGES = (
    "1e3", "1E3", "007", "00", "0", "+5", "-5", "-0", "+0", "-0.0", "1.50", "1.", ".5", "5.", "0.1", "0.0",
    "0.000", "0.0001", "0.00001", "1234567.8", "100.001", "100.5", "101", "99.9999", "1e2", "inf", "-inf",
    "nan", "NaN", "Infinity", "1_000", "1,5", "9" * 16, "9" * 30, "1" + "0" * 309, "١٢", "１２", " 90", "90 ",
    "\t90", "90\n", "9 0", "0x10", "1e-7", "1e16", "1e400",
)  # fmt: skip
YEAR_EDGES = (
    "1887", "1888", str(MAX_YEAR), str(MAX_YEAR + 1), "01990", "+1990", "-1990", "1990.0", "1e3", "1_990",
    " 1990", "1990 ", "١٩٩٠", "１９９０", "0", "9999", "10000", "99999999999", "",
)  # fmt: skip
TEXT_EDGES = (
    "", " ", "  ", " a", "a ", "\ta", "a\t", "a\tb", "a\nb", "a\r\nb", "\r", '"', 'a"b', '""', "\\", "a\\b",
    "\\u0041", "\ufffd", "caf\ufffd", "\udcff", "\ud800", "\x00", "a\x00b", "\x07", "\x1b", "\x1f", "\x7f",
    "\x85", "\x9f", "\xa0", "a\xa0", "\u2028", "\u2029", "\u3000", "\u200b", "\ufeff", "\x1c", "é", "🎬", "'",
    "<>&", "/", "a/b", "=1+1", "ſ", "K",
)  # fmt: skip
AWARDS_EDGES = ("YES", " no ", "No ", " Yes", "yeſ", "ſ", "Y", "N", "true", "Maybe", "yes\n", "Ｙｅｓ", "")
IMAGE_EDGES = (
    "a.PNG", ".png", "a.gif", "a.png.gif", "apng", "a.png ", " a.png", "a.jpeg\n", "a\nb.png", 'a"b.png',
    "a\\b.png", "\ufffd.png", "a.jpe", "a.jpgg", "é.png", "a..jpeg", "\x00.png",
)  # fmt: skip
EDGES = {
    "year": YEAR_EDGES + NUMBER_EDGES,
    "length": NUMBER_EDGES,
    "popularity": NUMBER_EDGES,
    "awards": AWARDS_EDGES + TEXT_EDGES,
    "image": IMAGE_EDGES + TEXT_EDGES,
}


def odd_value(name: str) -> st.SearchStrategy[str]:
    """An edge case of the field, a plain value with one glued on, or any text (with the odd lone surrogate)."""
    edges = EDGES.get(name, TEXT_EDGES)
    return st.one_of(
        st.sampled_from(edges),
        st.builds(lambda plain, edge: plain + edge, st.sampled_from(PLAIN_VALUES[name]), st.sampled_from(edges)),
        st.builds(lambda edge, plain: edge + plain, st.sampled_from(edges), st.sampled_from(PLAIN_VALUES[name])),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    )


@st.composite
def layouts(draw: st.DrawFn) -> tuple[dict[str, int], list[str], dict[str, str]]:
    """A header layout (which columns, in what order, with extra columns) and one row of cells for it:
    plain values with up to three of them odd.

    Returns the field positions, the cells, and the values dict the pipeline gives the model."""
    optional = [name for name in FIELDS if name not in ("title", "year")]
    present = ["title", "year", *draw(st.lists(st.sampled_from(optional), unique=True))]
    odd = set(draw(st.lists(st.sampled_from(present), max_size=3)))
    values = {name: draw(odd_value(name) if name in odd else st.sampled_from(PLAIN_VALUES[name])) for name in present}
    columns: list[str | None] = [*present, *[None] * draw(st.integers(0, 2))]
    columns = draw(st.permutations(columns))
    cells = [values[name] if name else draw(st.sampled_from(("", "notes", '"', "\x00"))) for name in columns]
    positions = {name: index for index, name in enumerate(columns) if name}
    return positions, cells, values


def agrees_with_the_model(key: str | None, values: dict[str, str]) -> bool:
    """Whether a key of the fast path is the model's: it accepts the row, gives the same key, and the body
    written from the key is the one it serialises. (No key always agrees: the model decides.)"""
    if key is None:
        return True
    result = CONTRACT.validate(values)
    return isinstance(result, Movie) and key == record_key(result) and plain_body(key) == to_json(result)


Judged = tuple[str | None, bytes | None, list[Problem] | None]


def judged(contract: Contract, positions: Mapping[str, int], cells: list[str], values: dict[str, str]) -> Judged:
    """What a run makes of a row, as the pipeline asks: the key and body from the fast path, or else from the
    model, or the model's problems."""
    key = contract.plain_key(positions, len(cells))(cells)
    if key is not None:
        return key, plain_body(key), None
    result = contract.validate(values)
    if isinstance(result, list):
        return None, None, result
    return record_key(result), to_json(result), None


@PROPERTY
@given(layouts())
@example(({**ALL_COLUMNS}, list(PLAIN_ROW.values()), dict(PLAIN_ROW)))
def test_the_fast_path_gives_the_models_key_or_none(layout: tuple[dict[str, int], list[str], dict[str, str]]) -> None:
    """Whenever plain_key answers, the model accepts the same row, record_key gives the same key, and
    plain_body of it is the very bytes to_json gives; so a row gets the same key, body or problems with the
    fast path on and off."""
    positions, cells, values = layout
    key = CONTRACT.plain_key(positions, len(cells))(cells)
    assert CONTRACT.plain_key(positions)(cells) == key, "knowing the row's width changed the answer"
    event("fast path" if key is not None else "left to the model")
    assert agrees_with_the_model(key, values)
    assert MODEL_ONLY.plain_key(positions, len(cells))(cells) is None
    assert judged(CONTRACT, positions, cells, values) == judged(MODEL_ONLY, positions, cells, values)


def test_every_edge_case_in_a_plain_row_gets_the_models_key_or_none() -> None:
    """Each edge case of each field, alone or glued to a plain value, in an otherwise plain row: the property
    above, with the fast path on and off, checked exhaustively on the cases most likely to break it."""
    plain_key = CONTRACT.plain_key(ALL_COLUMNS, len(FIELDS))
    wrong, differ = [], []
    for name in FIELDS:
        plains = PLAIN_VALUES[name]
        for edge in {*EDGES.get(name, ()), *TEXT_EDGES, *NUMBER_EDGES}:
            for value in (edge, *(plain + edge for plain in plains), *(edge + plain for plain in plains)):
                row = {**PLAIN_ROW, name: value}
                cells = list(row.values())
                if not agrees_with_the_model(plain_key(cells), row):
                    wrong.append((name, value))
                if judged(CONTRACT, ALL_COLUMNS, cells, row) != judged(MODEL_ONLY, ALL_COLUMNS, cells, row):
                    differ.append((name, value))
    assert wrong == []
    assert differ == []


NEAR_TEXT = st.text(alphabet='a"\\ é', max_size=3)
"""Texts of a tiny alphabet, so that two draws are often equal or differ by one escape."""
NEAR_NUMBER = st.sampled_from(("", "1", "1.0", "1.5", "1.50", "15", "2"))
NEAR_VALUES = {
    "year": st.sampled_from(("1990", "1991", " 1990")),
    "length": NEAR_NUMBER,
    "title": st.builds("t{}".format, NEAR_TEXT),
    **{name: NEAR_TEXT for name in ("subject", "actor", "actress", "director")},
    "popularity": NEAR_NUMBER,
    "awards": st.sampled_from(("", "Yes", "no", "NO")),
    "image": st.sampled_from(("", "a.png", 'a".png', "a\\.png")),
}


@st.composite
def near_films(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str]]:
    """The cells of two valid films, the second the first with up to two values drawn again: the same record
    as often as not, or one that differs by a spelling, an escape or a value moved to the next field."""
    first = {name: draw(values) for name, values in NEAR_VALUES.items()}
    second = dict(first)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        second[name] = draw(NEAR_VALUES[name])
    return first, second


@PROPERTY
@given(near_films())
@example(({**PLAIN_ROW, "subject": 'a"', "actor": "b"}, {**PLAIN_ROW, "subject": "a", "actor": '"b'}))
@example(({**PLAIN_ROW, "subject": "\\", "actor": '"'}, {**PLAIN_ROW, "subject": '\\"', "actor": ""}))
def test_record_keys_are_equal_exactly_when_bodies_are(films: tuple[dict[str, str], dict[str, str]]) -> None:
    """Two films have the same record_key if and only if to_json gives them the same body: the key neither
    merges different records (a quote or backslash in a text cannot shift a value into the next one) nor
    tells the same record apart; and the fast path, where it takes either, gives the same keys."""
    first, second = films
    one, other = (CONTRACT.validate(values) for values in (first, second))
    assert isinstance(one, Movie), one
    assert isinstance(other, Movie), other
    same = to_json(one) == to_json(other)
    event("same record" if same else "different records")
    assert (record_key(one) == record_key(other)) is same
    for values in (first, second):
        cells = list(values.values())
        assert judged(CONTRACT, ALL_COLUMNS, cells, values) == judged(MODEL_ONLY, ALL_COLUMNS, cells, values)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, {"year": 1943, "length": 108, "popularity": 88, "awards": "Yes"}, id="benchmark-row"),
        pytest.param({"year": "1888"}, {"year": 1888}, id="first-year-inclusive"),
        pytest.param({"year": str(MAX_YEAR)}, {"year": MAX_YEAR}, id="max-year-inclusive"),
        pytest.param({"length": "", "popularity": ""}, {"length": None, "popularity": None}, id="empty-numbers-null"),
        pytest.param({"length": "1.50"}, {"length": 1.5}, id="decimal-length"),
        pytest.param({"popularity": "100.000"}, {"popularity": 100.0}, id="popularity-100-decimal-inclusive"),
        pytest.param({"popularity": "0"}, {"popularity": 0}, id="popularity-zero"),
        pytest.param({"awards": "nO"}, {"awards": "No"}, id="awards-any-case"),
        pytest.param({"awards": "", "image": ""}, {"awards": "", "image": ""}, id="awards-and-image-empty"),
        pytest.param({"title": "天国と地獄 🎬"}, {"title": "天国と地獄 🎬"}, id="text-beyond-ascii"),
        pytest.param({"image": "a b/c.jpeg"}, {"image": "a b/c.jpeg"}, id="image-with-space-and-folder"),
    ],
)
def test_plainly_valid_rows_take_the_fast_path(changes: dict[str, str], expected: dict[str, object]) -> None:
    """A plainly valid row gets its key from the fast path, and its body the values the model would give."""
    cells = list({**PLAIN_ROW, **changes}.values())
    key = CONTRACT.plain_key(ALL_COLUMNS)(cells)
    assert key is not None
    movie = Movie.model_validate(dict(zip(FIELDS, cells, strict=True)), context={"max_year": MAX_YEAR})
    assert key == record_key(movie)
    body = plain_body(key)
    assert body == to_json(movie)
    sent = json.loads(body)
    assert list(sent) == list(FIELDS)
    assert {name: (sent[name], type(sent[name])) for name in expected} == {
        name: (value, type(value)) for name, value in expected.items()
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("year", "1887", id="year-before-1888-is-refused-by-the-model"),
        pytest.param("year", str(MAX_YEAR + 1), id="year-after-max-is-refused-by-the-model"),
        pytest.param("year", "01990", id="year-leading-zero-left-to-the-model"),
        pytest.param("year", "+1990", id="year-sign-left-to-the-model"),
        pytest.param("length", "007", id="number-leading-zero-left-to-the-model"),
        pytest.param("length", "1e3", id="number-exponent-left-to-the-model"),
        pytest.param("length", "0.0", id="length-zero-decimal-is-refused-by-the-model"),
        pytest.param("length", "0.0001", id="decimal-beyond-3-places-left-to-the-model"),
        pytest.param("length", "9" * 16, id="integer-beyond-15-digits-left-to-the-model"),
        pytest.param("popularity", "100.5", id="popularity-above-100-is-refused-by-the-model"),
        pytest.param("popularity", "-0", id="negative-zero-left-to-the-model"),
        pytest.param("awards", " no ", id="awards-to-trim-left-to-the-model"),
        pytest.param("awards", "yeſ", id="awards-non-ascii-case-fold-left-to-the-model"),
        pytest.param("title", " Heat", id="text-to-trim-left-to-the-model"),
        pytest.param("title", "Heat\xa0", id="no-break-space-at-the-end-left-to-the-model"),
        pytest.param("title", "", id="empty-title-is-refused-by-the-model"),
        pytest.param("title", 'Say "hi"', id="quote-to-escape-left-to-the-model"),
        pytest.param("title", "a\\b", id="backslash-to-escape-left-to-the-model"),
        pytest.param("title", "a\tb", id="tab-to-escape-left-to-the-model"),
        pytest.param("title", "a\nb", id="newline-left-to-the-model"),
        pytest.param("subject", "caf\ufffd", id="replacement-character-is-refused-by-the-model"),
        pytest.param("actor", "a\x07", id="control-character-is-refused-by-the-model"),
        pytest.param("director", "\udcff", id="undecoded-byte-is-refused-by-the-model"),
        pytest.param("image", "a.PNG", id="image-upper-case-is-refused-by-the-model"),
        pytest.param("image", ".png", id="image-without-name-is-refused-by-the-model"),
    ],
)
def test_rows_that_are_not_plain_are_left_to_the_model(field: str, value: str) -> None:
    """A row with a value to trim, escape, convert or refuse gets no key from the fast path."""
    cells = list({**PLAIN_ROW, field: value}.values())
    assert CONTRACT.plain_key(ALL_COLUMNS)(cells) is None


@pytest.mark.parametrize(
    ("columns", "extra"),
    [
        pytest.param(list(FIELDS), [], id="the-fields-in-order-used-as-they-are"),
        pytest.param(list(FIELDS), ["notes"], id="in-order-then-an-extra-column"),
        pytest.param(["notes", *FIELDS], [], id="an-extra-column-first"),
        pytest.param(list(reversed(FIELDS)), [], id="the-fields-in-another-order"),
    ],
)
def test_the_rows_width_changes_nothing_but_speed(columns: list[str], extra: list[str]) -> None:
    """With or without the row's width, each layout of a plain row gets the model's key."""
    cells = [PLAIN_ROW.get(name, "notes") for name in columns] + extra
    positions = {name: index for index, name in enumerate(columns) if name in FIELDS}
    expected = record_key(Movie.model_validate(PLAIN_ROW, context={"max_year": MAX_YEAR}))
    assert CONTRACT.plain_key(positions, len(cells))(cells) == expected
    assert CONTRACT.plain_key(positions)(cells) == expected


def test_absent_columns_are_sent_empty() -> None:
    """With only title and year in the header, the fast path sends the model's defaults for the rest."""
    key = CONTRACT.plain_key({"year": 2, "title": 0})(["Heat", "notes", "1995"])
    assert key is not None
    assert plain_body(key) == to_json(Movie.model_validate({"title": "Heat", "year": "1995"}))


@pytest.mark.parametrize("width", [len(FIELDS), None], ids=["width-known", "width-unknown"])
def test_with_the_fast_path_off_every_row_is_left_to_the_model(width: int | None) -> None:
    """Contract(fast_path=False) answers None for every row, the plainest included, and for a generator of rows
    as for a list."""
    plain = [list(PLAIN_ROW.values()), list({**PLAIN_ROW, "awards": "no", "length": "1.50"}.values())]
    rows = [*plain, ["x"] * len(FIELDS)]
    assert None not in CONTRACT.plain_keys(ALL_COLUMNS, width)(plain), "with the fast path on, the rows take it"
    assert MODEL_ONLY.plain_keys(ALL_COLUMNS, width)(rows) == [None, None, None]
    assert MODEL_ONLY.plain_keys(ALL_COLUMNS, width)(row for row in rows) == [None, None, None]
    assert MODEL_ONLY.plain_key(ALL_COLUMNS, width)(rows[0]) is None


def test_a_plain_form_with_a_group_needs_a_rule_to_spell_it() -> None:
    """A group in a plain form means the key spells the cell as the field's PlainValidator makes it: a field
    without one (or a form with two groups) is refused when the fast path is made, not at the first such row."""
    grouped = Field("country", TEXT, (TEXT_RULE,), r"(FR|DE)|", "")
    contract = Contract(max_year=MAX_YEAR, terms=terms_of((*FILM, grouped)))
    with pytest.raises(ValueError, match="country must hold one group at most, and then a PlainValidator"):
        contract.plain_keys({"title": 0, "year": 1})


def test_the_year_limit_is_the_contracts() -> None:
    """The fast path refuses a year after the contract's max_year, whatever the calendar says."""
    cells = list({**PLAIN_ROW, "year": "2020"}.values())
    assert Contract(max_year=2019).plain_key(ALL_COLUMNS)(cells) is None
    assert Contract(max_year=2020).plain_key(ALL_COLUMNS)(cells) is not None


# --- the pipeline with and without the fast path -------------------------------------------------

TIMINGS = ("elapsed_s", "rows_per_s", "report_dir")


@pytest.mark.parametrize(
    ("options", "left_to_the_model"),
    [
        # the extras include a film whose title holds a line break: valid, but not plain
        pytest.param({"extras": True}, 1, id="utf8-comma-with-structural-defects"),
        pytest.param({"encoding": "cp1252", "delimiter": ";", "type_row": True}, 0, id="cp1252-semicolon-type-row"),
    ],
)
def test_a_dry_run_reports_the_same_with_and_without_the_fast_path(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    left_to_the_model: int,
) -> None:
    """A dirty generated file gives the same summary, rejected.csv and duplicates.csv whether its plain rows take
    the fast path or all go through the model; and the accepted rows did take it, but for the odd one."""
    path = tmp_path / "films.csv"
    write(path, 2000, seed=5, **options)
    taken: list[bool] = []
    plain_keys = Contract.plain_keys

    def counted(contract: Contract, positions: Mapping[str, int], width: int | None = None) -> PlainKeys:
        fast = plain_keys(contract, positions, width)

        def keys(rows: Iterable[Sequence[str]]) -> list[str | None]:
            found = fast(rows)
            taken.extend(key is not None for key in found)
            return found

        return keys

    def runs(label: str) -> tuple[dict[str, Any], bytes, bytes]:
        report_dir = tmp_path / label
        summary = pipeline.run(make_settings(csv_in=path, dry_run=True, report_dir=report_dir)).summary
        return (
            {key: value for key, value in summary.items() if key not in TIMINGS},
            (report_dir / REJECTED).read_bytes(),
            (report_dir / DUPLICATES).read_bytes(),
        )

    monkeypatch.setattr(Contract, "plain_keys", counted)
    fast = runs("fast")
    monkeypatch.setattr(
        Contract,
        "plain_keys",
        lambda contract, *layout: plain_keys(Contract(contract.max_year, fast_path=False), *layout),
    )
    slow = runs("model-only")

    assert fast == slow
    accepted = fast[0]["valid"] + fast[0]["duplicates"]
    assert accepted > 1800
    assert sum(taken) == accepted - left_to_the_model
