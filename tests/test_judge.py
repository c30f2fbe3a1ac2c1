"""The judge: each row of a chunk valid with its record key, or invalid with its stage and every problem.

The fast path keys the plainly valid rows without the model; any other row is the model's, which then also
hands over its Movie. Either way a row gets the key `record_key` gives for the model's record, whatever the
layout of the columns, and with the fast path off every verdict is the same.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from movymporter.chunk import NO_PROBLEMS, Chunk, Record
from movymporter.judge import READ, VALIDATE, Judge, Judged
from movymporter.problems import ReadProblem
from movymporter.reader import CsvInput
from movymporter.schema import FIELDS, Contract, Movie, column_positions, record_key

MAX_YEAR = 2026
FAST = Contract(max_year=MAX_YEAR)
MODEL_ONLY = Contract(max_year=MAX_YEAR, fast_path=False)
CONTRACTS = [pytest.param(FAST, id="fast-path"), pytest.param(MODEL_ONLY, id="model-only")]
IN_ORDER = {name: index for index, name in enumerate(FIELDS)}
PLAIN = {
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
"""A plainly valid film, its cells as an export spells them."""


def film(**changes: str) -> dict[str, str]:
    """PLAIN with some cells changed."""
    return {**PLAIN, **changes}


def cells_of(values: dict[str, str]) -> list[str]:
    """A film's cells in the fields' own order (an absent field is an empty cell)."""
    return [values.get(name, "") for name in FIELDS]


def chunk_of(*rows: list[str], first_line: int = 2) -> Chunk:
    """Single-line rows read without a problem, one after the other: a chunk as the reader hands out most."""
    lines = range(first_line, first_line + len(rows))
    return Chunk([list(row) for row in rows], lines, lines, NO_PROBLEMS)


def judge_of(contract: Contract = FAST, positions: dict[str, int] | None = None, width: int | None = None) -> Judge:
    return Judge(contract, IN_ORDER if positions is None else positions, len(FIELDS) if width is None else width)


def model_record(values: dict[str, str]) -> Movie:
    """What the model makes of a valid row: the record whose key and body a judged row must have."""
    movie = MODEL_ONLY.validate(values)
    assert isinstance(movie, Movie), movie
    return movie


# --- which rows the fast path keys, and which the model judges ------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(PLAIN, id="every-cell-plain"),
        pytest.param(
            film(length="", subject="", actor="", actress="", director="", popularity="", awards="", image=""),
            id="optional-cells-empty",
        ),
        pytest.param(film(awards="no"), id="awards-in-another-case-are-respelt"),
        pytest.param(film(length="1.5", popularity="68.25"), id="a-decimal-of-few-places-is-respelt"),
        pytest.param(film(title="天国と地獄", director="Almodóvar, Pedro"), id="text-beyond-ascii"),
    ],
)
def test_a_plainly_valid_row_is_keyed_by_the_fast_path(values: dict[str, str]) -> None:
    """A plain row gets the key record_key gives its record, and no Movie: the model never saw it."""
    judged = judge_of().judge(chunk_of(cells_of(values)))
    assert judged == Judged([record_key(model_record(values))])


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(film(awards=" yes "), id="awards-padded-with-spaces"),
        pytest.param(film(length="108.1234"), id="a-decimal-of-four-places"),
        pytest.param(film(length="1.08e2"), id="a-number-with-an-exponent"),
        pytest.param(film(popularity="+5"), id="a-number-with-a-sign"),
        pytest.param(film(year=" 1943"), id="a-year-padded-with-a-space"),
        pytest.param(film(title='Say "Hi"'), id="a-quoted-title"),
        pytest.param(film(title="Back\\slash"), id="a-title-with-a-backslash"),
        pytest.param(film(title="  Paper Moon  "), id="a-title-to-trim"),
        pytest.param(film(subject="Drama\tNoir"), id="a-tab-inside-text"),
    ],
)
def test_a_row_the_fast_path_is_unsure_of_is_judged_by_the_model(values: dict[str, str]) -> None:
    """Such a row is valid with the model's Movie and the key record_key gives for it."""
    movie = model_record(values)
    judged = judge_of().judge(chunk_of(cells_of(values)))
    assert judged == Judged([record_key(movie)], movies={0: movie})


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    ("values", "failing"),
    [
        pytest.param(film(year="1887"), [("constraint-error", "year")], id="a-year-before-the-first-film"),
        pytest.param(film(year=str(MAX_YEAR + 1)), [("constraint-error", "year")], id="a-year-after-the-last"),
        pytest.param(film(title=" "), [("constraint-error", "title")], id="a-blank-title"),
        pytest.param(film(length="1,5"), [("type-error", "length")], id="a-decimal-comma"),
        pytest.param(film(image="cover.gif"), [("constraint-error", "image")], id="an-image-that-is-not-one"),
        pytest.param(
            film(year="1990.0", length="-1", title="", popularity="101", awards="maybe", image="x.txt"),
            [
                ("type-error", "year"),
                ("constraint-error", "length"),
                ("constraint-error", "title"),
                ("constraint-error", "popularity"),
                ("constraint-error", "awards"),
                ("constraint-error", "image"),
            ],
            id="every-problem-of-the-row-not-just-the-first",
        ),
    ],
)
def test_an_invalid_row_is_refused_at_validate_with_every_problem(
    contract: Contract, values: dict[str, str], failing: list[tuple[str, str]]
) -> None:
    """No key and no Movie; the problems are the model's, each field's in the fields' order."""
    judged = judge_of(contract).judge(chunk_of(cells_of(values)))
    assert judged == Judged([None], problems={0: (VALIDATE, MODEL_ONLY.validate(values))})
    _, problems = judged.problems[0]
    assert [(problem.code, problem.field) for problem in problems] == failing  # type: ignore[attr-defined]


