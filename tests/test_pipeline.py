"""Whole runs of the importer against real sink processes."""

from __future__ import annotations

import csv
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.generate import Expected, write_sample
from movymporter import pipeline
from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.delivery.sender import Sender
from movymporter.report import Reports
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import (
    GIVE_UP_S,
    ROOT,
    AfterDelivered,
    RunningSink,
    SharedEvent,
    assert_accounted,
    read_csv,
    write_films,
)

SAMPLE = ROOT / "examples" / "films.csv"
FILM_KEYS = ("year", "title", "subject", "actor", "actress", "director")


def stored_films(sink: RunningSink) -> list[tuple[object, ...]]:
    return [tuple(film[key] for key in FILM_KEYS) for film in sink.stored()]


def rejected_lines(report_dir: Path, delimiter: str = ",", encoding: str = "utf-8") -> dict[int, list[str]]:
    rows = read_csv(report_dir / "rejected.csv", delimiter=delimiter, encoding=encoding)
    return {int(row[0]): row for row in rows[1:]}


def duplicate_lines(report_dir: Path, delimiter: str = ",") -> set[int]:
    return {int(row[0]) for row in read_csv(report_dir / "duplicates.csv", delimiter=delimiter)[1:]}


@pytest.mark.slow
def test_flaky_sink_stores_every_valid_row_exactly_once(
    flaky_sink: RunningSink, generated: Callable[..., tuple[Path, Expected]], make_settings: Callable[..., Settings]
) -> None:
    """With one POST in five answered 503, each valid distinct film is stored once and every other line is reported."""
    path, expected = generated(1500, seed=3, extras=True)
    settings = make_settings(csv_in=path, url_out=flaky_sink.movies_url)

    result = pipeline.run(settings)

    films = stored_films(flaky_sink)
    assert len(films) == len(set(films)) == len(expected.films)
    assert set(films) == expected.films
    summary = result.summary
    assert summary["delivered"] == len(expected.films)
    assert summary["responses"]["503"] > 0
    assert set(rejected_lines(settings.report_dir)) == set(expected.invalid_lines)
    assert duplicate_lines(settings.report_dir) == set(expected.duplicate_lines)
    assert summary["blank"] == len(expected.blank_lines)
    assert_accounted(summary)
    assert summary["metrics_check"]["state"] == "ok"
    assert result.exit_status is ExitStatus.ROWS_NOT_DELIVERED


def test_bundled_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    """examples/films.csv is reproducible from bench/generate.py --sample, so its oracle can be trusted."""
    expected = write_sample(tmp_path / "sample.csv")
    assert (tmp_path / "sample.csv").read_bytes() == SAMPLE.read_bytes()
    assert expected.invalid_lines
    assert expected.duplicate_lines


