"""Sending from worker processes (WORKERS > 1): the same exactly-once delivery, reports and resume as threads.

Each test runs real imports against real sinks; faults are aimed at the worker
processes themselves.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.generate import Expected
from movymporter import pipeline
from movymporter.delivery.outcome import Delivery, Outcome
from movymporter.delivery.processes import WorkerFailed, shares
from movymporter.delivery.sender import Sender
from movymporter.report import render_summary
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import (
    ROOT,
    AfterDelivered,
    Relay,
    RunningSink,
    assert_accounted,
    child_pids,
    child_pids_readable,
    is_running,
    read_csv,
    wait_until,
    write_films,
)
from tests.test_faults import assert_stored_exactly_once, rejected_lines


@pytest.mark.parametrize(
    ("concurrency", "processes", "expected"),
    [
        pytest.param(16, 2, [8, 8], id="an-even-split"),
        pytest.param(5, 2, [3, 2], id="the-first-processes-take-the-remainder"),
        pytest.param(32, 3, [11, 11, 10], id="three-ways"),
        pytest.param(2, 4, [1, 1], id="never-a-process-without-a-request-slot"),
        pytest.param(1, 4, [1], id="one-slot-one-process"),
    ],
)
def test_concurrency_is_shared_between_the_processes(concurrency: int, processes: int, expected: list[int]) -> None:
    assert shares(concurrency, processes) == expected
    assert sum(expected) == concurrency


def worker_processes() -> list[multiprocessing.Process]:
    return [child for child in multiprocessing.active_children() if child.name.startswith("movymporter-worker")]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3], ids=["two-processes", "three-processes"])
def test_worker_processes_deliver_every_valid_row_exactly_once(
    workers: int,
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dirty file against a sink failing 1 POST in 5: delivered, rejected and duplicate rows as with threads."""
    sink = start_sink(failure_rate=0.2, seed=31)
    path, expected = generated(1500, seed=41, extras=True)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=8, workers=workers)

    with caplog.at_level(logging.INFO, logger="movymporter"):
        result = pipeline.run(settings)

    summary = result.summary
    assert summary["delivered"] == len(expected.films)
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["retries"] > 0, "the sink's 503s were not met: the test proves nothing about retries"
    assert summary["metrics_check"]["state"] == "ok", summary["metrics_check"]
    assert sorted(rejected_lines(settings.report_dir)) == expected.invalid_lines
    assert_stored_exactly_once(sink, expected)
    assert_accounted(summary)
    assert f"8 requests in flight at most from {workers} processes" in caplog.text
    assert worker_processes() == [], "a worker process outlived the run"


def test_one_request_slot_is_sent_from_the_importers_own_process(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_films(tmp_path, 20)
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, concurrency=1, workers=4)

    with caplog.at_level(logging.INFO, logger="movymporter"):
        result = pipeline.run(settings)

    assert result.summary["delivered"] == 20
    assert "1 requests in flight at most\n" in caplog.text + "\n"
    assert "processes" not in caplog.text


