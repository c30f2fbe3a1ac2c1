"""The resume state: what a re-run may skip, and how little it keeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from movymporter import pipeline
from movymporter.errors import ConfigError
from movymporter.settings import Settings
from movymporter.state import DELIVERED, FAILED, SINK_REJECTED, ResumeState, from_ranges, input_key, to_ranges
from movymporter.status import ExitStatus
from tests.conftest import AfterDelivered, RunningSink, assert_accounted, write_films


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def open_state(
    tmp_path: Path, *, fresh: bool = False, key: str = "k", clock: Callable[[], float] | None = None
) -> ResumeState:
    return ResumeState(
        tmp_path / "state.sqlite",
        key,
        path=tmp_path / "in.csv",
        url="http://x/m",
        fresh=fresh,
        clock=clock or FakeClock(),
    )


def test_a_new_input_has_nothing_settled(tmp_path: Path) -> None:
    """Without an earlier run every row is sent."""
    state = open_state(tmp_path)
    assert not state.resuming
    assert state.settled_before(2) is None


def a_run_that_stopped(tmp_path: Path) -> None:
    """Lines 2-12 read; 9 still in flight at the stop; 12 delivered out of order; 5 refused; 6 failed."""
    state = open_state(tmp_path)
    for line in (5, 6, 9, 12):
        state.sending(line)
    state.finished(5, SINK_REJECTED, "sink 400: year 2050 is outside 1888..2026")
    state.finished(6, FAILED, "gave up after 15 attempts")
    state.finished(12, DELIVERED)
    state.read_past(13)
    state.save(force=True)
    state.close()


@pytest.mark.parametrize(
    ("line", "settled"),
    [
        pytest.param(2, DELIVERED, id="below-watermark-is-delivered"),
        pytest.param(5, SINK_REJECTED, id="below-watermark-refused-by-sink"),
        pytest.param(6, FAILED, id="below-watermark-failed-is-sent-again"),
        pytest.param(9, None, id="in-flight-at-the-stop-is-not-settled"),
        pytest.param(12, DELIVERED, id="delivered-out-of-order-above-watermark"),
        pytest.param(13, None, id="not-read-is-not-settled"),
    ],
)
def test_what_a_rerun_finds(tmp_path: Path, line: int, settled: str | None) -> None:
    """The watermark stops at the first row not settled; deliveries above it and exceptions are kept."""
    a_run_that_stopped(tmp_path)

    again = open_state(tmp_path)

    assert again.resuming
    assert again.watermark == 9
    assert again.settled_before(line) == settled


def test_the_sink_reason_is_kept_for_the_report(tmp_path: Path) -> None:
    """A row the sink refused is reported again with the sink's own words, without being sent."""
    a_run_that_stopped(tmp_path)
    assert open_state(tmp_path).reason(5) == "sink 400: year 2050 is outside 1888..2026"


def test_a_failed_row_delivered_by_a_later_run_stops_being_an_exception(tmp_path: Path) -> None:
    """Delivering a row that failed before removes it from the exceptions."""
    a_run_that_stopped(tmp_path)
    again = open_state(tmp_path)
    again.sending(6)
    again.finished(6, DELIVERED)
    again.save(force=True)
    again.close()
    assert open_state(tmp_path).settled_before(6) == DELIVERED


def test_a_failed_row_delivered_in_the_same_session_stops_being_an_exception(tmp_path: Path) -> None:
    """The exception is forgotten even when it was written by this very session."""
    state = open_state(tmp_path)
    state.finished(6, FAILED, "gave up")
    state.read_past(10)
    state.save(force=True)
    state.finished(6, DELIVERED)
    state.save(force=True)
    state.close()
    assert open_state(tmp_path).settled_before(6) == DELIVERED


def test_a_rerun_that_stops_early_does_not_lose_what_earlier_runs_settled(tmp_path: Path) -> None:
    """A re-run reads from the top again; stopping it near the top must not lower the watermark or forget lines."""
    a_run_that_stopped(tmp_path)
    rerun = open_state(tmp_path)
    rerun.sending(3)
    rerun.read_past(4)
    rerun.save(force=True)
    rerun.close()

    third = open_state(tmp_path)

    assert third.watermark == 9
    assert third.delivered_above == {12}
    assert third.settled_before(2) == DELIVERED


@pytest.mark.parametrize(
    ("journaled", "found", "settled"),
    [
        pytest.param([], 0, {9: None, 13: None, 6: FAILED}, id="nothing-journaled-changes-nothing"),
        pytest.param([9, 13], 2, {9: DELIVERED, 13: DELIVERED}, id="in-flight-and-unread-lines-delivered-are-known"),
        pytest.param([6], 1, {6: DELIVERED}, id="a-failed-row-delivered-after-all-is-no-exception"),
        pytest.param([2, 12], 0, {2: DELIVERED, 12: DELIVERED}, id="lines-the-state-knows-are-not-counted"),
        pytest.param([13, 13, 13], 1, {13: DELIVERED}, id="a-line-in-several-journals-counts-once"),
    ],
)
def test_absorbing_a_killed_runs_journal(
    tmp_path: Path, journaled: list[int], found: int, settled: dict[int, str | None]
) -> None:
    """What the journals add to the state is saved at once: the run after the next one knows it too."""
    a_run_that_stopped(tmp_path)
    again = open_state(tmp_path)

    assert again.absorb(journaled) == found
    again.close()

    third = open_state(tmp_path)
    assert {line: third.settled_before(line) for line in settled} == settled
    assert third.watermark == 9