# --- rows that could not be read ------------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    "record",
    [
        pytest.param(
            Record(4, 4, cells_of(PLAIN), ReadProblem("encoding-error", "bytes 0xE9 are not valid utf-8")),
            id="cells-that-would-be-valid",
        ),
        pytest.param(
            Record(4, 4, ["1943", "108"], ReadProblem("missing-cell", "the row has 2 fields, the header has 10")),
            id="too-few-cells-to-validate",
        ),
        pytest.param(
            Record(4, 7, ['1943,"Paper'], ReadProblem("source-error", "a quoted field is not closed")),
            id="a-record-over-several-lines",
        ),
        pytest.param(Record(4, 4, [], ReadProblem("source-error", "malformed CSV")), id="a-record-without-cells"),
    ],
)
def test_a_record_that_could_not_be_read_is_refused_at_read_and_never_validated(
    contract: Contract, record: Record
) -> None:
    """Its one problem is the reader's, whatever its cells would make of it."""
    judged = judge_of(contract).judge(Chunk.of(record))
    assert judged == Judged([None], problems={0: (READ, (record.problem,))})


@pytest.mark.parametrize("contract", CONTRACTS)
def test_the_other_rows_of_a_chunk_with_a_read_problem_are_judged_on_their_own(contract: Contract) -> None:
    """A read problem is its row's: the rows around it are valid (by the model) or invalid as they would be alone."""
    problem = ReadProblem("extra-cell", "the row has 11 fields, the header has 10")
    valid, invalid = film(title="Heat"), film(year="1700")
    chunk = Chunk([cells_of(valid), [*cells_of(PLAIN), "extra"], cells_of(invalid)], [2, 3, 4], [2, 3, 4], {1: problem})
    judged = judge_of(contract).judge(chunk)
    movie = model_record(valid)
    assert judged == Judged(
        [record_key(movie), None, None],
        movies={0: movie},
        problems={1: (READ, (problem,)), 2: (VALIDATE, MODEL_ONLY.validate(invalid))},
    )


