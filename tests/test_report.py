"""The reports: spreadsheet-safe cells, rejected.csv, duplicates.csv, summary.json, and the summary for humans."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from movymporter.errors import ConfigError
from movymporter.ledger import Tally
from movymporter.metrics import Reconciliation, Snapshot, reconcile
from movymporter.report import (
    DUPLICATES,
    REASON_LIMIT,
    REJECTED,
    SUMMARY,
    Reports,
    neutralise,
    render_summary,
    restore,
)

HEADER = ["title", "year", "awards"]


def read_csv(path: Path, *, delimiter: str, encoding: str) -> list[list[str]]:
    """A report as a reader in the input's encoding sees it (UTF-8 reports start with a BOM)."""
    encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def make_reports(
    directory: Path, *, delimiter: str = ",", encoding: str = "utf-8", header: list[str] | None = None
) -> Reports:
    return Reports(directory, delimiter=delimiter, encoding=encoding, header=HEADER if header is None else header)


# --- neutralise / restore ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        pytest.param("=1+1", "'=1+1", id="equals"),
        pytest.param("+33 1 23", "'+33 1 23", id="plus"),
        pytest.param("-5", "'-5", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\t=cmd", "'\t=cmd", id="tab"),
        pytest.param("\r=cmd", "'\r=cmd", id="carriage-return"),
        pytest.param("'=x", "''=x", id="apostrophe-before-formula-gets-one-more"),
        pytest.param("''+x", "'''+x", id="apostrophes-before-formula-get-one-more"),
        pytest.param("'hello", "'hello", id="apostrophe-before-text-is-kept"),
        pytest.param("'", "'", id="lone-apostrophe"),
        pytest.param("Alien", "Alien", id="ordinary"),
        pytest.param("a=b", "a=b", id="formula-character-inside"),
        pytest.param(" =x", " =x", id="leading-space"),
        pytest.param("", "", id="empty"),
    ],
)
def test_neutralise_guards_formula_cells_and_restore_undoes_it(cell: str, written: str) -> None:
    """A cell a spreadsheet would run gets one leading apostrophe, and restore() gives the original back."""
    assert neutralise(cell) == written
    assert restore(written) == cell


@pytest.mark.parametrize("cell", ["'hello", "''", "'It''s'", "'1990"], ids=["text", "two", "quoted", "number"])
def test_restore_keeps_apostrophes_that_neutralise_did_not_add(cell: str) -> None:
    """An apostrophe the user typed before ordinary text survives restore()."""
    assert restore(cell) == cell


@given(st.text(alphabet=st.sampled_from("'=+-@\t\r\n a1é\udce9,;\"")) | st.text())
@example("'=x")
@example("'hello")
@example("''''-")
def test_restore_undoes_neutralise_for_any_string(cell: str) -> None:
    """restore(neutralise(x)) == x for every string, and a neutralised cell never starts with a formula character."""
    guarded = neutralise(cell)

    assert restore(guarded) == cell
    assert guarded[:1] not in {"=", "+", "-", "@", "\t", "\r"}


# --- rejected.csv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "cells", "written"),
    [
        pytest.param("utf-8", ["Am\udce9lie"], b"Am\xe9lie", id="undecodable-byte-goes-back-as-that-byte"),
        pytest.param("utf-8", ["Amélie"], "Amélie".encode(), id="a-cp1252-films-accents-become-utf-8"),
        pytest.param("cp1252", ["東京"], b"\\u6771\\u4eac", id="a-character-cp1252-lacks-is-escaped"),
        pytest.param("cp1252", ["\udc81x"], b"\x81x", id="cp1252-keeps-an-undefined-byte"),
        pytest.param("utf-16-le", ["a\udc81"], "a\\udc81".encode("utf-16-le"), id="utf-16-escapes-stray-bytes"),
    ],
)
def test_what_the_report_encoding_cannot_write(tmp_path: Path, encoding: str, cells: list[str], written: bytes) -> None:
    """A stray byte kept from the input is written back as it was (a re-import finds it again); a character the
    chosen REPORT_ENCODING lacks becomes a backslash escape instead of a failed run."""
    reports = make_reports(tmp_path, encoding=encoding, header=["title"])
    reports.reject(2, "read", "encoding-error: bytes", cells)
    reports.finish({"rows": 1})

    assert written in (tmp_path / REJECTED).read_bytes()


