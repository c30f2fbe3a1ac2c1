"""`make bench`: measure the importer and the sink, write bench/RESULTS.md and bench/results.png.

RESULTS.md is this run's figures, then a hand-written "## History" section, which is kept as it is.

Every figure is the median of several runs; a ratio between two programs is
computed within each pair of runs made one after the other, then the median
of the ratios is taken. Targets are those of SPEC section 6.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import journal, lines, sink
from bench.measure import run_importer, run_naive

HERE = Path(__file__).resolve().parent
DATA = HERE / "out"
RESULTS = HERE / "RESULTS.md"
HISTORY = re.compile(r"^## History[ \t]*$", re.MULTILINE)
"""The heading of RESULTS.md's hand-written part: a run rewrites what is above it and keeps the rest."""
CHART = HERE / "results.png"
RUNS = 3

DRY_RUN_TARGET = 250_000
CPU_TARGET_US = 400
LATENCY_MS, FAILURE_RATE, LATENCY_CONCURRENCY = 50, 0.2, 32
RSS_TARGET_MB = 100


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def data_file(name: str, rows: int, *, seed: int, clean: bool = False) -> Path:
    """A generated file, kept between runs of the bench (same seed, same bytes). Made by a child process:
    the generator's oracle of a 2M-row file takes hundreds of MB that the bench itself should not hold."""
    path = DATA / f"{name}.csv"
    if not path.exists():
        log(f"generating {path.name} ({rows:,} rows)")
        args = [sys.executable, str(HERE / "generate.py"), "--rows", str(rows), "--seed", str(seed), "--out", str(path)]
        subprocess.run([*args, *(["--clean"] if clean else [])], check=True, stderr=subprocess.DEVNULL)
    return path


def with_sink(measure: Callable[[str], Any], **settings: Any) -> Any:
    """Run `measure(url)` against a fresh sink, so no run sees another run's films or counters."""
    with tempfile.TemporaryDirectory() as folder:
        process, port = sink.start_sink(Path(folder), **settings)
        try:
            return measure(f"http://127.0.0.1:{port}/movies")
        finally:
            process.terminate()
            process.wait()


def dry_run(path: Path) -> dict[str, Any]:
    rates = []
    for _ in range(RUNS):
        run, summary = run_importer(path)
        rates.append(summary["rows_per_s"])
        log(f"dry run: {summary['rows']:,} rows, {summary['rows_per_s']:,.0f} rows/s, {run.cpu_s:.1f} s CPU")
    return {"rows_per_s": statistics.median(rates), "runs": rates, "rows": summary["rows"]}


def sending(path: Path) -> dict[str, Any]:
    """movymporter and the naive loop on the same clean file and the same kind of sink, pair by pair."""
    pairs = []
    for _ in range(RUNS):
        mine, summary = with_sink(lambda url: run_importer(path, url=url), failure_rate=0)
        naive, counts = with_sink(lambda url: run_naive(path, url), failure_rate=0)
        assert summary["delivered"] == counts["delivered"] > 0, (summary["delivered"], counts)
        pair = {
            "rows": summary["delivered"],
            "movymporter_rows_per_s": summary["delivered"] / summary["elapsed_s"],
            "movymporter_cpu_us": mine.cpu_s / summary["delivered"] * 1e6,
            "naive_rows_per_s": counts["delivered"] / naive.wall_s,
            "naive_cpu_us": naive.cpu_s / counts["delivered"] * 1e6,
        }
        pair["cpu_ratio"] = pair["naive_cpu_us"] / pair["movymporter_cpu_us"]
        pairs.append(pair)
        log(
            f"sending: movymporter {pair['movymporter_rows_per_s']:,.0f} rows/s, {pair['movymporter_cpu_us']:.0f} us "
            f"CPU/row; naive {pair['naive_rows_per_s']:,.0f} rows/s, {pair['naive_cpu_us']:.0f} us CPU/row"
        )
    return {key: statistics.median(pair[key] for pair in pairs) for key in pairs[0]} | {"pairs": pairs}