@pytest.mark.slow
def test_a_worker_killed_mid_run_stops_the_run_and_a_rerun_completes(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker process killed (out of memory, say) ends its rows as not delivered and stops the run with a
    reason; nothing is lost, and the next run delivers the rest exactly once."""
    sink = start_sink(failure_rate=0, latency_ms=20)
    path, expected = generated(800, seed=43)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=8, workers=2)

    def kill_one_worker() -> None:
        os.kill(worker_processes()[0].pid, signal.SIGKILL)  # type: ignore[arg-type]

    killed = AfterDelivered(100, kill_one_worker)
    first = pipeline.run(settings, on_outcome=killed)

    assert killed.done.is_set()
    summary = first.summary
    assert first.exit_status is ExitStatus.STOPPED
    assert "ended unexpectedly (exit code -9)" in summary["stopped"]
    assert summary["not_attempted"] >= 1
    assert 0 < summary["delivered"] < len(expected.films)
    assert_accounted(summary)

    second = pipeline.run(settings)

    again = second.summary
    assert again["stopped"] is None
    assert again["delivered"] == len(expected.films)
    assert again["already_delivered"] >= summary["delivered"]
    assert_stored_exactly_once(sink, expected)


def running_with(text: str) -> list[int]:
    """Running processes whose command line holds `text` (a URL only they were given)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and is_running(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not child_pids_readable(), reason="needs Linux /proc/PID/task/TID/children to find the workers")
def test_workers_stop_by_themselves_when_the_importer_is_killed(
    start_sink: Callable[..., RunningSink], relay_to: Callable[[RunningSink], Relay], tmp_path: Path
) -> None:
    """SIGKILL leaves the workers no message; they notice their pipe closed and end once their requests end."""
    sink = start_sink(failure_rate=0)
    relay = relay_to(sink)
    relay.hold_after(8)
    write_films(tmp_path, 400)
    args = ["--csv", "films.csv", "--url", relay.movies_url, "--concurrency", "8", "--workers", "2", "--timeout", "30"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "importer.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "movymporter", *args], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    wait_until(lambda: relay.held > 0 or process.poll() is not None, "the importer never sent a 9th row")
    assert process.poll() is None, (tmp_path / "importer.log").read_text()
    workers = child_pids(process.pid)
    assert len(workers) == 2, workers

    process.kill()  # while the workers have requests in flight, held at the relay
    process.wait()
    # Nothing says "a worker has noticed": a short look that a busy machine can only make easier to pass.
    time.sleep(0.5)
    assert all(map(is_running, workers)), "a worker ended while its requests were still unanswered"
    relay.release()

    wait_until(lambda: not any(map(is_running, workers)), "a worker kept running after the importer died")
    assert running_with(relay.movies_url) == [], "a process that could go on sending outlived the importer"
    assert relay.settled()


@pytest.mark.slow
def test_a_halt_reaches_workers_that_were_already_told_there_are_no_more_rows(
    start_sink: Callable[..., RunningSink],
    relay_to: Callable[[RunningSink], Relay],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
) -> None:
    """A small file is handed out at once; Ctrl-C must still cut the workers' retries short, not leave
    them retrying until the grace period ends."""
    sink = start_sink(failure_rate=1)
    relay = relay_to(sink)
    relay.hold_after(40)  # two attempts a row on average: every row was handed out and is being retried
    path = write_films(tmp_path, 20)
    settings = make_settings(
        csv_in=path, url_out=relay.movies_url, concurrency=4, workers=2, max_attempts=100, read_timeout=30
    )
    halt = threading.Event()

    def ctrl_c_while_requests_are_held() -> None:
        wait_until(lambda: relay.held > 0, "the workers never made 40 attempts")
        halt.set()
        relay.release()

    ctrl_c = threading.Thread(target=ctrl_c_while_requests_are_held)
    ctrl_c.start()
    result = pipeline.run(settings, halt=halt)
    ctrl_c.join()

    summary = result.summary
    assert result.exit_status is ExitStatus.INTERRUPTED
    assert summary["not_attempted"] == 20
    # Rows the grace period (34 s) gave up on would say "no answer before the run stopped" instead.
    reasons = [row[2] for row in read_csv(settings.report_dir / "rejected.csv")[1:]]
    assert len(reasons) == 20
    assert all(reason.startswith("not delivered: the run was stopped") for reason in reasons), reasons
    assert worker_processes() == []
    assert_accounted(summary)


def test_an_unexpected_error_in_a_worker_stops_the_run_with_its_traceback(
    reliable_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a worker is not a dead worker nor a partial import: the run raises it, like a thread's bug."""

    def broken(self: Sender, delivery: Delivery, **options: object) -> Outcome:
        raise RuntimeError("a bug in the sender")

    monkeypatch.setattr(Sender, "deliver", broken)  # the forked workers inherit it
    path = write_films(tmp_path, 50)
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, concurrency=4, workers=2)

    with pytest.raises(WorkerFailed, match="RuntimeError: a bug in the sender"):
        pipeline.run(settings)

    assert worker_processes() == []


@pytest.mark.slow
def test_each_worker_adapts_its_own_share_and_the_summary_says_where_each_ended(
    flaky_sink: RunningSink,
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    path, expected = generated(600, seed=47)
    settings = make_settings(csv_in=path, url_out=flaky_sink.movies_url, concurrency=8, workers=2, adaptive=True)

    result = pipeline.run(settings)

    summary = result.summary
    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(flaky_sink, expected)
    limits = summary["adaptive_concurrency"]
    assert sorted(limit["ceiling"] for limit in limits) == [4, 4]
    assert all(limit["adaptive"] and 1 <= limit["min"] <= limit["final"] <= 4 for limit in limits), limits
    assert "adaptive concurrency: ended at" in render_summary(summary)


def test_a_workers_log_lines_are_written_by_the_importer_under_the_workers_name(
    reliable_sink: RunningSink,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A worker's log records reach the importer's own handlers (so they print above the progress bar), named
    after the worker; the worker writes nothing to the terminal itself, and a record below LOG_LEVEL stays out."""
    deliver = Sender.deliver

    def chatty(self: Sender, delivery: Delivery, **options: Any) -> Outcome:
        logging.getLogger("movymporter").warning("posting line %d", delivery.line)
        logging.getLogger("movymporter").debug("below the level: line %d", delivery.line)
        return deliver(self, delivery, **options)

    monkeypatch.setattr(Sender, "deliver", chatty)  # the forked workers inherit it
    path = write_films(tmp_path, 20)
    settings = make_settings(csv_in=path, url_out=reliable_sink.movies_url, concurrency=4, workers=2)

    with caplog.at_level(logging.INFO, logger="movymporter"):
        result = pipeline.run(settings)

    assert result.summary["delivered"] == 20
    posted = [record for record in caplog.records if "posting line" in record.getMessage()]
    assert sorted(int(record.getMessage().rsplit(" ", 1)[1]) for record in posted) == list(range(2, 22))
    assert {record.getMessage().split(":", 1)[0] for record in posted} == {
        "movymporter-worker-0",
        "movymporter-worker-1",
    }
    assert all(record.levelno == logging.WARNING and record.process == os.getpid() for record in posted)
    assert not any("below the level" in record.getMessage() for record in caplog.records)
    assert "posting line" not in capfd.readouterr().err