@pytest.mark.parametrize(
    ("encoding", "starts_with_bom"),
    [
        pytest.param("utf-8", True, id="utf-8-input-gets-a-bom-for-spreadsheets"),
        pytest.param("utf-8-sig", True, id="utf-8-sig-input-keeps-its-bom"),
        pytest.param("cp1252", False, id="cp1252-input-stays-cp1252"),
    ],
)
def test_utf8_reports_start_with_a_byte_order_mark(tmp_path: Path, encoding: str, starts_with_bom: bool) -> None:
    """A BOM makes spreadsheets open UTF-8 CSV as UTF-8, and a re-import detect it even with few non-ASCII bytes."""
    reports = make_reports(tmp_path, encoding=encoding)
    reports.finish({"rows": 0})
    for name in (REJECTED, DUPLICATES):
        assert (tmp_path / name).read_bytes().startswith(b"\xef\xbb\xbf") is starts_with_bom


@pytest.mark.parametrize(
    ("delimiter", "encoding"),
    [
        pytest.param(",", "utf-8", id="comma-utf-8"),
        pytest.param(";", "cp1252", id="semicolon-cp1252"),
        pytest.param("\t", "utf-8-sig", id="tab-utf-8-sig"),
        pytest.param("|", "utf-8", id="pipe-utf-8"),
    ],
)
def test_rejected_csv_has_the_report_columns_then_the_input_header(
    tmp_path: Path, delimiter: str, encoding: str
) -> None:
    """rejected.csv is in the input's delimiter and encoding: line, stage, reason, the input's header, then the rows."""
    reports = make_reports(tmp_path, delimiter=delimiter, encoding=encoding)
    reports.reject(3, "validate", "type-error: year: not a whole number", ["Amélie", "2001.5", "Yes"])
    reports.reject(9, "sink", "sink 400: title is empty", ["", "1999", ""])
    reports.finish({"rows": 2})

    rows = read_csv(tmp_path / REJECTED, delimiter=delimiter, encoding=encoding)
    assert rows == [
        ["line", "stage", "reason", *HEADER],
        ["3", "validate", "type-error: year: not a whole number", "Amélie", "2001.5", "Yes"],
        ["9", "sink", "sink 400: title is empty", "", "1999", ""],
    ]
    raw = (tmp_path / REJECTED).read_bytes()
    assert raw.count(b"\r\n") == 3
    assert "Amélie".encode(encoding.removesuffix("-sig")) in raw
    assert raw.startswith(b"\xef\xbb\xbf") is encoding.startswith("utf-8")


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-8-sig"])
def test_undecodable_bytes_are_written_back_as_they_were(tmp_path: Path, encoding: str) -> None:
    """A cell holding a surrogateescape'd byte (as the reader decodes it) goes back to the file as that raw byte."""
    reports = make_reports(tmp_path, encoding=encoding)
    reports.reject(2, "read", "encoding-error: bytes 0xE9 are not valid utf-8", ["Am\udce9lie", "2001", ""])
    reports.finish({})

    raw = (tmp_path / REJECTED).read_bytes()
    assert b"Am\xe9lie,2001," in raw


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        pytest.param("cp1252", "sink 400: title 中文 contains ✓", id="cjk-in-cp1252"),
        pytest.param("latin-1", "sink 400: price €5", id="euro-in-latin-1"),
        pytest.param("cp1252", "encoding-error: \udce9 in text", id="lone-surrogate"),
        pytest.param("utf-8", "encoding-error: \udce9 in text", id="lone-surrogate-utf-8"),
    ],
)
def test_reason_the_encoding_cannot_hold_does_not_crash(tmp_path: Path, encoding: str, reason: str) -> None:
    """A reason with characters the report's encoding lacks is written with escapes instead of failing."""
    reports = make_reports(tmp_path, encoding=encoding)
    reports.reject(5, "sink", reason, ["Film", "1990", ""])
    reports.finish({})

    rows = read_csv(tmp_path / REJECTED, delimiter=",", encoding=encoding)
    written = rows[1][2]
    assert written.startswith(reason.split(" ")[0])
    assert "\\u" in written or "\\x" in written
    assert rows[1][3:] == ["Film", "1990", ""]


