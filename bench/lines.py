"""Peak memory of a dry run whatever one line holds (SPEC section 6: under 100 MB for any single line).

Files of a header, a huge part, then a few good films:

- `one-line`: one huge cell, unquoted on one line. The reader stops reading the line past LINE_LIMIT
  characters, keeps its first KEPT and reports it as one source-error row;
- `many-lines`: one huge cell, quoted, over lines of 1 KiB. csv stops the field at its size limit; the line
  that opened the quote is set aside and the lines after it are read again (each is a row of one field);
- `long-rows`: rows of 1,000 fields of 1,000 characters, each just under LINE_LIMIT: read whole, one at a time
  (a batch holds at most one line longer than a chunk), each an extra-cell row.

Each file is dry-run by `python -m movymporter` in a child process (bench/measure.py); the result
(`measure_lines`) is its peak RSS and whether the good films after the huge part were counted valid, and nothing
else was. Exit status 1 if they were not.

    python bench/lines.py [--mb 200] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import run_importer

GOOD_FILMS = 5
HEADER = b"title,year\n"
_BLOCK = 1 << 20


def _good_films(out: IO[bytes]) -> None:
    out.write(b"".join(b"Good film %d,%d\n" % (n, 2000 + n) for n in range(GOOD_FILMS)))


def write_one_line(path: Path, size: int) -> None:
    """A header, one line holding a `size`-byte cell, then the good films."""
    with path.open("wb") as out:
        out.write(HEADER)
        for _ in range(size // _BLOCK):
            out.write(b"x" * _BLOCK)
        out.write(b",2000\n")
        _good_films(out)


def write_many_lines(path: Path, size: int) -> None:
    """A header, a quoted `size`-byte cell over lines of 1 KiB, then the good films. The line that closes the
    quote is invalid too (year 1800), so that exactly the good films are valid."""
    line = b"x" * 1023 + b"\n"
    with path.open("wb") as out:
        out.write(HEADER + b'"')
        for _ in range(size // _BLOCK):
            out.write(line * (_BLOCK // len(line)))
        out.write(b'",1800\n')
        _good_films(out)


def write_long_rows(path: Path, size: int) -> None:
    """A header, rows of 1,000 fields of 1,000 characters up to `size` bytes, then the good films."""
    row = b",".join([b"x" * 1000] * 1000) + b"\n"
    with path.open("wb") as out:
        out.write(HEADER)
        for _ in range(size // len(row)):
            out.write(row)
        _good_films(out)


CASES: dict[str, Callable[[Path, int], None]] = {
    "one-line": write_one_line,
    "many-lines": write_many_lines,
    "long-rows": write_long_rows,
}


def measure_lines(mb: int = 200, tmp: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each case with a huge part of `mb` MiB, written in a temporary folder (under `tmp`) and dry-run: its peak
    RSS (MB), the rows read and how they were counted, and whether the good films after the huge part (and only
    they) were counted valid."""
    results = {}
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        for name, write in CASES.items():
            path = Path(folder) / f"{name}.csv"
            write(path, mb * _BLOCK)
            run, summary = run_importer(path)
            path.unlink()
            results[name] = {
                "peak_rss_mb": round(run.peak_rss_mb, 1),
                "rows": summary["rows"],
                "valid": summary["valid"],
                "invalid": summary["invalid"],
                "good_rows_valid": summary["valid"] == GOOD_FILMS,
                "exit_status": run.exit_status,
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the huge part in MiB (default 200)")
    parser.add_argument("--tmp", type=Path, help="where to write the files (default: the system's temporary folder)")
    options = parser.parse_args()
    results = measure_lines(options.mb, options.tmp)
    print(json.dumps(results, indent=2))
    return 0 if all(case["good_rows_valid"] for case in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
