"""Run the importer (or the naive loop) as a child process and measure it.

CPU time comes from the kernel's accounting of that child and the processes it
started and waited for (os.wait4: the importer's sending workers count, the
sink and the benchmark do not). Memory is read from /proc while it runs: the
child's VmHWM (wait4's ru_maxrss would carry over the high-water mark of the
forking parent) or, when it has worker processes, the sum of their
proportional set sizes (PSS, which shares the pages a fork has in common
between the processes instead of counting them in each), whichever is higher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from movymporter.settings import Settings  # noqa: E402 - after the path set-up above


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_status: int
    stdout: str


def run_child(args: list[str], *, env: dict[str, str] | None = None, interrupt_after: float | None = None) -> ChildRun:
    """Run to the end (or send SIGINT after `interrupt_after` seconds) and account for the child only."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL)
        peak = _PeakRss(process.pid)
        peak.start()
        timer = None
        if interrupt_after is not None:
            timer = threading.Timer(interrupt_after, process.send_signal, (signal.SIGINT,))
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        peak.finish()
        if timer is not None:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return ChildRun(wall, usage.ru_utime + usage.ru_stime, peak.mb, process.returncode, out.read())


class _PeakRss(threading.Thread):
    """Polls /proc: the process's VmHWM (its peak resident set since it exec'd) and the PSS of its tree."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self._done = threading.Event()
        self.mb = 0.0

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.mb = max(self.mb, _field(f"/proc/{self._pid}/status", "VmHWM:"))
                children = Path(f"/proc/{self._pid}/task/{self._pid}/children").read_text().split()
            except (OSError, ValueError):
                return
            if children:
                tree = 0.0
                for pid in [str(self._pid), *children]:
                    try:
                        tree += _field(f"/proc/{pid}/smaps_rollup", "Pss:")
                    except (OSError, ValueError):
                        continue  # a worker that just ended
                self.mb = max(self.mb, tree)
            self._done.wait(0.02)

    def finish(self) -> None:
        self._done.set()
        self.join()


def _field(path: str, name: str) -> float:
    """A kB figure from a /proc file, in MB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(name):
            return int(line.split()[1]) / 1024
    raise ValueError(f"{name} not in {path}")


def importer_env() -> dict[str, str]:
    """The environment minus anything that would change the importer's settings."""
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_importer(
    csv_in: Path,
    *,
    url: str | None = None,
    concurrency: int = 16,
    interrupt_after: float | None = None,
    engine: str = "local",
) -> tuple[ChildRun, dict[str, object]]:
    """`python -m movymporter` on a file (a dry run without `url`); the run's summary.json."""
    with tempfile.TemporaryDirectory() as folder:
        args = [sys.executable, "-m", "movymporter", "--csv", str(csv_in), "--report-dir", f"{folder}/reports"]
        args += ["--no-progress", "--log-level", "WARNING", "--env-file", f"{folder}/none.env"]
        Path(f"{folder}/none.env").write_text("")
        args += ["--dry-run"] if url is None else ["--url", url, "--concurrency", str(concurrency)]
        args += ["--engine", engine]
        env = {**importer_env(), "STATE_DIR": f"{folder}/state"}
        run = run_child(args, env=env, interrupt_after=interrupt_after)
        summary = json.loads(Path(f"{folder}/reports/summary.json").read_text())
    return run, summary


def run_naive(csv_in: Path, url: str) -> tuple[ChildRun, dict[str, int]]:
    run = run_child([sys.executable, str(ROOT / "bench" / "naive.py"), str(csv_in), url], env=importer_env())
    return run, json.loads(run.stdout)