# --- records over several lines -------------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    ("values", "line", "end"),
    [
        pytest.param(film(title="Paper\r\nMoon"), 5, 6, id="a-title-over-two-lines"),
        pytest.param(film(title="Paper\r\n\r\nMoon"), 5, 7, id="a-title-with-a-blank-line-inside"),
        pytest.param(
            film(title="Paper\r\nMoon", director="García,\r\nTeresa", image="Olsen\r\nSven.jpg"),
            5,
            8,
            id="several-cells-over-several-lines",
        ),
        pytest.param(film(subject="Drama\r\n"), 5, 6, id="a-line-end-at-the-end-of-a-cell"),
    ],
)
def test_a_record_over_several_lines_of_a_crlf_file_reads_its_line_ends_as_newlines(
    contract: Contract, values: dict[str, str], line: int, end: int
) -> None:
    """Inside its cells "\\r\\n" is the file's line end, not data: the record is judged as if it were "\\n", and the
    chunk's cells are left as they were read."""
    cells = cells_of(values)
    newlines = {name: value.replace("\r\n", "\n") for name, value in values.items()}
    movie = model_record(newlines)

    judged = judge_of(contract).judge(Chunk.of(Record(line, end, cells)))

    assert judged == Judged([record_key(movie)], movies={0: movie})
    assert judged == judge_of(contract).judge(Chunk.of(Record(line, line, cells_of(newlines))))
    assert cells == cells_of(values)


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    ("title", "line", "end"),
    [
        pytest.param("Paper\r\nMoon", 5, 5, id="crlf-in-a-record-of-one-line-is-data"),
        pytest.param("Paper\rMoon", 5, 6, id="a-lone-carriage-return-in-a-record-over-lines-is-data"),
    ],
)
def test_only_the_line_ends_of_a_record_over_several_lines_are_newlines(
    contract: Contract, title: str, line: int, end: int
) -> None:
    """A carriage return that is not part of a line end the record spans is a control character in the title."""
    judged = judge_of(contract).judge(Chunk.of(Record(line, end, cells_of(film(title=title)))))
    assert judged.keys == [None]
    _, problems = judged.problems[0]
    assert [str(problem) for problem in problems] == ["constraint-error: title contains a control character (U+000D)"]


def test_a_crlf_file_and_its_lf_copy_are_judged_alike(tmp_path: Path) -> None:
    """Read by the reader, a film whose title and director span three lines is the same record whichever line end
    the file has."""
    text = 'year,title,director\n1990,"Paper\nMoon","García,\nTeresa"\n1991,Heat,"Mann, Michael"\n'
    verdicts = {}
    for name, line_end in (("lf", "\n"), ("crlf", "\r\n")):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(text.replace("\n", line_end).encode())
        with CsvInput(path) as source:
            judge = Judge(FAST, column_positions(source.names, source.header), len(source.header))
            chunks = list(source.chunks())
        assert [(list(chunk.lines), list(chunk.ends)) for chunk in chunks] == [([2], [4]), ([5], [5])], name
        verdicts[name] = [judge.judge(chunk) for chunk in chunks]
    assert verdicts["crlf"] == verdicts["lf"]
    assert verdicts["lf"][0].movies[0] == model_record(
        {"year": "1990", "title": "Paper\nMoon", "director": "García,\nTeresa"}
    )


# --- the fast path changes nothing but the speed -------------------------------------------------------------------

EDGE_ROWS = [
    pytest.param(PLAIN, id="plain"),
    pytest.param(film(awards="YES"), id="awards-upper-case"),
    pytest.param(film(awards="nO"), id="awards-mixed-case"),
    pytest.param(film(awards=" No"), id="awards-padded"),
    pytest.param(film(awards="y"), id="awards-not-a-choice"),
    pytest.param(film(length="1.5"), id="length-decimal"),
    pytest.param(film(length="1.50"), id="length-trailing-zero"),
    pytest.param(film(length="0.5"), id="length-below-one"),
    pytest.param(film(length="0"), id="length-zero"),
    pytest.param(film(length="007"), id="length-leading-zeros"),
    pytest.param(film(length="1e3"), id="length-exponent"),
    pytest.param(film(length="inf"), id="length-infinite"),
    pytest.param(film(length="9" * 16), id="length-beyond-the-plain-digits"),
    pytest.param(film(popularity="100"), id="popularity-at-the-top"),
    pytest.param(film(popularity="100.0"), id="popularity-top-as-decimal"),
    pytest.param(film(popularity="100.5"), id="popularity-over-the-top"),
    pytest.param(film(popularity="99.999"), id="popularity-three-places"),
    pytest.param(film(year="1888"), id="year-first"),
    pytest.param(film(year=str(MAX_YEAR)), id="year-last"),
    pytest.param(film(year="01990"), id="year-zero-padded"),
    pytest.param(film(year="+1990"), id="year-signed"),
    pytest.param(film(year="１９９０"), id="year-in-fullwidth-digits"),
    pytest.param(film(title='"'), id="title-a-quote"),
    pytest.param(film(title="a\\b"), id="title-a-backslash"),
    pytest.param(film(title="\ufffd"), id="title-replacement-character"),
    pytest.param(film(title="a\x00b"), id="title-nul"),
    pytest.param(film(title="a\nb"), id="title-newline"),
    pytest.param(film(title="a\xa0"), id="title-ending-in-a-no-break-space"),
    pytest.param(film(title="\u2028"), id="title-line-separator"),
    pytest.param(film(actor=" Pacino, Al "), id="actor-to-trim"),
    pytest.param(film(image="a.PNG"), id="image-extension-upper-case"),
    pytest.param(film(image=" a.png"), id="image-padded"),
    pytest.param(film(image="..png"), id="image-dots"),
]