def test_a_long_reason_is_cut_so_that_the_report_reads_back(tmp_path: Path) -> None:
    """A reason quoting a value at csv's field size limit is cut at REASON_LIMIT characters: the row reads back
    with csv's own limit, its cells whole."""
    value = "x" * csv.field_size_limit()
    reports = make_reports(tmp_path)
    reports.reject(2, "validate", f"constraint-error: awards must be Yes, No (any case) or empty, got {value!r}", [])
    reports.reject(3, "validate", "type-error: short", ["A", "1", value])
    reports.finish({})

    rows = read_csv(tmp_path / REJECTED, delimiter=",", encoding="utf-8")
    assert (
        rows[1][2]
        == f"constraint-error: awards must be Yes, No (any case) or empty, got '{value}"[:REASON_LIMIT] + "..."
    )
    assert rows[2] == ["3", "validate", "type-error: short", "A", "1", value]


def test_cells_and_header_are_neutralised_in_the_file(tmp_path: Path) -> None:
    """Formula-like cells, input header names included, are written with a guard apostrophe."""
    reports = make_reports(tmp_path, header=["title", "=year", "awards"])
    reports.reject(4, "validate", "constraint-error: popularity: out of range", ["=HYPERLINK(x)", "-1", "@x"])
    reports.finish({})

    rows = read_csv(tmp_path / REJECTED, delimiter=",", encoding="utf-8")
    assert rows[0] == ["line", "stage", "reason", "title", "'=year", "awards"]
    assert rows[1] == ["4", "validate", "constraint-error: popularity: out of range", "'=HYPERLINK(x)", "'-1", "'@x"]
    assert [restore(cell) for cell in rows[1][3:]] == ["=HYPERLINK(x)", "-1", "@x"]


def test_malformed_rows_keep_their_shape(tmp_path: Path) -> None:
    """A row with too few or too many cells is written with exactly the cells it had."""
    reports = make_reports(tmp_path)
    reports.reject(2, "read", "missing-cell: the row has 1 field, the header has 3", ["only"])
    reports.reject(3, "read", "extra-cell: the row has 5 fields, the header has 3", ["a", "1", "", "x", "y"])
    reports.finish({})

    rows = read_csv(tmp_path / REJECTED, delimiter=",", encoding="utf-8")
    assert [len(row) for row in rows] == [6, 4, 8]


def test_cells_with_delimiters_quotes_and_newlines_survive(tmp_path: Path) -> None:
    """Cells holding the delimiter, quotes or line breaks are quoted and read back unchanged."""
    cells = ["Crouching; Tiger", 'He said "no"', "two\r\nlines"]
    reports = make_reports(tmp_path, delimiter=";")
    reports.reject(2, "validate", "reason; with delimiter", cells)
    reports.finish({})

    rows = read_csv(tmp_path / REJECTED, delimiter=";", encoding="utf-8")
    assert rows[1] == ["2", "validate", "reason; with delimiter", *cells]


# --- duplicates.csv, summary.json, and when files appear ----------------------------------------------


def test_duplicates_csv_lists_line_and_duplicate_of(tmp_path: Path) -> None:
    """duplicates.csv has a line,duplicate_of header and one row per skipped duplicate, in the input's delimiter."""
    reports = make_reports(tmp_path, delimiter="\t")
    reports.duplicate(7, 3)
    reports.duplicate(12, 3)
    reports.finish({})

    assert read_csv(tmp_path / DUPLICATES, delimiter="\t", encoding="utf-8") == [
        ["line", "duplicate_of"],
        ["7", "3"],
        ["12", "3"],
    ]


def test_summary_json_holds_the_given_summary(tmp_path: Path) -> None:
    """summary.json is valid UTF-8 JSON with exactly the keys and values it was given."""
    summary = {
        "rows": 10,
        "blank": 1,
        "duplicates": 1,
        "invalid": 2,
        "delivered": 6,
        "sink_rejected": 1,
        "failed": 0,
        "retries": 3,
        "elapsed_s": 0.25,
        "rows_per_s": 40.0,
        "metrics_check": {"state": "ok", "statuses": {}, "notes": []},
        "input": "films-été.csv",
        "stopped": None,
    }
    reports = make_reports(tmp_path)
    reports.finish(summary)

    assert json.loads((tmp_path / SUMMARY).read_text(encoding="utf-8")) == summary


