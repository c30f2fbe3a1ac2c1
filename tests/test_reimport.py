"""Re-importing rejected.csv: an unedited report delivers nothing and rejects every row again, the same way.

A row refused at stage read is judged again by the problem it was reported for (an unbalanced quote is still
unbalanced once the row is written back as one line, an undecodable byte is still there, a cut row is still
cut), so the quote of a set-aside line never comes back as data; rows refused by validation are refused again
because validation is deterministic. Only an edit changes that. The report of a report numbers its rows by the
physical lines of the rejected.csv read, so rows are compared by position, stage, reason and cells.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.generate import Expected
from movymporter.lines import KEPT, LINE_LIMIT
from movymporter.problems import CUT_NOTE
from movymporter.report import REJECTED
from movymporter.settings import Settings
from tests.test_fuzz import check_accounting, dry_run, hostile_csv, note, records_with_start_lines, report_encoding

ROOT = Path(__file__).resolve().parent.parent
FILMS = ROOT / "examples" / "films.csv"
UNCLOSED_LINE = 128
"""Line of examples/films.csv with `"Unclosed Quote`: a source-error, its quote never closed."""

REIMPORT = settings(
    # As many examples as the Hypothesis profile gives: each runs the importer twice.
    deadline=None,
    # make_settings and generated are factories: each example passes its own folders.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

Row = list[str]


def report_rows(report_dir: Path, summary: dict[str, object]) -> list[Row]:
    """The rows of a run's rejected.csv after its header, each without its line number: stage, reason, cells."""
    rows = records_with_start_lines(
        report_dir / REJECTED, delimiter=str(summary["delimiter"]), encoding=str(summary["report_encoding"])
    )
    return [cells[1:] for _, cells in rows[1:]]


def read_as(report: Path, input_encoding: str) -> dict[str, str]:
    """The options to read a report with: one with a byte-order mark is detected like any input; one without is
    in its input's encoding, which detection may not find in the few rows of a report (a cp1252 accent pair can
    be valid UTF-8)."""
    with report.open("rb") as handle:
        marked = handle.read(3).startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))
    return {} if marked else {"encoding": input_encoding}


def assert_refused_again(
    make_settings: Callable[..., Settings], path: Path, folder: Path, *, check: bytes | None = None
) -> list[Row]:
    """Dry-run `path`, then its rejected.csv unchanged: nothing is valid the second time, and the second report
    lists the rows of the first in order, with the same stage, reason and cells. Returns the first report's rows
    ([] when the file itself is refused)."""
    first_dir, second_dir = folder / "first", folder / "second"
    first = dry_run(make_settings, path, first_dir)
    if first is None:
        return []
    if check is not None:
        check_accounting(check, path, first, first_dir)
    refused = report_rows(first_dir, first.summary)
    report = first_dir / REJECTED

    second = dry_run(make_settings, report, second_dir, **read_as(report, str(first.summary["encoding"])))

    assert second is not None, "a rejected.csv can always be imported again"
    summary = second.summary
    assert (summary["valid"], summary["duplicates"]) == (0, 0), "an unedited rejected.csv delivers nothing"
    assert summary["invalid"] == summary["rows"] == len(refused)
    assert report_rows(second_dir, summary) == refused
    for stage, reason, *_ in refused:
        note(f"refused again at {stage}: {reason.split(':')[0]}")
    return refused


# --- the bundled sample ---------------------------------------------------------------------------------------


