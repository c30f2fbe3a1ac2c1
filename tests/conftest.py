"""Shared fixtures: real sink processes on free ports, and sample files."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.generate import Expected, write
from movymporter.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@dataclass
class RunningSink:
    """A `python -m movymporter.sink` process started by a test."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    _http: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def movies_url(self) -> str:
        return f"{self.url}/movies"

    def start(self) -> RunningSink:
        """Start (or start again, on the same port and store) and wait until /metrics answers."""
        env = {**self.env, "SINK_PORT": str(self.port)}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "movymporter.sink"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sink exited at start: {self.log_path.read_text()[offset:]}")
            for line in self.log_path.read_text(errors="replace")[offset:].splitlines():
                if '"event": "listening"' in line:
                    self.port = json.loads(line)["port"]
            if self.port:
                try:
                    self._http.get(f"{self.url}/metrics", timeout=1)
                    return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("sink did not answer within 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._http.close()

    def restart(self) -> RunningSink:
        self.stop()
        self._http = requests.Session()
        return self.start()

    def post_counts(self) -> dict[str, int]:
        """sink_post_total by status, e.g. {"201": 812, "503": 188}."""
        return self._counter("sink_post")

    def get_counts(self) -> dict[str, int]:
        return self._counter("sink_get")

    def _counter(self, name: str) -> dict[str, int]:
        text = self._http.get(f"{self.url}/metrics", timeout=5).text
        counts: dict[str, int] = {}
        for family in text_string_to_metric_families(text):
            if family.name == name:
                for sample in family.samples:
                    if sample.name == f"{name}_total":
                        counts[sample.labels["status"]] = int(sample.value)
        return counts

    def stored(self) -> list[dict[str, object]]:
        """Every film the sink stored, in arrival order."""
        films: list[dict[str, object]] = []
        after = 0
        while True:
            page = self._http.get(f"{self.url}/_sink/movies", params={"after": after, "limit": 10_000}, timeout=10)
            page.raise_for_status()
            batch = page.json()
            if not batch:
                return films
            films.extend(batch)
            after = batch[-1]["id"]

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def _settings_from_tests_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's or CI's environment must not change what a test configures."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _no_handler_left_by_the_cli() -> Iterator[None]:
    """The CLI points the root logger at the test's captured stderr (basicConfig(force=True)), which pytest
    closes after the test: take that handler away again, or later tests log through a dead stream."""
    before, level = set(logging.root.handlers), logging.root.level
    yield
    for handler in logging.root.handlers[:]:
        if type(handler) is logging.StreamHandler and handler not in before:
            logging.root.removeHandler(handler)
    logging.root.setLevel(level)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from keyword arguments only (no .env), reports under tmp_path, quick retries."""

    def make(**values: object) -> Settings:
        values.setdefault("report_dir", tmp_path / "reports")
        values.setdefault("state_dir", tmp_path / "state")
        values.setdefault("backoff_initial", 0.005)
        values.setdefault("backoff_max", 0.1)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def write_films(folder: Path, count: int, header: str = "title,year") -> Path:
    """folder/films.csv: `header`, then `count` valid films ("Film 0", "Film 1", ... of 2000), one per line."""
    path = folder / "films.csv"
    path.write_text(header + "\n" + "".join(f"Film {n},2000\n" for n in range(count)))
    return path


def read_csv(path: Path, *, delimiter: str = ",", encoding: str = "utf-8-sig") -> list[list[str]]:
    """All rows of a report, as strings, bytes that were not text kept as surrogates (a BOM is skipped)."""
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def assert_accounted(summary: dict[str, object]) -> None:
    """Every row read is in exactly one bucket (SPEC section 3, Reports)."""
    buckets = ("delivered", "invalid", "sink_rejected", "failed", "duplicates", "not_attempted", "valid")
    assert summary["rows"] == sum(summary[name] for name in buckets), summary  # type: ignore[misc]


@pytest.fixture
def start_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningSink]]:
    """Start real sinks on free ports: start_sink(failure_rate=0, latency_ms=5, ...)."""
    started: list[RunningSink] = []

    def start(**settings: object) -> RunningSink:
        folder = tmp_path_factory.mktemp("sink")
        env = {key: value for key, value in os.environ.items() if not key.startswith("SINK_")}
        env["SINK_DB"] = str(folder / "sink.sqlite")
        env.update({f"SINK_{key.upper()}": str(value) for key, value in settings.items()})
        sink = RunningSink(env=env, log_path=folder / "sink.log")
        started.append(sink)
        return sink.start()

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def generated(tmp_path: Path) -> Callable[..., tuple[Path, Expected]]:
    """generated(count, seed=..., extras=...): a realistic export in tmp_path and the oracle of what it holds."""

    def make(count: int, **options: object) -> tuple[Path, Expected]:
        path = tmp_path / "films.csv"
        return path, write(path, count, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def reliable_sink(start_sink: Callable[..., RunningSink]) -> RunningSink:
    """A sink that never answers 503, for tests about data rather than retries."""
    return start_sink(failure_rate=0)


@pytest.fixture
def flaky_sink(start_sink: Callable[..., RunningSink]) -> RunningSink:
    """A sink as the spec describes it: one POST in five answers 503 (seeded)."""
    return start_sink(failure_rate=0.2, seed=7)