def test_reports_appear_under_their_names_only_after_finish(tmp_path: Path) -> None:
    """Until finish() the reports are partial files; afterwards only the final names remain."""
    reports = make_reports(tmp_path)
    reports.reject(2, "validate", "missing-cell: title", ["", "1990", ""])
    reports.duplicate(5, 2)

    assert not (tmp_path / REJECTED).exists()
    assert not (tmp_path / DUPLICATES).exists()
    assert not (tmp_path / SUMMARY).exists()

    reports.finish({"rows": 3})

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([REJECTED, DUPLICATES, SUMMARY])


def test_an_earlier_report_stays_readable_until_finish(tmp_path: Path) -> None:
    """An old rejected.csv (perhaps the file being re-imported) is replaced only when the new one is complete."""
    old = b"line,stage,reason,title\r\n2,validate,old reason,X\r\n"
    (tmp_path / REJECTED).write_bytes(old)

    reports = make_reports(tmp_path)
    reports.reject(8, "sink", "sink 400: new reason", ["Y", "2000", ""])
    assert (tmp_path / REJECTED).read_bytes() == old

    reports.finish({})
    assert "new reason" in (tmp_path / REJECTED).read_text(encoding="utf-8")


def test_report_dir_is_created_with_its_parents(tmp_path: Path) -> None:
    """A REPORT_DIR that does not exist yet is created, parents included."""
    directory = tmp_path / "runs" / "2024" / "reports"
    make_reports(directory).finish({})

    assert (directory / REJECTED).is_file()


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_report_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path, where: str) -> None:
    """A REPORT_DIR that cannot be a directory is a ConfigError naming the setting, its flag and the path."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    directory = blocker / "reports" if where == "under-a-file" else blocker

    with pytest.raises(ConfigError, match=r"REPORT_DIR \(--report-dir\)") as caught:
        make_reports(directory)
    assert str(directory) in str(caught.value)
    assert "Accepted:" in str(caught.value)


def test_summary_json_survives_a_path_with_undecodable_bytes(tmp_path: Path) -> None:
    """A summary holding a surrogateescape'd string (an input file name that is not UTF-8) still gives summary.json."""
    reports = make_reports(tmp_path)
    reports.finish({"input": "films-\udce9t\udce9.csv", "rows": 1})

    assert json.loads((tmp_path / SUMMARY).read_text(encoding="utf-8"))["rows"] == 1


# --- render_summary -----------------------------------------------------------------------------------


def make_summary(**changes: Any) -> dict[str, Any]:
    """A summary shaped like pipeline._summary's, for a run on a flaky sink that was stopped."""
    tally = Tally(
        rows=12_345,
        blank=4,
        duplicates=21,
        duplicates_sent=0,
        invalid=310,
        valid=0,
        delivered=11_990,
        already_delivered=0,
        sink_rejected=17,
        failed=2,
        not_attempted=5,
        retries=2_987,
        unanswered=1,
    )
    check = reconcile(
        Snapshot({"201": 100.0, "400": 0.0, "503": 0.0}),
        Snapshot({"201": 12_091.0, "400": 17.0, "503": 2_985.0}),
        {201: 11_990, 400: 17, 503: 2_985},
        unanswered=1,
    )
    summary: dict[str, Any] = {
        "input": "data/films.csv",
        "encoding": "cp1252",
        "delimiter": ";",
        "report_encoding": "utf-8-sig",
        "url": "http://localhost:9009/movies",
        "dry_run": False,
        "report_dir": "reports",
        "lines": 12_352,
        "header_line": 1,
        "type_row_line": 2,
        **asdict(tally),
        "responses": {"201": 11_990, "400": 17, "503": 2_985},
        "elapsed_s": 12.345,
        "rows_per_s": 1000.04,
        "metrics_check": check.as_dict(),
        "top_reasons": [
            {"reason": "constraint-error: year must be between N and N", "rows": 1_204},
            {"reason": "sink: sink N: title is empty", "rows": 17},
        ],
        "stopped": "STOP_ON_ERRORS=300 reached (310 rows rejected)",
        "unread_from_line": 12_353,
        "exit_status": 3,
    }
    summary.update(changes)
    return summary