def test_unclosed_quote_of_the_sample_is_refused_again_at_stage_read(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Line 128 of examples/films.csv is a source-error; in its rejected.csv, fed back unchanged, it is again a
    source-error with the same reason, and so is every other row: nothing is valid."""
    refused = assert_refused_again(make_settings, FILMS, tmp_path)

    unclosed = [row for row in refused if '"Unclosed Quote' in row]
    assert len(unclosed) == 1
    stage, reason, *cells = unclosed[0]
    assert stage == "read"
    assert reason.startswith("source-error: a quote opened on this line runs on")
    assert cells[2] == '"Unclosed Quote'
    first = records_with_start_lines(tmp_path / "first" / REJECTED, delimiter=";", encoding="utf-8-sig")
    assert [int(cells[0]) for _, cells in first[1:] if cells[1:] == unclosed[0]] == [UNCLOSED_LINE]


def test_a_fixed_unclosed_quote_goes_on_to_validation(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    """Once its stray quote is taken out in rejected.csv, the row of line 128 is read and validated: it is valid,
    and it is the only row of the report that is."""
    first = dry_run(make_settings, FILMS, tmp_path / "first")
    assert first is not None
    report = tmp_path / "first" / REJECTED
    data = report.read_bytes()
    assert data.count(b'"""Unclosed Quote"') == 1
    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(data.replace(b'"""Unclosed Quote"', b"Unclosed Quote"))

    second = dry_run(make_settings, fixed, tmp_path / "second", **read_as(fixed, "cp1252"))

    assert second is not None
    assert (second.summary["valid"], second.summary["invalid"]) == (1, first.summary["invalid"] - 1)
    assert b"Unclosed Quote" not in (tmp_path / "second" / REJECTED).read_bytes()


def test_wrong_width_rows_count_their_fields_without_the_report_columns(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A missing-cell row edited to another wrong width gives its new count of fields and the input's header
    width, not counts that take in the report's line, stage and reason columns."""
    first = dry_run(make_settings, FILMS, tmp_path / "first")
    assert first is not None
    report = tmp_path / "first" / REJECTED
    data = report.read_bytes()
    row = b";read;missing-cell: the row has 5 fields, the header has 10;2003;133;Garden;Romance;"
    assert data.count(row) == 1
    edited = tmp_path / "edited.csv"
    edited.write_bytes(data.replace(row, row + b"Drama;"))

    second = dry_run(make_settings, edited, tmp_path / "second", **read_as(edited, "cp1252"))

    assert second is not None
    reasons = [reason for _, reason, *_ in report_rows(tmp_path / "second", second.summary)]
    assert "missing-cell: the row has 6 fields, the header has 10" in reasons
    assert not [reason for reason in reasons if "the header has 13" in reason]


def test_a_row_cut_for_its_length_is_refused_again_even_once_edited(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A line of 3 Mi characters is one rejected row of its first KEPT characters, on its own line, and the rows
    after it are read and counted; fed back, even edited into a valid film, it is refused with its reason: its
    data are incomplete, the fix belongs in the original file."""
    path = tmp_path / "long.csv"
    path.write_bytes(b"title,year\nA,2001\n" + b"x" * (3 * LINE_LIMIT) + b",2000\n\nB,2002\nC,2003\n")
    first = dry_run(make_settings, path, tmp_path / "first")
    assert first is not None
    summary = first.summary
    assert (summary["rows"], summary["valid"], summary["invalid"], summary["blank"]) == (4, 3, 1, 1)
    [_, (_, cut)] = records_with_start_lines(tmp_path / "first" / REJECTED, delimiter=",", encoding="utf-8")
    reason = f"source-error: the line is longer than {LINE_LIMIT} characters; {CUT_NOTE}"
    assert cut == ["3", "read", reason, "x" * KEPT]
    edited = tmp_path / "edited.csv"
    edited.write_bytes((tmp_path / "first" / REJECTED).read_bytes().replace(b"x" * KEPT, b"Fixed,2000"))

    assert_refused_again(make_settings, path, tmp_path / "unedited")
    again = dry_run(make_settings, edited, tmp_path / "second")

    assert again is not None
    assert (again.summary["valid"], again.summary["invalid"]) == (0, 1)
    assert report_rows(tmp_path / "second", again.summary) == [["read", reason, "Fixed", "2000"]]


# --- properties -----------------------------------------------------------------------------------------------


@REIMPORT
@given(data=hostile_csv())
def test_an_unedited_rejected_csv_of_a_hostile_file_is_refused_again_row_for_row(
    data: bytes, make_settings: Callable[..., Settings]
) -> None:
    """Whatever the file, its rejected.csv fed back unchanged has no valid row, and its report repeats the first
    one's rows in order, each with the same stage, reason and cells."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.csv"
        path.write_bytes(data)
        assert_refused_again(make_settings, path, Path(folder), check=data)


@REIMPORT
@given(data=hostile_csv())
def test_a_rejected_csv_written_in_utf8_is_refused_again_with_the_same_reasons(
    data: bytes, make_settings: Callable[..., Settings]
) -> None:
    """A report written in its input's encoding (REPORT_ENCODING=input) and turned into UTF-8 with a byte-order mark
    (bytes that were not text in the input kept as they were) is read in UTF-8: its rows are refused again with the
    reasons the first import gave, which named the input's encoding."""
    with tempfile.TemporaryDirectory() as folder:
        path, first_dir = Path(folder) / "input.csv", Path(folder) / "first"
        path.write_bytes(data)
        first = dry_run(make_settings, path, first_dir, report_encoding="input")
        if first is None:
            return
        encoding = str(first.summary["encoding"])
        text = (first_dir / REJECTED).read_bytes().decode(report_encoding(encoding), errors="surrogateescape")
        utf8 = Path(folder) / "rejected-utf8.csv"
        utf8.write_bytes(text.encode("utf-8-sig", errors="surrogateescape"))

        second = dry_run(make_settings, utf8, Path(folder) / "second")

        assert second is not None
        assert second.summary["encoding"] == "utf-8-sig"
        assert second.summary["valid"] == 0
        assert report_rows(Path(folder) / "second", second.summary) == report_rows(first_dir, first.summary)
        if encoding != "utf-8":
            note(f"a {encoding} report read as UTF-8")


@REIMPORT
@given(
    seed=st.integers(0, 2**16),
    encoding=st.sampled_from(("utf-8", "cp1252")),  # the generator writes its stray byte for these only
    delimiter=st.sampled_from((",", ";", "\t", "|")),
    type_row=st.booleans(),
)
def test_an_unedited_rejected_csv_of_a_generated_export_is_refused_again_row_for_row(
    seed: int,
    encoding: str,
    delimiter: str,
    type_row: bool,
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """A realistic export with every kind of defect: its rejected.csv fed back unchanged is refused row for row,
    the unbalanced quote and the byte in the wrong encoding at stage read, the others at validation."""
    path, expected = generated(
        120, seed=seed, encoding=encoding, delimiter=delimiter, type_row=type_row, defect_rate=0.2, extras=True
    )
    with tempfile.TemporaryDirectory() as folder:
        refused = assert_refused_again(make_settings, path, Path(folder))
    assert len(refused) == len(expected.invalid_lines)
    assert any(stage == "read" and reason.startswith("source-error") for stage, reason, *_ in refused)
