"""The bin/ scripts end to end: a real sink on a free port, runtime files under tmp_path.

Every script runs with stdout captured (not a terminal), so bin/setup does not follow
the log. Every test's fixture runs bin/clean at teardown, whatever happened.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
FILM = {"title": "Heat", "year": 1995}


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refuses_connections(port: int) -> bool:
    """True when a TCP connect to the port is refused: nothing listens there."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def is_sink_process(pid: int) -> bool:
    """True while pid is a running (not exited) `python -m movymporter.sink`."""
    try:
        return b"movymporter.sink" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone, or going
        return False


def clean_env(**variables: str) -> dict[str, str]:
    """The test's environment without any SINK_ variable, plus the given ones."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SINK_")}
    env.update(variables)
    return env


@dataclass
class Scripts:
    """The bin/ scripts of one project tree, run against one port and run directory."""

    root: Path
    env: dict[str, str]
    port: int
    run_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"sink-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"sink-{self.port}.log"

    def run(self, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin" / name)],
            env=self.env,
            cwd=self.run_dir.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def post_counts(self) -> dict[str, int]:
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        return {
            sample.labels["status"]: int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "sink_post_total"
        }

    def stored_count(self) -> int:
        return requests.get(f"{self.url}/_sink/stats", timeout=5).json()["stored"]


@pytest.fixture
def scripts(tmp_path: Path) -> Iterator[Scripts]:
    """The project's own bin/ on a free port, runtime files in tmp_path; bin/clean at teardown.

    Every SINK_ setting is explicit so that a developer's .env cannot interfere.
    """
    port = free_port()
    run_dir = tmp_path / "run"
    env = clean_env(
        SINK_PORT=str(port),
        SINK_RUN_DIR=str(run_dir),
        SINK_HOST="127.0.0.1",
        SINK_FAILURE_RATE="0",
        SINK_LATENCY_MS="0",
        SINK_DB=str(run_dir / "films.sqlite"),
    )
    scripts = Scripts(root=ROOT, env=env, port=port, run_dir=run_dir)
    try:
        yield scripts
    finally:
        scripts.run("clean")


def copy_project(tmp_path: Path, *, real_venv: bool) -> Path:
    """A project tree with a copy of bin/ (so it has its own ROOT, .env and .venv) and the package linked in."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "bin", root / "bin")
    (root / "movymporter").symlink_to(ROOT / "movymporter")
    if real_venv:
        (root / ".venv").symlink_to(ROOT / ".venv")
    return root


# --- bin/setup


@pytest.mark.slow
def test_setup_starts_the_sink_and_prints_one_line(scripts: Scripts) -> None:
    """bin/setup returns with the sink answering and prints one line naming the URL, pid and log."""
    result = scripts.run("setup")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    pid = scripts.pid()
    assert result.stdout.splitlines() == [f"sink started on {scripts.url} (pid {pid}); log: {scripts.log_file}"]
    assert is_sink_process(pid)
    assert scripts.post_counts() == {}
    assert '"event": "listening"' in scripts.log_file.read_text()
    assert (scripts.run_dir / "films.sqlite").exists()


@pytest.mark.slow
def test_second_setup_finds_the_sink_running(scripts: Scripts) -> None:
    """A second bin/setup reports the running sink (same pid) and starts nothing."""
    assert scripts.run("setup").returncode == 0
    pid = scripts.pid()
    again = scripts.run("setup")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"sink already running on {scripts.url} (pid {pid}); log: {scripts.log_file}"]
    assert scripts.pid() == pid
    assert scripts.log_file.read_text().count('"event": "listening"') == 1


@pytest.mark.slow
def test_setup_reports_a_sink_that_cannot_start(scripts: Scripts) -> None:
    """A bad SINK_ setting makes bin/setup fail and show the sink's message naming the setting."""
    scripts.env["SINK_FAILURE_RATE"] = "2"
    result = scripts.run("setup")
    assert result.returncode == 1
    assert "the sink exited during start-up" in result.stderr
    assert "SINK_FAILURE_RATE" in result.stderr
    assert not scripts.pid_file.exists()
    assert refuses_connections(scripts.port)