def test_render_summary_shows_counts_stop_reasons_and_metrics() -> None:
    """The human summary gives every count, the stop reason, the top reasons and the metrics table."""
    text = render_summary(make_summary())

    assert text.splitlines()[0] == "data/films.csv: 12,345 rows in 12.3 s (1,000 rows/s)"
    for label, value in [
        ("delivered", "11,990"),
        ("invalid", "310"),
        ("refused by the sink", "17"),
        ("failed delivery", "2"),
        ("not attempted (stopped)", "5"),
        ("duplicates skipped", "21"),
        ("blank lines skipped", "4"),
        ("retries", "2,987"),
    ]:
        line = next(line for line in text.splitlines() if line.strip().startswith(label))
        assert value in line, line
    assert "reports/rejected.csv" in text
    assert "reports/duplicates.csv" in text
    assert "reports in reports/ (UTF-8 with a byte-order mark)" in text
    assert "stopped: STOP_ON_ERRORS=300 reached (310 rows rejected)" in text
    assert "lines from 12353 on were not read" in text
    assert "top reasons rows were not delivered:" in text
    assert "1,204  constraint-error: year must be between N and N" in text
    assert "sink: sink N: title is empty" in text
    assert "metrics check: mismatch" in text
    table = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()[:3].isdigit()}
    assert table["201"] == ["11,991", "11,990", "MISMATCH"]
    assert table["400"] == ["17", "17", "ok"]
    assert table["503"] == ["2,985", "2,985", "ok"]
    assert "note: 1 attempts got no answer" in text


def test_render_summary_of_a_clean_run_has_no_stop_and_no_report_pointers() -> None:
    """A run that delivered everything has no stop line and points at no report file."""
    check = reconcile(Snapshot({}), Snapshot({"201": 3.0}), {201: 3}, unanswered=0)
    text = render_summary(
        make_summary(
            rows=3,
            delivered=3,
            invalid=0,
            sink_rejected=0,
            failed=0,
            not_attempted=0,
            duplicates=0,
            blank=0,
            retries=0,
            stopped=None,
            unread_from_line=None,
            top_reasons=[],
            metrics_check=check.as_dict(),
        )
    )

    assert "stopped" not in text
    assert "rejected.csv" not in text
    assert "duplicates.csv" not in text
    assert "top reasons" not in text
    assert "metrics check: ok" in text
    assert "MISMATCH" not in text


def test_render_summary_of_a_dry_run_shows_valid_rows_and_no_delivery_lines() -> None:
    """A dry run reports valid rows instead of delivery counts, and a skipped metrics check."""
    skipped = Reconciliation("skipped", notes=["dry run: nothing was sent"])
    text = render_summary(
        make_summary(
            dry_run=True,
            valid=11_990,
            delivered=0,
            sink_rejected=0,
            failed=0,
            not_attempted=0,
            retries=0,
            stopped=None,
            unread_from_line=None,
            metrics_check=skipped.as_dict(),
        )
    )

    assert "valid (not sent: dry run)" in text
    assert "11,990" in text
    assert "refused by the sink" not in text
    assert "retries" not in text
    assert "metrics check: skipped" in text
    assert "note: dry run: nothing was sent" in text


def test_render_summary_mentions_earlier_runs_and_duplicates_sent() -> None:
    """Rows delivered by earlier runs and duplicates sent on purpose get their own lines when there are any."""
    text = render_summary(make_summary(already_delivered=1_000, duplicates_sent=6))

    assert "of which in earlier runs" in text
    assert "duplicates kept (--keep-duplicates)" in text


def test_a_failed_run_leaves_no_half_written_reports(tmp_path: Path) -> None:
    """close() without finish() drops the partial files; the last complete reports stay as they were."""
    (tmp_path / REJECTED).write_text("the last complete report\n")
    reports = make_reports(tmp_path)
    reports.reject(3, "validate", "type-error: year must be a whole number", ["A", "1990.5", ""])

    reports.close()

    assert sorted(path.name for path in tmp_path.iterdir()) == [REJECTED]
    assert (tmp_path / REJECTED).read_text() == "the last complete report\n"
