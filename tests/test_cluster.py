"""The Dask executor: the same run on a cluster, against a real scheduler and real worker processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.generate import Expected
from movymporter import cli, pipeline
from movymporter.delivery.cluster import BATCHES_OUT, Shares
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import ROOT, AfterDelivered, RunningSink, assert_accounted, read_csv, wait_until
from tests.test_faults import assert_stored_exactly_once, stored_films

pytestmark = pytest.mark.slow

TIMINGS = ("elapsed_s", "rows_per_s", "report_dir")
"""What differs between two runs of the same input by nature."""
REPORTS = ("rejected.csv", "duplicates.csv")


def _run(settings: Settings, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, object], dict[str, bytes]]:
    """A run's summary (but its timings) and reports; a run with --engine dask must have sent from the cluster."""
    caplog.clear()
    caplog.set_level(logging.INFO, logger="movymporter")
    summary = pipeline.run(settings).summary
    on_a_cluster = any(record.getMessage().startswith("sending from a Dask cluster") for record in caplog.records)
    assert on_a_cluster is (settings.engine == "dask")
    assert_accounted(summary)
    kept = {key: value for key, value in summary.items() if key not in TIMINGS}
    return kept, {name: (settings.report_dir / name).read_bytes() for name in REPORTS}


@pytest.mark.parametrize(
    ("concurrency", "workers", "per_batch", "batches"),
    [
        pytest.param(16, 2, 4, 4, id="two-batches-a-worker"),
        pytest.param(128, 2, 32, 4, id="many-requests-few-workers"),
        pytest.param(5, 2, 1, 5, id="never-more-than-concurrency"),
        pytest.param(1, 4, 1, 1, id="one-request-at-a-time"),
        pytest.param(16, 40, 1, 16, id="more-workers-than-requests"),
    ],
)
def test_the_requests_in_flight_on_a_cluster_never_exceed_concurrency(
    concurrency: int, workers: int, per_batch: int, batches: int
) -> None:
    shares = Shares.of(concurrency, workers)
    assert (shares.per_batch, shares.batches) == (per_batch, batches)
    assert shares.per_batch * shares.batches <= concurrency


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[tuple[str, Callable[[], subprocess.Popen[bytes]]]]:
    """A real `dask scheduler`, and a way to start real `dask worker` processes on it (all ended afterwards)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    started = [
        subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]

    def worker() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(file)]
        process = subprocess.Popen(
            [*command, "--nthreads", "2", "--no-dashboard", "--no-nanny"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    try:
        wait_until(lambda: file.exists() and file.stat().st_size > 0, "the dask scheduler did not start")
        yield json.loads(file.read_text())["address"], worker
    finally:
        for process in reversed(started):
            process.kill()
            process.wait()


def test_a_cluster_of_two_workers_delivers_every_valid_row_exactly_once(
    scheduler: tuple[str, Callable[[], subprocess.Popen[bytes]]],
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a sink that stores every request (as the real service does) and answers 503 to one in five: each
    valid row is stored once, by a cluster of two worker processes of a real scheduler."""
    address, start_worker = scheduler
    start_worker()
    start_worker()
    sink = start_sink(failure_rate=0.2, seed=3, idempotency="off")
    path, expected = generated(1500, seed=5)
    settings = make_settings(
        csv_in=path, url_out=sink.movies_url, engine="dask", dask_scheduler=address, concurrency=8, workers=2
    )

    summary, _ = _run(settings, caplog)

    assert summary["delivered"] == len(expected.films)
    assert_stored_exactly_once(sink, expected)
    assert summary["metrics_check"]["state"] == "ok"  # type: ignore[index]
    assert summary["exit_status"] == 1  # the generated file has invalid rows on purpose