@pytest.mark.parametrize("values", EDGE_ROWS)
def test_the_model_alone_gives_every_verdict_the_fast_path_gives(values: dict[str, str]) -> None:
    """With fast_path=False the keys and problems are the same, alone or among plain rows, and every valid row
    has the Movie its key was made from."""
    for rows in ([cells_of(values)], [cells_of(PLAIN), cells_of(values), cells_of(film(title="Heat"))]):
        fast, model = judge_of(FAST).judge(chunk_of(*rows)), judge_of(MODEL_ONLY).judge(chunk_of(*rows))
        assert (fast.keys, fast.problems) == (model.keys, model.problems)
        valid = [index for index, key in enumerate(model.keys) if key is not None]
        assert sorted(model.movies) == valid
        assert [record_key(model.movies[index]) for index in valid] == [model.keys[index] for index in valid]
        assert fast.movies == {index: movie for index, movie in model.movies.items() if index in fast.movies}


def test_judging_is_pure() -> None:
    """The same chunk is judged the same every time, by any judge of the input, and is not changed by it."""
    chunk = chunk_of(*(cells_of(param.values[0]) for param in EDGE_ROWS))  # type: ignore[arg-type]
    before = copy.deepcopy(chunk.cells)
    first = judge_of().judge(chunk)
    assert judge_of().judge(chunk) == first
    assert judge_of().judge(chunk) == first
    assert chunk.cells == before
    # The table holds rows of each kind: plain, judged by the model, invalid.
    assert first.movies
    assert first.problems
    assert any(key is not None and index not in first.movies for index, key in enumerate(first.keys))


# --- the layout of the columns --------------------------------------------------------------------------------------

EXTRA = 'an "extra" cell, with \\ and ;'
"""The cell of a column that is not a field: quotes and a backslash, which no plain cell of a field holds."""
FILMS = [
    PLAIN,
    film(title="Heat", awards=" yes ", length="170.5"),
    film(title='Say "Hi"', image=""),
    film(year="1700", popularity="101"),
]
"""A plain row, two the model judges and an invalid one."""


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(list(FIELDS), id="the-fields-in-their-order"),
        pytest.param(list(reversed(FIELDS)), id="columns-in-reverse-order"),
        pytest.param(["title", "image", "year", *FIELDS[1:2], *FIELDS[3:9]], id="columns-shuffled"),
        pytest.param(["id", *FIELDS, "notes"], id="extra-columns-around"),
        pytest.param([*FIELDS[:5], "notes", *FIELDS[5:]], id="an-extra-column-among-them"),
        pytest.param(["year", "title"], id="only-the-required-columns"),
        pytest.param(["notes", "title", "awards", "year"], id="some-optional-columns-absent-and-an-extra-one"),
    ],
)
def test_the_layout_of_the_columns_does_not_change_the_verdicts(contract: Contract, header: list[str]) -> None:
    """Columns in another order, columns that are not fields, absent optional columns (read as empty cells):
    each film gets the verdict it gets with its fields in their order."""
    fields = [name for name in header if name in FIELDS]
    rows = [[values[name] if name in FIELDS else EXTRA for name in header] for values in FILMS]
    expected = [{name: values[name] for name in fields} for values in FILMS]

    judged = Judge(contract, column_positions(header), len(header)).judge(chunk_of(*rows))
    in_order = judge_of(contract).judge(chunk_of(*map(cells_of, expected)))

    assert (judged.keys, judged.problems, judged.movies) == (in_order.keys, in_order.problems, in_order.movies)
    assert judged.keys[:3] == [record_key(model_record(values)) for values in expected[:3]]
    assert judged.keys[3] is None
