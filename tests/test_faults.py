"""Fault injection against real sink processes: outages, slow answers, 429 storms, resets, killed importers.

Whatever goes wrong, the sink's store must end with every valid row of the
generated file exactly once (the generator's oracle says which films those are).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.generate import Expected
from movymporter import pipeline
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import (
    ROOT,
    AfterDelivered,
    Relay,
    RunningSink,
    assert_accounted,
    child_pids,
    is_running,
    read_csv,
    wait_for_log,
    wait_until,
)

FILM_KEYS = ("year", "title", "subject", "actor", "actress", "director")


def stored_films(sink: RunningSink) -> list[tuple[object, ...]]:
    return [tuple(film[key] for key in FILM_KEYS) for film in sink.stored()]


def assert_stored_exactly_once(sink: RunningSink, expected: Expected) -> None:
    films = stored_films(sink)
    assert len(films) == len(set(films)), "a film was stored twice"
    assert set(films) == expected.films


def sink_counter(sink: RunningSink, name: str) -> int:
    """The value of an unlabelled counter on the sink's /metrics (0 when absent)."""
    text = requests.get(f"{sink.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total":
                return int(sample.value)
    return 0


def stored_count(sink: RunningSink) -> int:
    return int(requests.get(f"{sink.url}/_sink/stats", timeout=10).json()["stored"])


def posts_answered(sink: RunningSink) -> int:
    return sum(sink.post_counts().values())


def rejected_lines(report_dir: Path) -> list[int]:
    return [int(row[0]) for row in read_csv(report_dir / "rejected.csv")[1:]]


@pytest.mark.slow
def test_sink_killed_and_restarted_mid_run_the_run_waits_and_completes(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sink that dies and is back within UNREACHABLE_AFTER costs a pause, not a row: every film once, none failed."""
    sink = start_sink(failure_rate=0.2, latency_ms=10, seed=11)
    path, expected = generated(2000, seed=21, extras=True)
    # UNREACHABLE_AFTER far beyond the outage (1 s, then a restart), however long a busy machine takes to restart.
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=8, unreachable_after=60)

    def back_a_second_later() -> None:
        time.sleep(1.0)  # how long the outage lasts: any time under UNREACHABLE_AFTER
        sink.restart()

    restart = threading.Thread(target=back_a_second_later)

    def outage() -> None:
        """Kill the sink in the middle of the run (after its 300th film), and start it again a second later."""
        sink.stop(signal.SIGKILL)
        restart.start()

    killed = AfterDelivered(300, outage)
    result = pipeline.run(settings, on_outcome=killed)

    assert killed.done.is_set()
    restart.join()
    summary = result.summary
    assert result.exit_status is ExitStatus.ROWS_NOT_DELIVERED  # the file has invalid rows on purpose
    assert summary["stopped"] is None
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["unanswered"] > 0, "no attempt met the outage"
    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(sink, expected)
    assert sorted(rejected_lines(settings.report_dir)) == expected.invalid_lines
    assert_accounted(summary)


@pytest.mark.slow
def test_sink_killed_for_good_stops_the_run_and_a_rerun_resumes(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sink gone longer than UNREACHABLE_AFTER stops the run (exit 3); once it is back, a re-run sends the rest."""
    concurrency = 8
    sink = start_sink(failure_rate=0, latency_ms=10, seed=12)
    path, expected = generated(2000, seed=22, extras=True)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=concurrency, unreachable_after=1.5)
    killed = AfterDelivered(300, lambda: sink.stop(signal.SIGKILL))

    first = pipeline.run(settings, on_outcome=killed)

    assert killed.done.is_set()
    summary = first.summary
    assert first.exit_status is ExitStatus.STOPPED
    assert "gave no usable answer" in summary["stopped"]
    assert 0 < summary["delivered"] < len(expected.films)
    assert summary["failed"] == 0
    assert_accounted(summary)

    sink.restart()
    keys_before = {film["idempotency_key"] for film in sink.stored()}
    assert len(keys_before) >= summary["delivered"]
    log_offset = len(sink.log_lines())

    second = pipeline.run(settings)

    again = second.summary
    assert again["already_delivered"] == summary["delivered"]
    assert again["delivered"] == len(expected.films)
    assert again["failed"] == again["not_attempted"] == 0
    assert again["stopped"] is None
    assert second.exit_status is ExitStatus.ROWS_NOT_DELIVERED
    assert_accounted(again)
    assert_stored_exactly_once(sink, expected)
    # Only rows in flight when the sink died (stored, answer lost) may be sent again.
    posted_again = {line["key"] for line in sink.log_lines()[log_offset:] if "key" in line} & keys_before
    repeats = sink_counter(sink, "sink_idempotent_repeats")
    assert len(posted_again) == repeats == len(keys_before) - summary["delivered"] <= concurrency


def wait_until_answered(sink: RunningSink, attempts: int) -> None:
    """Wait until the sink has finished (answered or dropped) `attempts` POSTs, slow ones included."""
    wait_until(lambda: posts_answered(sink) >= attempts, f"the sink did not finish {attempts} POSTs")


@pytest.mark.slow
def test_answers_slower_than_the_read_timeout_are_retried_without_doubles(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """A POST held past READ_TIMEOUT is retried under the same key; once the sink is done, each film is there once."""
    sink = start_sink(failure_rate=0, slow_rate=0.1, slow_ms=1500, seed=13)
    path, expected = generated(300, seed=23, extras=True)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=16, read_timeout=0.5)

    result = pipeline.run(settings)

    summary = result.summary
    wait_until_answered(sink, summary["delivered"] + summary["retries"])
    assert summary["unanswered"] > 0
    assert summary["retries"] >= summary["unanswered"]
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(sink, expected)
    assert_accounted(summary)


@pytest.mark.slow
def test_a_timed_out_post_is_still_stored_by_the_sink_and_its_retry_is_a_repeat(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """The slow fault models a sink that stores a film after the client gave up: the retry must be a repeat."""
    sink = start_sink(failure_rate=0, slow_rate=0.2, slow_ms=1000, seed=18)
    path, expected = generated(60, seed=28)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=16, read_timeout=0.3)

    result = pipeline.run(settings)

    summary = result.summary
    wait_until_answered(sink, summary["delivered"] + summary["retries"])
    assert summary["unanswered"] > 0
    assert_stored_exactly_once(sink, expected)
    repeats = sink_counter(sink, "sink_idempotent_repeats")
    assert repeats > 0, f"no timed-out original was stored behind its retry; sink answers: {sink.post_counts()}"


@pytest.mark.slow
def test_a_429_storm_is_ridden_out_by_honouring_retry_after(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """Half the POSTs answer 429 with Retry-After: 1; the importer waits as asked and delivers every film once."""
    # Every row is in flight at once, so the storm comes in waves one Retry-After apart; with the dice
    # seeded, their number is fixed (seed 2: four waves for 31 films), and so is the run time.
    sink = start_sink(failure_rate=0.5, failure_status=429, retry_after="1", seed=2)
    path, expected = generated(32, seed=24)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, concurrency=32)

    started = time.monotonic()
    result = pipeline.run(settings)
    elapsed = time.monotonic() - started

    summary = result.summary
    assert summary["responses"]["429"] > 0
    assert summary["retries"] == summary["responses"]["429"]
    assert elapsed >= 1.0, "Retry-After: 1 was not honoured"
    assert summary["failed"] == 0
    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(sink, expected)
    assert summary["metrics_check"]["state"] == "ok"
    assert summary["metrics_check"]["statuses"]["429"]["match"]
    assert_accounted(summary)


def test_answers_cut_off_after_storing_are_retried_without_doubles(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """A 201 cut off mid-answer (film stored) is retried under the same key; the sink keeps one copy of each film."""
    sink = start_sink(failure_rate=0, reset_rate=0.3, seed=15)
    path, expected = generated(500, seed=25, extras=True)
    settings = make_settings(csv_in=path, url_out=sink.movies_url)

    result = pipeline.run(settings)

    summary = result.summary
    assert summary["unanswered"] > 0
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(sink, expected)
    assert sink_counter(sink, "sink_idempotent_repeats") > 0
    assert summary["metrics_check"]["state"] == "ok"
    assert_accounted(summary)


class Endpoint(Protocol):
    """Where an importer sends: a sink, or a relay in front of one."""

    @property
    def movies_url(self) -> str: ...


Launch = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """launch(csv_in, endpoint, **settings): `python -m movymporter` in its own process, configured by the environment.

    The process runs in tmp_path (so no .env is read), logs to tmp_path/importer.log, and is killed at teardown
    if a failing test left it running."""
    started: list[subprocess.Popen[bytes]] = []
    known = {name.upper() for name in Settings.model_fields}
    base = {key: value for key, value in os.environ.items() if key.upper() not in known}
    base["PYTHONPATH"] = str(ROOT)

    def start(csv_in: Path, endpoint: Endpoint, **settings: object) -> subprocess.Popen[bytes]:
        values: dict[str, object] = {
            "csv_in": csv_in,
            "url_out": endpoint.movies_url,
            "report_dir": tmp_path / "reports",
            "state_dir": tmp_path / "state",
            "backoff_initial": 0.005,
            "backoff_max": 0.1,
            "log_level": "WARNING",
            **settings,
        }
        env = {**base, **{name.upper(): str(value) for name, value in values.items()}}
        with (tmp_path / "importer.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "movymporter", "--no-progress"], cwd=tmp_path, env=env, stdout=log, stderr=log
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_importer_killed_at_random_points_and_rerun_delivers_every_film_once(
    start_sink: Callable[..., RunningSink],
    relay_to: Callable[[RunningSink], Relay],
    generated: Callable[..., tuple[Path, Expected]],
    launch: Launch,
    tmp_path: Path,
) -> None:
    """SIGKILL three times at seeded random moments, re-run each time: the last run completes, nothing doubled."""
    sink = start_sink(failure_rate=0.2, latency_ms=5, seed=16)
    relay = relay_to(sink)
    path, expected = generated(3000, seed=26, extras=True)
    rng = random.Random(2024)

    for _ in range(3):
        # A random point of the sending phase: after a seeded number of POSTs, the relay holds the rest, so the
        # run is still going (with requests in flight) when it is killed, however fast or slow the machine.
        relay.hold_after(rng.randint(1, 600))
        process = launch(path, relay, concurrency=4)
        wait_until(lambda: relay.held > 0 or process.poll() is not None, "the importer never reached the hold")  # noqa: B023
        workers = child_pids(process.pid)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
        relay.release()  # the requests in flight reach the sink after the importer died
        wait_until(lambda: not any(map(is_running, workers)), "a worker outlived the importer")  # noqa: B023
        wait_until(relay.settled, "the sink did not answer the requests of the killed run")
    assert 0 < stored_count(sink) < len(expected.films)
    final = launch(path, relay, concurrency=4)  # the same URL: the resume state is per input and sink
    status = final.wait(timeout=120)

    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert status == ExitStatus.ROWS_NOT_DELIVERED, (tmp_path / "importer.log").read_text()
    assert summary["already_delivered"] > 0
    assert summary["delivered"] == len(expected.films)
    assert summary["failed"] == summary["not_attempted"] == 0
    assert_accounted(summary)
    assert_stored_exactly_once(sink, expected)
    assert sorted(rejected_lines(tmp_path / "reports")) == expected.invalid_lines


@pytest.mark.slow
def test_sigterm_drains_writes_the_reports_and_a_rerun_completes(
    start_sink: Callable[..., RunningSink],
    relay_to: Callable[[RunningSink], Relay],
    generated: Callable[..., tuple[Path, Expected]],
    launch: Launch,
    tmp_path: Path,
) -> None:
    """SIGTERM mid-run exits 130 after draining, with summary.json written; a re-run delivers the rest exactly once."""
    sink = start_sink(failure_rate=0.2, latency_ms=5, seed=17)
    relay = relay_to(sink)
    relay.hold_after(300)
    path, expected = generated(3000, seed=27, extras=True)
    process = launch(path, relay, concurrency=8)
    wait_until(lambda: relay.held > 0 or process.poll() is not None, "the importer never made 300 POSTs")
    process.send_signal(signal.SIGTERM)  # mid-run: requests are held in flight
    wait_for_log(tmp_path / "importer.log", "SIGTERM: finishing the requests in flight", process)
    relay.release()  # the drain can end

    status = process.wait(timeout=120)

    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert status == ExitStatus.INTERRUPTED, (tmp_path / "importer.log").read_text()
    assert summary["exit_status"] == ExitStatus.INTERRUPTED
    assert summary["stopped"].startswith("interrupted")
    assert 0 < summary["delivered"] < len(expected.films)
    assert summary["unread_from_line"] is not None
    assert_accounted(summary)
    stages: dict[str, list[int]] = {}
    for row in read_csv(tmp_path / "reports" / "rejected.csv")[1:]:
        stages.setdefault(row[1], []).append(int(row[0]))
    read_before_stop = [line for line in expected.invalid_lines if line < summary["unread_from_line"]]
    assert sorted(stages.get("read", []) + stages.get("validate", [])) == read_before_stop
    assert len(stages.get("delivery", [])) == summary["not_attempted"]

    rerun = launch(path, relay, concurrency=8)  # the same URL: the resume state is per input and sink
    assert rerun.wait(timeout=120) == ExitStatus.ROWS_NOT_DELIVERED

    again = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert again["already_delivered"] == summary["delivered"]
    assert again["delivered"] == len(expected.films)
    assert_accounted(again)
    assert_stored_exactly_once(sink, expected)
    assert sink_counter(sink, "sink_idempotent_repeats") == 0, "a row delivered before the SIGTERM was sent again"