def latency_bound(path: Path) -> dict[str, Any]:
    ideal = LATENCY_CONCURRENCY / (LATENCY_MS / 1000) * (1 - FAILURE_RATE)
    rates = []
    for _ in range(RUNS):
        _, summary = with_sink(
            lambda url: run_importer(path, url=url, concurrency=LATENCY_CONCURRENCY),
            failure_rate=FAILURE_RATE,
            latency_ms=LATENCY_MS,
        )
        rates.append(summary["delivered"] / summary["elapsed_s"])
        log(f"latency-bound: {rates[-1]:,.0f} rows/s of an ideal {ideal:,.0f}")
    rate = statistics.median(rates)
    return {"rows_per_s": rate, "ideal": ideal, "ratio": rate / ideal, "runs": rates}


def engines(path: Path) -> dict[str, Any]:
    """Delivered rows/s with --engine local (2 worker processes) and --engine dask (a LocalCluster of 2 workers
    that the run starts: its start-up is included), pair by pair, on the same clean file at failure 0."""
    pairs = []
    for _ in range(RUNS):
        pair: dict[str, float] = {}
        for engine in ("local", "dask"):
            send = functools.partial(run_importer, path, engine=engine)
            _, summary = with_sink(lambda url, send=send: send(url=url), failure_rate=0)
            pair[engine] = summary["delivered"] / summary["elapsed_s"]
        pair["ratio"] = pair["dask"] / pair["local"]
        pairs.append(pair)
        log(f"engines: local {pair['local']:,.0f} rows/s, dask {pair['dask']:,.0f} rows/s ({pair['ratio']:.0%})")
    return {key: statistics.median(pair[key] for pair in pairs) for key in pairs[0]} | {"pairs": pairs}


