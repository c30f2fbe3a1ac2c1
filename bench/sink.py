"""Throughput of the sink at failure rate 0, measured with wrk (a C load generator).

wrk runs on one core and the sink on the other, so the figure is what one sink
process sustains, not what the load generator can produce.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
FILM = {
    "year": 1990,
    "length": 111,
    "title": "Tie Me Up! Tie Me Down!",
    "subject": "Comedy",
    "actor": "Banderas, Antonio",
    "actress": "Abril, Victoria",
    "director": "Almodovar, Pedro",
    "popularity": 68,
    "awards": "No",
    "image": "NicholasCage.png",
}
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {{["Idempotency-Key"] = "k" .. counter .. "-" .. math.random(1, 1e9)}})
end
"""


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed on first use (the bench needs root, as CI has)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages ...", file=sys.stderr)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet, check=False).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet, check=True)
    return shutil.which("wrk") or "wrk"


def start_sink(folder: Path, **settings: object) -> tuple[subprocess.Popen[bytes], int]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SINK_")}
    env.update({"SINK_PORT": "0", "SINK_DB": str(folder / "sink.sqlite")})
    env.update({f"SINK_{key.upper()}": str(value) for key, value in settings.items()})
    with (folder / "sink.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "movymporter.sink"], cwd=ROOT, env=env, stdout=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        first = (folder / "sink.log").read_text().split("\n", 1)[0]
        if first.startswith("{"):
            port = json.loads(first)["port"]
            try:
                requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                return process, port
            except requests.ConnectionError:
                pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the sink did not start")


def measure(seconds: int = 10, connections: int = 32, runs: int = 3) -> dict[str, object]:
    """Median POST/s over `runs` wrk runs against a fresh sink each time."""
    wrk = ensure_wrk()
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "post.lua"
            script.write_text(LUA.format(body=json.dumps(FILM)))
            process, port = start_sink(Path(folder), failure_rate=0)
            try:
                output = subprocess.run(
                    [
                        wrk,
                        "-t1",
                        f"-c{connections}",
                        f"-d{seconds}s",
                        "-s",
                        str(script),
                        f"http://127.0.0.1:{port}/movies",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                stored = requests.get(f"http://127.0.0.1:{port}/_sink/stats", timeout=10).json()["stored"]
            finally:
                process.terminate()
                process.wait()
        match = re.search(r"Requests/sec:\s+([\d.]+)", output)
        assert match, output
        rates.append(float(match.group(1)))
        assert stored > 0
    return {"post_per_s": statistics.median(rates), "runs": rates, "seconds": seconds, "connections": connections}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