@pytest.mark.parametrize(
    ("source", "stop_on_errors"),
    [
        pytest.param("examples", 0, id="the-bundled-sample"),
        pytest.param("generated", 0, id="a-generated-dirty-file"),
        pytest.param("generated", 7, id="stopped-at-the-7th-rejected-row"),
    ],
)
def test_reports_and_summary_are_the_same_on_a_local_cluster_as_on_this_machine(
    source: str,
    stop_on_errors: int,
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--engine dask (a LocalCluster of two workers, started by the run) writes the same reports and summary,
    but its timings, as --engine local, byte for byte; a STOP_ON_ERRORS stop comes at the same row."""
    path = ROOT / "examples" / "films.csv" if source == "examples" else generated(3000, seed=11)[0]
    results = {}
    for engine in ("local", "dask"):
        sink = start_sink(failure_rate=0)
        settings = make_settings(
            csv_in=path,
            url_out=sink.movies_url,
            engine=engine,
            workers=2,
            stop_on_errors=stop_on_errors,
            report_dir=tmp_path / engine / "reports",
            state_dir=tmp_path / engine / "state",
        )
        results[engine] = _run(settings, caplog)
    local, dask = results["local"], results["dask"]
    local[0].pop("url"), dask[0].pop("url")  # each run has a sink of its own
    assert dask == local


def test_a_lost_worker_loses_no_row(
    scheduler: tuple[str, Callable[[], subprocess.Popen[bytes]]],
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One of two workers is killed (SIGKILL) in the middle of the run: the scheduler gives its batches to the
    other, so every valid row still arrives; the rows it had sent arrive twice at most, no more than the batches
    the run had out (a batch the dead worker finished but whose answers were not collected yet is run again)."""
    address, start_worker = scheduler
    doomed = start_worker()
    start_worker()
    sink = start_sink(failure_rate=0.2, seed=8, idempotency="off")
    path, expected = generated(2000, seed=6)
    settings = make_settings(
        csv_in=path, url_out=sink.movies_url, engine="dask", dask_scheduler=address, concurrency=8, workers=2
    )
    killed = AfterDelivered(300, doomed.kill)

    summary = pipeline.run(settings, on_outcome=killed).summary

    assert killed.done.is_set()
    assert_accounted(summary)
    assert summary["delivered"] == len(expected.films)
    films = stored_films(sink)
    assert set(films) == expected.films, "a row was lost with its worker"
    shares = Shares.of(8, 2)
    assert len(films) - len(set(films)) <= BATCHES_OUT * shares.batches * shares.rows_per_batch


def test_ctrl_c_on_a_cluster_then_a_re_run_delivers_every_row_once(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """A Ctrl-C stops the cluster's sending too (retries cut short, the batches in flight answered); the re-run
    resumes and sends only what did not arrive: each film is stored once, at a sink that stores every request."""
    sink = start_sink(failure_rate=0.2, seed=4, idempotency="off")
    path, expected = generated(2000, seed=12)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, engine="dask", workers=2)
    halt = threading.Event()

    first = pipeline.run(settings, halt=halt, on_outcome=AfterDelivered(200, halt.set))
    second = pipeline.run(settings)

    assert first.exit_status is ExitStatus.INTERRUPTED
    assert 200 <= first.summary["delivered"] < len(expected.films)
    assert second.summary["already_delivered"] == first.summary["delivered"]
    assert_stored_exactly_once(sink, expected)


def test_a_scheduler_that_does_not_answer_is_a_clear_error(
    reliable_sink: RunningSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--scheduler at an address where nothing listens: exit status 2 and a sentence saying what to check, no
    traceback, nothing sent."""
    monkeypatch.chdir(tmp_path)  # the state and reports of a CLI run go to the working directory
    settings = ["--csv", str(ROOT / "examples" / "films.csv"), "--url", reliable_sink.movies_url]
    options = ["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0.5", "--no-progress"]

    status = cli.main([*settings, *options])

    error = capsys.readouterr().err
    assert status == ExitStatus.USAGE
    assert "DASK_SCHEDULER (--scheduler) tcp://127.0.0.1:1: no Dask scheduler answered within 2 s" in error
    assert "Traceback" not in error
    assert reliable_sink.post_counts() == {}


def test_a_worker_lost_from_the_local_cluster_ends_its_rows_as_not_delivered_and_a_re_run_sends_them(
    start_sink: Callable[..., RunningSink],
    generated: Callable[..., tuple[Path, Expected]],
    make_settings: Callable[..., Settings],
) -> None:
    """The LocalCluster the run starts does not run a lost worker's batches again: their rows are reported as
    not delivered, the run goes on with the other worker, and the re-run sends them under the same keys. At a
    sink that stores every request, nothing is lost and no more than the batches out arrive twice."""
    sink = start_sink(failure_rate=0.2, seed=9, idempotency="off")
    path, expected = generated(2000, seed=14)
    settings = make_settings(csv_in=path, url_out=sink.movies_url, engine="dask", workers=2, concurrency=8)

    def kill_a_worker() -> None:
        workers = [child for child in psutil.Process().children() if "spawn_main" in " ".join(child.cmdline())]
        workers[0].kill()

    killed = AfterDelivered(300, kill_a_worker)
    first = pipeline.run(settings, on_outcome=killed)
    lost = [row for row in read_csv(settings.report_dir / "rejected.csv")[1:] if row[1] == "delivery"]
    second = pipeline.run(settings)

    assert killed.done.is_set()
    assert first.exit_status is ExitStatus.ROWS_NOT_DELIVERED
    assert first.summary["not_attempted"] == len(lost) > 0
    assert all("the Dask worker sending it was lost" in row[2] for row in lost)
    assert second.summary["delivered"] == len(expected.films)
    films = stored_films(sink)
    assert set(films) == expected.films
    shares = Shares.of(8, 2)
    assert len(films) - len(set(films)) <= BATCHES_OUT * shares.batches * shares.rows_per_batch
