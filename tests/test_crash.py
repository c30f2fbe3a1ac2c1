"""kill -9 of the importer against a sink that stores every request, as the original service does.

The original service does not honour Idempotency-Key, so what a crashed run
delivered without recording it is stored twice by the run after it. The floor
is the requests whose answer had not arrived when the process died: at most
CONCURRENCY of them. Each trial imports its own file, is killed after a random
number of deliveries, and is run again to the end; the sink's store must then
hold every film of the file, and no more than CONCURRENCY of them twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import ROOT, RunningSink, journal_entries

CONCURRENCY = 8
ROWS = 600
TRIALS = 10
"""Per way of sending: 20 kills in all."""


@dataclass(frozen=True)
class Trial:
    number: int
    workers: int
    kill_group: bool
    """Kill the workers too (the whole process group), not only the importer's main process."""
    kill_after: int
    """Deliveries journaled before the kill."""


def trials() -> list[Trial]:
    rng = random.Random(1911)
    made = []
    for number in range(2 * TRIALS):
        workers = 1 if number < TRIALS else 2
        made.append(Trial(number, workers, workers > 1 and number % 2 == 0, rng.randint(1, ROWS // 4)))
    return made


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    """Poll `condition` until it holds; the importer ending first (or a minute passing) fails the trial."""
    for _ in range(6000):
        if condition():
            return
        try:
            process.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the importer ended (status {process.returncode}) before {what}")
    raise AssertionError(f"waited a minute for {what}")


def run_trial(trial: Trial, sink: RunningSink, folder: Path) -> str:
    """Import, SIGKILL after `kill_after` deliveries, import again to the end. Returns the titles' prefix."""
    folder.mkdir()
    prefix = f"Trial {trial.number} film"
    (folder / "films.csv").write_text("title,year\n" + "".join(f"{prefix} {n},2000\n" for n in range(ROWS)))
    known = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in known}
    env |= {
        "PYTHONPATH": str(ROOT),
        "CSV_IN": "films.csv",
        "URL_OUT": sink.movies_url,
        "CONCURRENCY": str(CONCURRENCY),
        "WORKERS": str(trial.workers),
        "BACKOFF_INITIAL": "0.005",
        "BACKOFF_MAX": "0.05",
        "LOG_LEVEL": "WARNING",
    }

    def launch() -> subprocess.Popen[bytes]:
        with (folder / "importer.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "movymporter", "--no-progress"],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    first = launch()
    try:
        state_dir = folder / ".state"
        wait_until(lambda: journal_entries(state_dir) >= trial.kill_after, first, f"{trial.kill_after} deliveries")
        if trial.kill_group:
            os.killpg(first.pid, signal.SIGKILL)
        else:
            first.kill()
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL

    second = launch()
    assert second.wait(timeout=120) == ExitStatus.OK, (folder / "importer.log").read_text()
    return prefix


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_and_resends_at_most_the_requests_in_flight(
    start_sink: Callable[..., RunningSink], tmp_path: Path
) -> None:
    """20 kills (threads; two worker processes, killed alone or with them): 0 films lost, <= CONCURRENCY twice."""
    sink = start_sink(failure_rate=0.2, latency_ms=10, seed=9, idempotency="off")
    planned = trials()

    with ThreadPoolExecutor(max_workers=4) as pool:
        prefixes = list(pool.map(lambda trial: run_trial(trial, sink, tmp_path / str(trial.number)), planned))

    stored = Counter(str(film["title"]) for film in sink.stored())
    for trial, prefix in zip(planned, prefixes, strict=True):
        copies = [stored[f"{prefix} {n}"] for n in range(ROWS)]
        lost = copies.count(0)
        twice = sum(count - 1 for count in copies if count > 1)
        assert (lost, twice <= CONCURRENCY) == (0, True), f"{trial}: {lost} lost, {twice} stored twice"
        folded = journal_entries(tmp_path / str(trial.number) / ".state") == 0
        assert folded, "the journals were not folded into the state"
