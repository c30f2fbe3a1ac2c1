"""`make bench`: run the benchmarks and write bench/RESULTS.md.

So far it measures the sink (the figure the README quotes); the importer's
throughput and memory benchmarks belong to the performance work (issue 5).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import sink

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({model}){memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    print("sink throughput (wrk, failure rate 0) ...", file=sys.stderr)
    result = sink.measure()
    runs = ", ".join(f"{rate:,.0f}" for rate in result["runs"])  # type: ignore[union-attr]
    RESULTS.write_text(
        f"# Benchmark results\n\nMeasured {dt.date.today().isoformat()} by `make bench` on {machine()}.\n\n"
        "## Sink\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| POST/s, failure rate 0, {result['connections']} connections, wrk on the other core | "
        f"**{result['post_per_s']:,.0f}** (median of {runs}; {result['seconds']} s each) |\n\n"
        "Every POST carries a distinct Idempotency-Key and is stored in SQLite; one JSON log line per request.\n"
    )
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
