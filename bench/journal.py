"""What journaling a delivery costs (movymporter/journal.py): one append per delivered row.

Measured in this process, on a journal in the bench's own data folder (the disk
the resume state would use): CPU per entry at SYNC=normal, wall time per entry
at SYNC=full, where each entry waits for the disk.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from movymporter.journal import Journals

NORMAL_ENTRIES = 200_000
FULL_ENTRIES = 2_000


def cost_per_entry(folder: Path, entries: int, *, sync: bool) -> tuple[float, float]:
    """(CPU us, wall us) per journaled delivery."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        writer = Journals(Path(scratch) / "journal").writer(sync=sync)
        cpu, wall = time.process_time(), time.perf_counter()
        for line in range(2, entries + 2):
            writer.delivered(line)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        writer.close()
    return cpu / entries * 1e6, wall / entries * 1e6


def measure(folder: Path) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    normal_cpu, normal_wall = cost_per_entry(folder, NORMAL_ENTRIES, sync=False)
    full_cpu, full_wall = cost_per_entry(folder, FULL_ENTRIES, sync=True)
    return {
        "normal_cpu_us": normal_cpu,
        "normal_wall_us": normal_wall,
        "full_cpu_us": full_cpu,
        "full_wall_us": full_wall,
    }


if __name__ == "__main__":
    print(measure(Path(__file__).resolve().parent / "out"))