class ForeignService(BaseHTTPRequestHandler):
    """Some other web service: answers every GET with a fixed status and records the paths asked."""

    status = 200
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.mark.slow
@pytest.mark.parametrize("status", [200, 404])
def test_setup_refuses_a_port_held_by_another_http_service(scripts: Scripts, status: int) -> None:
    """bin/setup exits 1 with a clear message, leaving the service alone, when another HTTP service has the port."""
    handler = type("Handler", (ForeignService,), {"status": status, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", scripts.port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = scripts.run("setup")
        still_there = requests.get(f"{scripts.url}/", timeout=5).status_code
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert f"port {scripts.port} already answers but is not a sink" in result.stderr
    assert "SINK_PORT" in result.stderr
    assert result.stdout == ""
    assert handler.paths[0] == "/metrics"
    assert still_there == status
    assert not scripts.pid_file.exists()


@pytest.mark.slow
def test_setup_reports_a_port_held_by_a_silent_listener(scripts: Scripts) -> None:
    """With a non-HTTP listener on the port, bin/setup exits 1 and shows the sink's 'address in use' message."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", scripts.port))
        holder.listen()
        result = scripts.run("setup")
    assert result.returncode == 1
    assert "the sink exited during start-up" in result.stderr
    assert f"cannot listen on 127.0.0.1:{scripts.port}" in result.stderr
    assert not scripts.pid_file.exists()


# --- bin/reset and bin/clean


@pytest.mark.slow
def test_reset_restarts_the_sink_with_metrics_at_zero_and_films_kept(scripts: Scripts) -> None:
    """bin/reset replaces the sink process: sink_post_total starts from zero, stored films remain."""
    assert scripts.run("setup").returncode == 0
    old_pid = scripts.pid()
    with requests.Session() as session:
        statuses = [session.post(f"{scripts.url}/movies", json=FILM, timeout=5).status_code for _ in range(3)]
        statuses.append(session.post(f"{scripts.url}/movies", json={"title": ""}, timeout=5).status_code)
    assert statuses == [201, 201, 201, 400]
    assert scripts.post_counts() == {"201": 3, "400": 1}

    result = scripts.run("reset")

    assert result.returncode == 0, result.stderr
    new_pid = scripts.pid()
    assert new_pid != old_pid
    assert result.stdout.splitlines() == [
        f"sink restarted on {scripts.url} (pid {new_pid}; stopped pid {old_pid}); metrics are back to zero"
    ]
    assert not is_sink_process(old_pid)
    assert scripts.post_counts() == {}
    assert scripts.stored_count() == 3


def test_reset_starts_a_sink_that_was_not_running(scripts: Scripts) -> None:
    """bin/reset with no sink running starts one and says so."""
    result = scripts.run("reset")
    assert result.returncode == 0, result.stderr
    assert "was not running" in result.stdout
    assert is_sink_process(scripts.pid())
    assert scripts.post_counts() == {}


def test_clean_stops_the_sink_and_removes_runtime_files(scripts: Scripts) -> None:
    """bin/clean stops the sink (the port refuses connections) and removes pid, log, database and run dir."""
    assert scripts.run("setup").returncode == 0
    pid = scripts.pid()
    assert requests.post(f"{scripts.url}/movies", json=FILM, timeout=5).status_code == 201
    assert (scripts.run_dir / "films.sqlite").exists()

    result = scripts.run("clean")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sink on port {scripts.port} stopped (pid {pid})",
        f"removed runtime files of port {scripts.port} from {scripts.run_dir}",
    ]
    assert refuses_connections(scripts.port)
    assert not is_sink_process(pid)
    assert not scripts.run_dir.exists()


def test_clean_without_a_sink_says_so_and_succeeds(scripts: Scripts) -> None:
    """bin/clean with nothing running exits 0 and says no sink was running."""
    result = scripts.run("clean")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"no sink running on port {scripts.port}"


@pytest.mark.slow
def test_clean_leaves_other_files_in_the_run_dir(scripts: Scripts) -> None:
    """bin/clean removes only its port's files: the run dir stays when something else is in it."""
    assert scripts.run("setup").returncode == 0
    other = scripts.run_dir / "sink-1.log"
    other.write_text("another port's log\n")
    assert scripts.run("clean").returncode == 0
    assert sorted(path.name for path in scripts.run_dir.iterdir()) == ["sink-1.log"]


# --- bin/log


@pytest.mark.slow
def test_log_follows_the_sink_log(scripts: Scripts) -> None:
    """bin/log prints the existing log and then each new request's line as it is written."""
    assert scripts.run("setup").returncode == 0
    follower = subprocess.Popen(
        [str(ROOT / "bin" / "log")], env=scripts.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(text: str) -> str:
        """The first line holding `text`; a minute without it (time enough for a busy machine) fails the test."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"bin/log did not show {text!r} within a minute")

    try:
        wait_for('"event": "listening"')
        requests.post(f"{scripts.url}/followed", json=FILM, timeout=5)
        assert '"status": 201' in wait_for('"path": "/followed"')
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_log_without_a_sink_log_explains(scripts: Scripts) -> None:
    """bin/log with no log file exits 1 and points to bin/setup."""
    result = scripts.run("log")
    assert result.returncode == 1
    assert f"no sink log at {scripts.log_file}" in result.stderr
    assert "bin/setup" in result.stderr


# --- .env and bin/destroy on a copy of the project


@pytest.fixture
def project_copy(tmp_path: Path) -> Iterator[Scripts]:
    """A copy of bin/ beside the real .venv and package, with a .env; only SINK_RUN_DIR comes from the environment."""
    root = copy_project(tmp_path, real_venv=True)
    port = free_port()
    # CRLF line endings, a quoted value, a comment, a non-sink setting and no newline at the end.
    (root / ".env").write_text(
        f"# the sink for the tests\r\nLOG_LEVEL=DEBUG\r\nSINK_FAILURE_RATE=1\r\nSINK_LATENCY_MS='0'\r\nSINK_PORT={port}"
    )
    run_dir = tmp_path / "run"
    scripts = Scripts(root=root, env=clean_env(SINK_RUN_DIR=str(run_dir)), port=port, run_dir=run_dir)
    try:
        yield scripts
    finally:
        scripts.run("clean")


@pytest.mark.slow
def test_env_file_settings_apply(project_copy: Scripts) -> None:
    """SINK_ lines of .env apply, CRLF endings and an unterminated last line included."""
    result = project_copy.run("setup")
    assert result.returncode == 0, result.stderr
    pid = project_copy.pid()
    assert result.stdout.splitlines() == [
        f"sink started on {project_copy.url} (pid {pid}); log: {project_copy.log_file}"
    ]
    response = requests.post(f"{project_copy.url}/movies", json=FILM, timeout=5)
    assert response.status_code == 503, "SINK_FAILURE_RATE=1 from .env"


def test_environment_wins_over_env_file(project_copy: Scripts) -> None:
    """A SINK_ variable set in the environment beats the same line in .env."""
    project_copy.env["SINK_FAILURE_RATE"] = "0"
    assert project_copy.run("setup").returncode == 0
    assert requests.post(f"{project_copy.url}/movies", json=FILM, timeout=5).status_code == 201


@pytest.mark.slow
def test_destroy_stops_the_sink_and_removes_venv_state_and_reports(scripts: Scripts, tmp_path: Path) -> None:
    """bin/destroy (run from a copy of the project) stops the sink, then removes .venv, .state and reports only."""
    root = copy_project(tmp_path, real_venv=False)
    for folder in (".venv", ".state", "reports"):
        (root / folder / "sub").mkdir(parents=True)
        (root / folder / "sub" / "file").write_text("x")
    (root / "keep.txt").write_text("not ours to delete")
    assert scripts.run("setup").returncode == 0
    pid = scripts.pid()

    result = subprocess.run(
        [str(root / "bin" / "destroy")],
        env=scripts.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert f"sink on port {scripts.port} stopped (pid {pid})" in result.stdout
    assert "removed .venv, .state and reports" in result.stdout
    assert refuses_connections(scripts.port)
    assert not scripts.run_dir.exists()
    assert sorted(path.name for path in root.iterdir()) == ["bin", "keep.txt", "movymporter"]
    assert (ROOT / ".venv" / "bin" / "python").exists(), "the real project's venv is untouched"