def memory(small: Path, large: Path, send_seconds: float) -> dict[str, Any]:
    """Peak RSS of whole dry runs, of a whole small send, and of the first minute of sending the large file."""
    results: dict[str, Any] = {}
    for label, path in (("10k", small), ("2m", large)):
        run, summary = run_importer(path)
        results[f"dry_{label}"] = run.peak_rss_mb
        log(f"memory: dry run of {summary['rows']:,} rows peaks at {run.peak_rss_mb:.0f} MB")
    run, summary = with_sink(lambda url: run_importer(small, url=url), failure_rate=0.2)
    results["send_10k"] = run.peak_rss_mb
    log(f"memory: sending {summary['rows']:,} rows peaks at {run.peak_rss_mb:.0f} MB")
    run, summary = with_sink(lambda url: run_importer(large, url=url, interrupt_after=send_seconds), failure_rate=0.2)
    results["send_2m"] = run.peak_rss_mb
    results["send_2m_rows"] = summary["rows"]
    rows = f"{summary['rows']:,}"
    log(f"memory: {send_seconds:.0f} s of sending the 2M-row file ({rows} rows) peak at {run.peak_rss_mb:.0f} MB")
    return results


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_text = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory_text = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({model}){memory_text}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(results: dict[str, Any], seconds: float) -> str:
    eng = results["engines"]
    dry, send, lat, mem, sink_rate, jour, huge = (
        results["dry"],
        results["send"],
        results["latency"],
        results["memory"],
        results["sink"],
        results["journal"],
        results["lines"],
    )
    rows = [
        ("Dry-run validation, one process, 1M-row dirty file", f"{dry['rows_per_s']:,.0f} rows/s",
         f">= {DRY_RUN_TARGET:,} rows/s", verdict(dry["rows_per_s"] >= DRY_RUN_TARGET)),
        ("Sending, failure 0, no latency: CPU per delivered row", f"{send['movymporter_cpu_us']:.0f} us",
         f"< {CPU_TARGET_US} us", verdict(send["movymporter_cpu_us"] < CPU_TARGET_US)),
        ("... the same, naive `requests.post` loop", f"{send['naive_cpu_us']:.0f} us", "", ""),
        ("... CPU ratio naive / movymporter (median of pairs)", f"{send['cpu_ratio']:.2f}x", ">= 2x",
         verdict(send["cpu_ratio"] >= 2)),
        ("... delivered rows/s, movymporter / naive", f"{send['movymporter_rows_per_s']:,.0f} / "
         f"{send['naive_rows_per_s']:,.0f}", "", ""),
        (f"Sending at {LATENCY_MS} ms latency, {FAILURE_RATE:.0%} 503, concurrency {LATENCY_CONCURRENCY}",
         f"{lat['rows_per_s']:,.0f} rows/s = {lat['ratio']:.0%} of ideal {lat['ideal']:,.0f}", ">= 90 %",
         verdict(lat["ratio"] >= 0.9)),
        ("Peak RSS, dry run, 10k / 2M rows", f"{mem['dry_10k']:.0f} / {mem['dry_2m']:.0f} MB", f"< {RSS_TARGET_MB} MB",
         verdict(max(mem["dry_10k"], mem["dry_2m"]) < RSS_TARGET_MB)),
        ("Peak RSS, sending, 10k rows / first minute of the 2M-row file", f"{mem['send_10k']:.0f} / "
         f"{mem['send_2m']:.0f} MB", f"< {RSS_TARGET_MB} MB",
         verdict(max(mem["send_10k"], mem["send_2m"]) < RSS_TARGET_MB)),
        ("Peak RSS, dry run, one line of a 200 MB cell / a 200 MB quoted cell / rows of 1 MB",
         " / ".join(f"{case['peak_rss_mb']:.0f}" for case in huge.values()) + " MB", f"< {RSS_TARGET_MB} MB",
         verdict(all(case["peak_rss_mb"] < RSS_TARGET_MB and case["good_rows_valid"] for case in huge.values()))),
        ("Journal of deliveries, SYNC=normal: CPU per delivered row", f"{jour['normal_cpu_us']:.1f} us = "
         f"{jour['normal_cpu_us'] / send['movymporter_cpu_us']:.1%} of a delivered row's CPU", "", ""),
        ("... SYNC=full (flushed to the disk): time per delivered row", f"{jour['full_wall_us']:,.0f} us", "", ""),
        ("Sending, failure 0: delivered rows/s, --engine dask (LocalCluster of 2) / local (2 processes)",
         f"{eng['dask']:,.0f} / {eng['local']:,.0f} = {eng['ratio']:.0%}", "", ""),
        ("Sink: POST/s at failure 0 (wrk, 32 connections)", f"{sink_rate['post_per_s']:,.0f}", ">= 5,000",
         verdict(sink_rate["post_per_s"] >= 5000)),
    ]  # fmt: skip
    table = "\n".join(f"| {what} | {value} | {target} | {status} |" for what, value, target, status in rows)
    return f"""# Benchmark results

Measured {dt.date.today().isoformat()} by `make bench` ({seconds / 60:.1f} min) on {machine()}.
Each figure is the median of {RUNS} runs (ratios: median of per-pair ratios). CPU time is the kernel's
accounting of the importer's process and its sending workers (`os.wait4`); peak memory is the main process's
`VmHWM` or, while workers run, the summed PSS of the process tree if higher. The sink runs on the same 2 cores.

| measure | result | target | |
|---|---|---|---|
{table}

![results](results.png)

How each figure is made (see `bench/run.py`):
- dry run: `python -m movymporter --dry-run` on {dry["rows"]:,} rows of a generated export with ~5 % defects and
  ~3 % duplicates; rows/s from the run's own `elapsed_s` (interpreter start-up excluded).
- sending: a clean generated file of {send["rows"]:,} rows to a fresh sink at failure rate 0, concurrency 16 and
  2 worker processes (the defaults), interpreter start-up included, against `bench/naive.py` (a `csv.DictReader`
  loop of `requests.post`, retried on 503) on the same file.
- latency-bound: the same clean file (about 20 s a run, so that the first and last rows, sent with fewer requests in
  flight, weigh little) to a sink adding {LATENCY_MS} ms to every POST and failing {FAILURE_RATE:.0%};
  ideal = concurrency / latency x success rate.
- memory: peak RSS of whole dry runs (10k and 2M rows), of a whole send of 10k rows at 20 % 503, and of the first
  {results["send_seconds"]:.0f} s of sending the 2M-row file ({mem["send_2m_rows"]:,} rows read by then; the
  duplicate table is sized for the whole file at start, so its memory is included).
- one huge line: `bench/lines.py` dry-runs a header, then a 200 MB part (one unquoted cell on one line; one quoted
  cell over lines of 1 KiB; rows of 1,000 fields of 1,000 characters), then 5 good films, which must all be
  counted valid (the rest of the file goes on).
- engines: a clean generated file of {eng["rows"]:,} rows sent at failure 0 with `--engine local` and
  `--engine dask` (a `LocalCluster` of 2 workers, started and stopped by the run, its start-up included), one
  after the other, each to a fresh sink.
- journal: `bench/journal.py` appends {journal.NORMAL_ENTRIES:,} entries (SYNC=normal) and {journal.FULL_ENTRIES:,}
  (SYNC=full, one fsync each) to a journal under `bench/out` with the importer's own writer; the share is of the
  CPU per delivered row measured above, in the same run.
- raw numbers: {results}
"""


