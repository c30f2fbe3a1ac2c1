"""Shared fixtures: real sink processes on free ports, a relay that can hold a run still, sample files,
and the Hypothesis profiles.

No test races the wall clock. A test waits for what it needs to happen (an event, a count the sink or the
run reports, a line in a log); the deadlines below only end a test that would otherwise hang, and are
generous enough for a machine that is busy with other work.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hypothesis
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.generate import Expected, write
from movymporter.delivery.outcome import Outcome, Verdict
from movymporter.journal import SUFFIX
from movymporter.sending import JOURNALS
from movymporter.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

GIVE_UP_S = 60.0
"""How long a test waits for something that should happen at once before it fails: never what a test
measures, only what keeps a broken test from hanging until pytest-timeout."""

# --- Hypothesis profiles: HYPOTHESIS_PROFILE=ci (the default, `make test`) or dev (`make test-fast`) ------------

_PROFILE_EXAMPLES = {"ci": 100, "dev": 10}
"""Examples per property test at Hypothesis' default (100); tests that ask for more scale with `examples()`."""
for _name, _count in _PROFILE_EXAMPLES.items():
    hypothesis.settings.register_profile(
        _name,
        max_examples=_count,
        # CI runs the same examples every time; dev explores (and replays its finds from .hypothesis/).
        derandomize=_name == "ci",
        database=None if _name == "ci" else hypothesis.settings.default.database,
        # Time limits on examples and their generation fail on a busy machine, not on a wrong program.
        deadline=None,
        suppress_health_check=[hypothesis.HealthCheck.too_slow],
        print_blob=True,
    )
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(count: int) -> int:
    """`count` examples under the ci profile, proportionally fewer under dev (at least 1)."""
    return max(1, math.ceil(count * hypothesis.settings.default.max_examples / _PROFILE_EXAMPLES["ci"]))


# --- waiting for things, not for time -------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], message: str, give_up_s: float = GIVE_UP_S) -> None:
    """Poll `condition` until it holds; fail with `message` if it still does not after `give_up_s`."""
    deadline = time.monotonic() + give_up_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