def test_absorbing_at_the_end_of_a_run_keeps_only_what_the_run_did_not_know(tmp_path: Path) -> None:
    """A lost sending process's rows were cut short (the watermark waits at the first); its journal says which
    were delivered after all, without holding every line this run delivered in memory."""
    state = open_state(tmp_path)
    for line in range(2, 12):
        state.sending(line)
    for line in (2, 3, 4, 8):
        state.finished(line, DELIVERED)
    for line in (5, 6, 7, 9, 10, 11):
        state.finished(line, None)  # the process that sent them was lost
    state.read_past(12)
    state.save(force=True)

    assert state.absorb([2, 3, 4, 8, 6, 7]) == 2
    state.close()

    again = open_state(tmp_path)
    assert again.watermark == 5
    assert [line for line in range(2, 12) if again.settled_before(line) is None] == [5, 9, 10, 11]


def test_saves_are_batched_by_time(tmp_path: Path) -> None:
    """Progress is written at most every 0.2 s unless forced, so the hot path does not wait on disk."""
    clock = FakeClock()
    state = open_state(tmp_path, clock=clock)
    state.read_past(5)
    state.save(force=True)
    state.read_past(50)
    state.save()
    assert open_state(tmp_path).watermark == 5
    clock.now += 1
    state.save()
    assert open_state(tmp_path).watermark == 50


def test_deliveries_above_the_watermark_are_kept_as_ranges(tmp_path: Path) -> None:
    """Lines below the watermark are implied by it; those above it are stored compactly, as runs."""
    state = open_state(tmp_path)
    state.sending(100)
    for line in (101, 102, 103, 130, 5):
        state.sending(line)
        state.finished(line, DELIVERED)
    state.read_past(200)
    state.save(force=True)
    state.close()
    again = open_state(tmp_path)
    assert again.watermark == 100
    assert again.delivered_above == {101, 102, 103, 130}


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="empty"),
        pytest.param([7], id="one"),
        pytest.param([3, 4, 5, 9, 10, 20], id="runs-and-gaps"),
        pytest.param([10, 2, 3, 1], id="unsorted"),
    ],
)
def test_ranges_round_trip(lines: list[int]) -> None:
    """to_ranges and from_ranges are inverse on any set of lines."""
    assert from_ranges(to_ranges(lines)) == set(lines)
    assert len(to_ranges(range(1, 10_000))) == 1


def test_fresh_forgets_the_input(tmp_path: Path) -> None:
    """--fresh drops what earlier runs settled for this input."""
    a_run_that_stopped(tmp_path)
    again = open_state(tmp_path, fresh=True)
    assert not again.resuming
    assert again.settled_before(3) is None
    assert again.exceptions == {}


def test_inputs_are_kept_apart(tmp_path: Path) -> None:
    """Two inputs in one state database do not see each other's progress."""
    first = open_state(tmp_path, key="a")
    first.read_past(10)
    first.save(force=True)
    first.close()
    assert not open_state(tmp_path, key="b").resuming


@pytest.mark.parametrize(
    ("change", "same"),
    [
        pytest.param(lambda path, url: (path, url), True, id="same-content-same-url-same-key"),
        pytest.param(lambda path, url: (path.rename(path.with_name("moved.csv")), url), True, id="moved-file-same-key"),
        pytest.param(lambda path, url: (path.write_text("title,year\nB,2001\n") and path, url), False, id="edited"),
        pytest.param(lambda path, url: (path, url + "2"), False, id="other-url"),
    ],
)
def test_input_key_is_content_and_destination(tmp_path: Path, change: Callable, same: bool) -> None:
    """The same bytes sent to the same URL resume; an edited file or another sink start afresh."""
    path = tmp_path / "in.csv"
    path.write_text("title,year\nA,2000\n")
    url = "http://sink.test/movies"
    before = input_key(path, url)
    new_path, new_url = change(path, url)
    assert (input_key(new_path, new_url) == before) is same


def test_what_decides_which_rows_are_sent_is_part_of_the_key(tmp_path: Path) -> None:
    """--keep-duplicates, the last valid year or another version change which rows go out: a new import."""
    path = tmp_path / "in.csv"
    path.write_text("title,year\nA,2000\n")
    keys = {input_key(path, "http://x", keep, year) for keep in (False, True) for year in (2026, 2027)}
    assert len(keys) == 4


def test_unwritable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    """A STATE_DIR that cannot be created is named in a one-paragraph error."""
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(ConfigError, match="STATE_DIR"):
        ResumeState(blocker / "sub" / "state.sqlite", "k", path=blocker, url="http://x", fresh=False)