def write_results(figures: str, path: Path = RESULTS) -> None:
    """Write this run's figures to `path`, followed by the History section it already had (if any), unchanged."""
    old = path.read_text() if path.exists() else ""
    heading = HISTORY.search(old)
    history = "\n" + old[heading.start() :] if heading else ""
    path.write_text(figures.rstrip("\n") + "\n" + history)


def chart(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dry, send, lat, mem = results["dry"], results["send"], results["latency"], results["memory"]
    figure, axes = plt.subplots(1, 4, figsize=(16, 4))
    panels = [
        (axes[0], "Dry run (rows/s)", ["movymporter"], [dry["rows_per_s"]], DRY_RUN_TARGET),
        (axes[1], "CPU per delivered row (us)", ["movymporter", "naive loop"],
         [send["movymporter_cpu_us"], send["naive_cpu_us"]], CPU_TARGET_US),
        (axes[2], f"{LATENCY_MS} ms latency, 20 % 503 (rows/s)", ["movymporter", "ideal"],
         [lat["rows_per_s"], lat["ideal"]], 0.9 * lat["ideal"]),
        (axes[3], "Peak RSS (MB)", ["dry 10k", "dry 2M", "send 10k", "send 2M"],
         [mem["dry_10k"], mem["dry_2m"], mem["send_10k"], mem["send_2m"]], RSS_TARGET_MB),
    ]  # fmt: skip
    for axis, title, labels, values, target in panels:
        axis.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(values)])
        axis.axhline(target, color="black", linestyle="--", linewidth=1, label="target")
        axis.set_title(title)
        axis.legend(loc="lower right", fontsize="small")
        for index, value in enumerate(values):
            axis.text(index, value, f"{value:,.0f}", ha="center", va="bottom", fontsize="small")
    figure.suptitle(f"movymporter benchmarks, {dt.date.today().isoformat()}")
    figure.tight_layout()
    figure.savefig(CHART, dpi=90)


def main() -> int:
    started = time.perf_counter()
    dirty_1m = data_file("dirty-1m", 1_000_000, seed=11)
    dirty_2m = data_file("dirty-2m", 2_000_000, seed=12)
    dirty_10k = data_file("dirty-10k", 10_000, seed=13)
    clean_10k = data_file("clean-10k", 10_000, seed=14, clean=True)
    clean_50k = data_file("clean-50k", 50_000, seed=15, clean=True)
    results: dict[str, Any] = {"send_seconds": 60.0}
    log("sink throughput (wrk)")
    results["sink"] = sink.measure(runs=RUNS)
    results["dry"] = dry_run(dirty_1m)
    results["send"] = sending(clean_10k)
    results["latency"] = latency_bound(clean_10k)
    results["engines"] = engines(clean_50k) | {"rows": 50_000}
    results["memory"] = memory(dirty_10k, dirty_2m, results["send_seconds"])
    log("memory: one huge line")
    results["lines"] = lines.measure_lines(200, DATA)
    log("journal of deliveries")
    results["journal"] = journal.measure(DATA)
    figures = report(results, time.perf_counter() - started)
    write_results(figures)
    chart(results)
    log(f"wrote {RESULTS} and {CHART} in {(time.perf_counter() - started) / 60:.1f} min")
    print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