class SharedEvent:
    """An event that threads and forked processes share: once set() (by any of them), wait() returns True in
    every one. A pipe that stays readable, not a multiprocessing.Event, whose lock a killed waiter keeps. Its two
    descriptors stay open as long as the test process: a thread the test left behind may still wait on it."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def set(self) -> None:
        if not self.is_set():
            os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        readable, _, _ = select.select([self._read], [], [], timeout)
        return bool(readable)


class AfterDelivered:
    """An `on_outcome` observer for `pipeline.run` that runs `action` inside the run, right after it has counted
    its `count`-th delivered row (threads, worker processes or a cluster alike: outcomes are counted in the
    importer's own process), so the run is still going by construction. Given to several runs, it counts on
    from one to the next; `done` is set once `action` has run."""

    def __init__(self, count: int, action: Callable[[], None]) -> None:
        self._count = count
        self._action = action
        self._delivered = 0
        self.done = threading.Event()

    def __call__(self, outcome: Outcome) -> None:
        if outcome.verdict is Verdict.DELIVERED:
            self._delivered += 1
            if self._delivered == self._count:
                self._action()
                self.done.set()


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
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sink exited at start: {self.log_path.read_text()[offset:]}")
            for line in self.log_path.read_text(errors="replace")[offset:].splitlines():
                if '"event": "listening"' in line:
                    self.port = json.loads(line)["port"]
            if self.port:
                try:
                    self._http.get(f"{self.url}/metrics", timeout=5)
                    return self
                except (requests.ConnectionError, requests.Timeout):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"sink did not answer within {GIVE_UP_S:.0f} s")

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
        text = self._http.get(f"{self.url}/metrics", timeout=GIVE_UP_S).text
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
            page = self._http.get(
                f"{self.url}/_sink/movies", params={"after": after, "limit": 10_000}, timeout=GIVE_UP_S
            )
            page.raise_for_status()
            batch = page.json()
            if not batch:
                return films
            films.extend(batch)
            after = batch[-1]["id"]

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (its worker processes), from Linux's /proc; [] where that is not readable."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(text) for text in children.read_text().split()] if children.exists() else []


def child_pids_readable() -> bool:
    return Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists()


def is_running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Relay:
    """An HTTP relay between an importer and a sink, for tests that stop a run at a chosen point.

    It forwards every request to the sink and the sink's answer back. Told to `hold_after(n)`, it lets n
    more POSTs through and holds every later one, unanswered and not yet sent on, until `release()`: the
    run cannot end meanwhile, so a signal or a kill sent while `held` > 0 lands in the middle of it, with
    requests in flight. A held POST whose client has gone is still sent on when released, like a request
    that reached the sink before the client died."""

    _FORWARDED = ("content-type", "idempotency-key", "authorization", "accept", "user-agent")

    def __init__(self, sink: RunningSink) -> None:
        self._sink_url = sink.url
        self._gate = threading.Condition()
        self._allowance = math.inf
        self.posts = 0
        """POSTs received so far."""
        self.held = 0
        """POSTs waiting at the gate now."""
        self.finished = 0
        """POSTs done with: answered by the sink (counted before the answer goes on to the client), or lost with
        the sink."""
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                relay._forward(self, "GET")

            def do_POST(self) -> None:
                relay._forward(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the sink logs every request."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # as many connections at once as an importer opens

            def handle_error(self, request: object, client_address: object) -> None:
                """Quiet: a client that went away (a killed importer) is what these tests do."""

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def movies_url(self) -> str:
        return f"{self.url}/movies"

    def hold_after(self, count: int) -> None:
        """Let `count` more POSTs through, then hold every later one until `release()`."""
        with self._gate:
            self._allowance = count

    def release(self) -> None:
        """Send every held POST on, and hold none from now on."""
        with self._gate:
            self._allowance = math.inf
            self._gate.notify_all()

    def settled(self) -> bool:
        """Whether every POST the relay received is finished: none is held, none is still with the sink."""
        with self._gate:
            return self.finished == self.posts

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        for session in self._sessions:
            session.close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        if method == "POST":
            with self._gate:
                self.posts += 1
                if self._allowance <= 0:
                    self.held += 1
                    self._gate.wait_for(lambda: self._allowance > 0)
                    self.held -= 1
                self._allowance -= 1
        headers = {name: value for name, value in handler.headers.items() if name.lower() in self._FORWARDED}
        try:
            answer = self._session().request(
                method, self._sink_url + handler.path, data=body, headers=headers, timeout=GIVE_UP_S
            )
        except requests.RequestException:
            handler.close_connection = True  # the sink is gone: so is the answer
            return
        finally:
            if method == "POST":
                with self._gate:
                    self.finished += 1
        handler.send_response(answer.status_code)
        for name in ("content-type", "retry-after"):
            if name in answer.headers:
                handler.send_header(name, answer.headers[name])
        handler.send_header("content-length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
            self._sessions.append(session)
        return session


@pytest.fixture
def relay_to() -> Iterator[Callable[[RunningSink], Relay]]:
    """relay_to(sink): a Relay in front of that sink, closed after the test."""
    relays: list[Relay] = []

    def start(sink: RunningSink) -> Relay:
        relays.append(Relay(sink))
        return relays[-1]

    yield start
    for relay in relays:
        relay.close()


def wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until the log file at `path` holds `text`; fail at once if `process` ended first."""

    def written() -> bool:
        found = path.exists() and text in path.read_text(errors="replace")
        assert found or process is None or process.poll() is None, f"the process ended before logging {text!r}"
        return found

    wait_until(written, f"{path.name} did not show {text!r}")


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


def journal_entries(state_dir: Path) -> int:
    """Deliveries in the journals under a run's STATE_DIR so far (a journal folded in meanwhile counts none)."""
    count = 0
    for path in (state_dir / JOURNALS).glob(f"*/*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            count += path.read_bytes().count(b"\n")
    return count


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
        sink.stop(signal.SIGKILL)  # nothing reads its store any more: no need to wait for a graceful stop


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