@pytest.mark.slow
def test_bundled_sample_imports_as_its_oracle_says(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """The demo file: cp1252, semicolons, a type row; its invalid lines are reported in UTF-8 (REPORT_ENCODING)."""
    expected = write_sample(tmp_path / "oracle.csv")
    settings = make_settings(csv_in=SAMPLE, url_out=reliable_sink.movies_url)

    result = pipeline.run(settings)

    assert set(stored_films(reliable_sink)) == expected.films
    rejected = rejected_lines(settings.report_dir, ";", "utf-8-sig")
    assert set(rejected) == set(expected.invalid_lines)
    header = read_csv(settings.report_dir / "rejected.csv", delimiter=";", encoding="utf-8-sig")[0]
    assert header[:4] == ["line", "stage", "reason", "Year"]
    assert result.summary["type_row_line"] == 2
    assert result.summary["encoding"] == "cp1252"
    assert_accounted(result.summary)


DIRTY = (
    "Year,Length,Title,Subject,Actor,Actress,Director,Popularity,Awards,*Image\r\n"  # 1
    "1990,111,Good One,Comedy,A,B,C,68,No,a.png\r\n"  # 2
    "1850,90,Too Early,Drama,A,B,C,10,no,\r\n"  # 3: year out of range
    "\r\n"  # 4: blank
    '1991,100,"Two\r\nLines",Drama,A,B,C,50,yes,b.jpg\r\n'  # 5-6: one valid record
    "1992,100,Short Row\r\n"  # 7: missing cells
    "1990,111,Good One,Comedy,A,B,C,68,NO,a.png\r\n"  # 8: duplicate of 2 (awards normalised)
    "1993.0,-5,,Drama,A,B,C,101,Maybe,c.gif\r\n"  # 9: six problems
    '1994,100,"Unclosed,Drama,A,B,C,50,No,\r\n'  # 10: unbalanced quote
    "1995,100,After The Quote,Drama,A,B,C,50,No,\r\n"  # 11: still delivered
)


@pytest.mark.slow
def test_every_line_of_a_dirty_file_is_accounted_for_by_physical_line(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Rejected rows carry the line they start on, their stage and every failing field."""
    path = tmp_path / "dirty.csv"
    path.write_bytes(DIRTY.encode())
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)

    result = pipeline.run(settings)

    rejected = rejected_lines(settings.report_dir)
    assert {line: row[1] for line, row in rejected.items()} == {3: "validate", 7: "read", 9: "validate", 10: "read"}
    assert "year must be from 1888" in rejected[3][2]
    assert rejected[7][2].startswith("missing-cell")
    reasons = rejected[9][2]
    for fragment in ("year must be a whole number", "length must be a positive", "title is required"):
        assert fragment in reasons
    for fragment in ("popularity must be from 0 to 100", "awards must be", "image must be"):
        assert fragment in reasons
    assert rejected[10][2].startswith("source-error")
    assert rejected[9][3:] == ["1993.0", "'-5", "", "Drama", "A", "B", "C", "101", "Maybe", "c.gif"]
    assert duplicate_lines(settings.report_dir) == {8}
    assert sorted(film[1] for film in stored_films(reliable_sink)) == ["After The Quote", "Good One", "Two\nLines"]
    summary = result.summary
    assert (summary["rows"], summary["blank"], summary["lines"]) == (8, 1, 11)
    assert_accounted(summary)


def test_a_row_the_sink_refuses_is_reported_with_its_reason(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A 400 is final: the row goes to rejected.csv at stage sink with the sink's one-line reason."""
    path = tmp_path / "future.csv"
    path.write_text("title,year\nFrom The Future,2050\nToday,2000\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)

    result = pipeline.run(settings, max_year=2100)

    rejected = rejected_lines(settings.report_dir)
    assert list(rejected) == [2]
    assert rejected[2][1] == "sink"
    assert rejected[2][2].startswith("sink 400: year 2050 is outside 1888..")
    assert result.summary["sink_rejected"] == 1
    assert result.summary["metrics_check"]["statuses"]["400"] == {"sink_delta": 1, "importer_saw": 1, "match": True}
    assert result.exit_status is ExitStatus.ROWS_NOT_DELIVERED


def test_clean_file_exits_zero(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Every row delivered or deliberately skipped (duplicates, blanks) is success."""
    path = tmp_path / "clean.csv"
    path.write_text("title;year\nA;2000\n\nA;2000\nB;2001\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)

    result = pipeline.run(settings)

    assert result.exit_status is ExitStatus.OK
    assert (result.summary["delivered"], result.summary["duplicates"], result.summary["blank"]) == (2, 1, 1)
    assert len(reliable_sink.stored()) == 2


def test_dry_run_validates_and_reports_but_sends_nothing(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """--dry-run writes the same reports and counts valid rows without one POST."""
    path = tmp_path / "dirty.csv"
    path.write_bytes(DIRTY.encode())
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, dry_run=True)

    result = pipeline.run(settings)

    assert reliable_sink.post_counts() == {}
    assert result.summary["valid"] == 3
    assert set(rejected_lines(settings.report_dir)) == {3, 7, 9, 10}
    assert result.summary["metrics_check"]["state"] == "skipped"
    assert_accounted(result.summary)
    assert result.exit_status is ExitStatus.ROWS_NOT_DELIVERED


RUN_SPECIFIC = ("elapsed_s", "rows_per_s", "report_dir")


@pytest.mark.parametrize(
    ("keep_duplicates", "stop_on_errors"),
    [
        pytest.param(False, 0, id="duplicates-skipped"),
        pytest.param(True, 0, id="duplicates-kept"),
        pytest.param(False, 37, id="stopped-at-the-37th-rejected-row"),
        pytest.param(False, 1, id="stopped-at-the-first-rejected-row"),
    ],
)
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"extras": True}, id="utf8-comma-with-structural-defects"),
        pytest.param({"encoding": "cp1252", "delimiter": ";", "type_row": True}, id="cp1252-semicolon-type-row"),
    ],
)
def test_a_dry_run_settles_every_row_the_same_with_the_fast_path_and_without(
    tmp_path: Path,
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    options: dict[str, object],
    keep_duplicates: bool,
    stop_on_errors: int,
) -> None:
    """With the contract's fast path (chunks of plain rows counted whole) and without it (the model judges every
    row, and the run settles each on its own): the same summary (where a STOP_ON_ERRORS stop left off
    included), rejected.csv and duplicates.csv, byte for byte, and the oracle's counts."""
    path, expected = generated(3000, seed=9, **options)

    def dry_run(fast_path: bool) -> tuple[dict[str, object], bytes, bytes]:
        report_dir = tmp_path / f"fast-path-{fast_path}"
        settings = make_settings(
            csv_in=path,
            dry_run=True,
            fast_path=fast_path,
            report_dir=report_dir,
            keep_duplicates=keep_duplicates,
            stop_on_errors=stop_on_errors,
        )
        summary = pipeline.run(settings).summary
        assert_accounted(summary)
        return (
            {key: value for key, value in summary.items() if key not in RUN_SPECIFIC},
            (report_dir / "rejected.csv").read_bytes(),
            (report_dir / "duplicates.csv").read_bytes(),
        )

    fast = dry_run(fast_path=True)
    assert fast == dry_run(fast_path=False)
    summary = fast[0]
    if stop_on_errors:
        assert summary["invalid"] == stop_on_errors
        assert summary["stopped"] == f"STOP_ON_ERRORS={stop_on_errors} reached ({stop_on_errors} rows rejected)"
        assert summary["unread_from_line"] == expected.invalid_lines[stop_on_errors - 1] + 1
        return
    assert summary["invalid"] == len(expected.invalid_lines)
    assert summary["blank"] == len(expected.blank_lines)
    duplicates = len(expected.duplicate_lines)
    if keep_duplicates:
        assert (summary["duplicates"], summary["duplicates_sent"]) == (0, duplicates)
        assert summary["valid"] == len(expected.films) + duplicates
    else:
        assert (summary["duplicates"], summary["valid"]) == (duplicates, len(expected.films))


def test_ctrl_c_stops_a_dry_run_whose_every_row_is_rejected(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A halt is seen within a few hundred rows even when no row is plain (here a header with one column too
    many), and the summary says where reading stopped."""
    path = write_films(tmp_path, 5000, header="title,year,notes")
    halt = threading.Event()
    reject = Reports.reject

    def reject_and_press_ctrl_c_at_the_100th(reports: Reports, line: int, *args: object) -> None:
        reject(reports, line, *args)  # type: ignore[arg-type]
        if line == 101:
            halt.set()

    monkeypatch.setattr(Reports, "reject", reject_and_press_ctrl_c_at_the_100th)
    result = pipeline.run(make_settings(csv_in=path, dry_run=True), halt=halt)

    summary = result.summary
    assert result.exit_status is ExitStatus.INTERRUPTED
    assert 100 <= summary["invalid"] == summary["rows"] <= 100 + 256
    assert summary["unread_from_line"] == summary["rows"] + 2
    assert_accounted(summary)


def test_ctrl_c_in_a_dry_run_counts_the_valid_rows_read_before_it(
    tmp_path: Path,
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid rows wait to be handed to the duplicate table a few runs at a time: a halt between runs still counts
    every one read before it, and lists each duplicate among them."""
    path, _ = generated(6000, seed=4)
    halt = threading.Event()
    show_progress = pipeline.Pipeline._show_progress
    calls = 0

    def press_ctrl_c_at_the_third_check(self: pipeline.Pipeline, *, force: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            halt.set()
        show_progress(self, force=force)

    monkeypatch.setattr(pipeline.Pipeline, "_show_progress", press_ctrl_c_at_the_third_check)
    monkeypatch.setattr(pipeline, "_KEYS_AT_ONCE", 10**9)  # so that keys are waiting whenever the halt comes
    report_dir = tmp_path / "reports"
    result = pipeline.run(make_settings(csv_in=path, dry_run=True, report_dir=report_dir), halt=halt)

    summary = result.summary
    assert result.exit_status is ExitStatus.INTERRUPTED
    assert 0 < summary["rows"] < 6000
    assert summary["valid"] + summary["invalid"] + summary["duplicates"] == summary["rows"]
    assert summary["duplicates"] > 0
    assert len(duplicate_lines(report_dir)) == summary["duplicates"]
    assert_accounted(summary)


def test_stop_on_errors_stops_reading_and_says_where(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """STOP_ON_ERRORS=N stops once N rows are rejected: exit 3, the unread part named, the rest accounted."""
    path = tmp_path / "bad.csv"
    path.write_text("title,year\n" + "".join(f"Film {n},{1800 if n % 2 else 2000}\n" for n in range(100)))
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, stop_on_errors=3)

    result = pipeline.run(settings)

    summary = result.summary
    assert result.exit_status is ExitStatus.STOPPED
    assert summary["invalid"] == 3
    assert "STOP_ON_ERRORS=3" in summary["stopped"]
    assert summary["unread_from_line"] == summary["lines"] + 1 < 102
    assert len(reliable_sink.stored()) == summary["delivered"]
    assert_accounted(summary)


def test_keep_duplicates_sends_each_copy_under_its_own_key(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """--keep-duplicates posts every copy; distinct idempotency keys keep the sink from folding them."""
    path = tmp_path / "copies.csv"
    path.write_text("title,year\nSame,2000\nSame,2000\nSame,2000\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, keep_duplicates=True)

    result = pipeline.run(settings)

    stored = reliable_sink.stored()
    assert len(stored) == 3
    assert len({film["idempotency_key"] for film in stored}) == 3
    assert (result.summary["duplicates"], result.summary["duplicates_sent"]) == (0, 2)
    assert result.exit_status is ExitStatus.OK


def test_same_file_twice_is_not_stored_twice(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Idempotency keys derive from the record, so a sink that honours them keeps one copy per film."""
    path = tmp_path / "films.csv"
    path.write_text("title,year\nA,2000\nB,2001\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, fresh=True)

    pipeline.run(settings)
    pipeline.run(settings)

    assert len(reliable_sink.stored()) == 2
    assert reliable_sink.post_counts()["201"] == 4


def test_fixed_rejected_csv_imports_from_and_into_the_same_report_dir(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """rejected.csv can be fixed and fed back: report columns ignored, spreadsheet guards undone, nothing nested."""
    # Row 9 of DIRTY is reported with its length guarded as '-5; the fix below is what a human types.
    path = tmp_path / "dirty.csv"
    path.write_bytes(DIRTY.encode())
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)
    pipeline.run(settings)
    report = settings.report_dir / "rejected.csv"
    rows = read_csv(report)
    fixed = [rows[0]] + [
        [*row[:3], "1993", "95", "Fixed", *row[6:10], "50", "No", "c.png"] if row[0] == "9" else row for row in rows[1:]
    ]
    with report.open("w", newline="") as handle:
        csv.writer(handle).writerows(fixed)

    again = pipeline.run(make_settings(csv_in=report, url_out=reliable_sink.movies_url))

    titles = {film["title"]: film for film in reliable_sink.stored()}
    assert titles["Fixed"]["length"] == 95
    assert [row[4] for row in rows if row[0] == "9"] == ["'-5"]
    assert '"Unclosed' not in titles, "a line set aside for its quote is refused again, not delivered"
    assert again.summary["delivered"] == 1
    new_rows = read_csv(report)
    assert new_rows[0] == ["line", "stage", "reason", *rows[0][3:]]
    assert len(new_rows) == len(rows) - 1
    assert_accounted(again.summary)


class _AlwaysNotFound(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysNotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/movies"
    server.shutdown()
    server.server_close()


def test_a_404_stops_the_run_as_a_configuration_problem(
    not_found_server: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """401/403/404/405 mean the URL or credentials are wrong: stop at once instead of failing every row."""
    path = write_films(tmp_path, 500)
    settings = make_settings(csv_in=path, url_out=not_found_server, concurrency=4)

    result = pipeline.run(settings)

    summary = result.summary
    assert result.exit_status is ExitStatus.STOPPED
    assert "404" in summary["stopped"]
    assert "configuration problem" in summary["stopped"]
    assert 1 <= summary["not_attempted"] <= 40  # the rows already handed to the senders, not the whole file
    assert summary["rows"] < 100
    assert summary["metrics_check"]["state"] == "unavailable"
    assert_accounted(summary)


def test_halt_drains_in_flight_rows_and_reports_interrupted(
    start_sink: Callable[..., RunningSink],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A halt (what Ctrl-C sets) stops reading, lets requests in flight finish, and exits 130 with full reports."""
    sink = start_sink(failure_rate=0, latency_ms=10)
    path = write_films(tmp_path, 2000)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=4)
    halt = threading.Event()
    observer = AfterDelivered(20, halt.set)  # Ctrl-C once the sink has stored 20 films

    result = pipeline.run(settings, halt=halt, on_outcome=observer)

    summary = result.summary
    assert result.exit_status is ExitStatus.INTERRUPTED
    assert summary["stopped"].startswith("interrupted")
    assert 20 <= summary["delivered"] == len(sink.stored()) < 2000
    assert summary["unread_from_line"] is not None
    assert json.loads((settings.report_dir / "summary.json").read_text())["exit_status"] == 130
    assert_accounted(summary)


def test_unreadable_metrics_are_a_warning_not_a_failure(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """A metrics endpoint that does not answer skips the check; the import itself succeeds."""
    path = tmp_path / "films.csv"
    path.write_text("title,year\nA,2000\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, metrics_url="http://127.0.0.1:9/metrics")

    result = pipeline.run(settings)

    assert result.exit_status is ExitStatus.OK
    assert result.summary["metrics_check"]["state"] == "unavailable"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["threads", "worker-processes"])
def test_rows_still_unanswered_after_the_grace_period_stay_accounted_for(
    workers: int,
    reliable_sink: RunningSink,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a halt the run waits a bounded time; rows whose answer never came are reported as not attempted."""
    hanging, answer = SharedEvent(), SharedEvent()  # shared with forked worker processes too

    def hangs(self: Sender, delivery: Delivery, **options: object) -> Outcome:
        """An answer that comes only once the run has returned (a run that waited for it would fail here)."""
        hanging.set()
        assert answer.wait(GIVE_UP_S), "the run waited for the answers past its grace period"
        return Outcome(delivery, Verdict.DELIVERED, attempts=1, statuses=[201])

    monkeypatch.setattr(Sender, "deliver", hangs)
    path = write_films(tmp_path, 50)
    settings = make_settings(
        csv_in=path,
        url_out=reliable_sink.movies_url,
        concurrency=2,
        workers=workers,
        connect_timeout=0.1,
        read_timeout=0.1,
    )
    halt = threading.Event()
    ctrl_c = threading.Thread(target=lambda: hanging.wait(GIVE_UP_S) and halt.set())  # once a request hangs
    ctrl_c.start()

    result = pipeline.run(settings, halt=halt)

    returned_while_hanging = not answer.is_set()
    answer.set()
    ctrl_c.join()
    assert halt.is_set()
    assert returned_while_hanging
    summary = result.summary
    assert summary["not_attempted"] == summary["rows"] > 0
    rejected = rejected_lines(settings.report_dir)
    assert all("no answer before the run stopped" in row[2] for row in rejected.values())
    assert len(rejected) == summary["not_attempted"]
    assert_accounted(summary)