@pytest.mark.slow
def test_a_halted_run_resumes_without_sending_a_row_twice(
    start_sink: Callable[..., RunningSink],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stop part-way, run again: the second run sends only the rest and counts the first run's rows as delivered."""
    sink = start_sink(failure_rate=0.2, seed=5, latency_ms=5)
    path = tmp_path / "films.csv"
    path.write_text("title,year\n" + "".join(f"Film {n},{1800 if n % 25 == 0 else 2000}\n" for n in range(1500)))
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=4)
    halt = threading.Event()
    observer = AfterDelivered(100, halt.set)

    first = pipeline.run(settings, halt=halt, on_outcome=observer)
    second = pipeline.run(settings)

    assert first.exit_status is ExitStatus.INTERRUPTED
    assert 0 < first.summary["delivered"] < 1440
    stored = [film["title"] for film in sink.stored()]
    assert len(stored) == len(set(stored)) == 1440
    assert second.summary["already_delivered"] == first.summary["delivered"]
    assert second.summary["delivered"] == 1440
    assert second.summary["responses"].get("201", 0) == 1440 - first.summary["delivered"]
    assert second.exit_status is ExitStatus.ROWS_NOT_DELIVERED
    assert_accounted(second.summary)


def test_a_complete_run_run_again_sends_nothing_new(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """After a complete import, the same command is a no-op for the sink; --fresh sends everything again."""
    path = tmp_path / "films.csv"
    path.write_text("title,year\nA,2000\nB,2001\n")
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)

    pipeline.run(settings)
    again = pipeline.run(settings)
    fresh = pipeline.run(settings.model_copy(update={"fresh": True}))

    assert again.summary["already_delivered"] == 2
    assert again.summary["responses"] == {}
    assert fresh.summary["responses"] == {"201": 2}
    assert reliable_sink.post_counts() == {"201": 4}


def test_a_rerun_stopped_near_the_top_does_not_make_the_next_one_send_again(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Complete, then a re-run interrupted at once, then another: the third sends nothing (none twice)."""
    path = write_films(tmp_path, 300)
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)
    pipeline.run(settings)
    stopped_at_once = threading.Event()
    stopped_at_once.set()

    second = pipeline.run(settings, halt=stopped_at_once)
    third = pipeline.run(settings)

    assert second.exit_status is ExitStatus.INTERRUPTED
    assert third.summary["responses"] == {}
    assert third.summary["already_delivered"] == 300
    assert reliable_sink.post_counts() == {"201": 300}


def test_changing_keep_duplicates_starts_afresh(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Rows skipped as duplicates are not 'delivered' when a later run keeps duplicates: they are sent."""
    path = tmp_path / "films.csv"
    path.write_text("title,year\nA,2000\nA,2000\nB,2001\n")

    pipeline.run(make_settings(csv_in=path, url_out=reliable_sink.movies_url))
    keeping = pipeline.run(make_settings(csv_in=path, url_out=reliable_sink.movies_url, keep_duplicates=True))

    assert keeping.summary["already_delivered"] == 0
    assert keeping.summary["duplicates_sent"] == 1
    assert len(reliable_sink.stored()) == 3


class _SetAfter(threading.Event):
    """An Event that becomes set once it has been asked `after` times: a Ctrl-C in the middle of a long read."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.asked, self.after = 0, after

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.after or super().is_set()


@pytest.mark.parametrize(
    ("after", "finished"),
    [
        pytest.param(10**6, True, id="never-set-the-key-is-known"),
        pytest.param(2, False, id="set-while-reading-no-key"),
        pytest.param(0, False, id="set-before-no-key"),
    ],
)
def test_input_key_stops_reading_when_halted(tmp_path: Path, after: int, finished: bool) -> None:
    """The whole file is read to know it; a Ctrl-C in the middle of a big file stops that read at once."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"title,year\n" + b"A film,2000\n" * 400_000)  # about 5 MB: 5 reads of 1 MiB
    halt = _SetAfter(after)
    key = input_key(path, "http://x", halt=halt)
    assert (key == input_key(path, "http://x")) is finished
    assert (key is None) is not finished
    assert halt.asked <= min(after + 1, 5)


def test_a_ctrl_c_while_the_file_is_fingerprinted_sends_nothing_and_records_nothing(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Stopped before the file was known, a run sends no row and leaves no state behind; the next run sends all."""
    path = write_films(tmp_path, 50)
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url)
    halt = _SetAfter(0)

    stopped = pipeline.run(settings, halt=halt)
    complete = pipeline.run(settings)

    assert stopped.exit_status is ExitStatus.INTERRUPTED
    assert (stopped.summary["rows"], stopped.summary["unread_from_line"]) == (0, 2)
    assert stopped.summary["resumed_before_line"] is None
    assert complete.summary["resumed_before_line"] is None
    assert complete.summary["delivered"] == 50
    assert reliable_sink.post_counts() == {"201": 50}
