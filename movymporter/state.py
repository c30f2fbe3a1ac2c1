"""What earlier runs settled, on disk, so a re-run sends only what was not delivered.

Kept small for files of any length. Records are read in file order and only a
bounded number are in flight, so the state of an input is:

- a watermark: every record that starts before this line is settled;
- the lines at or after it that were delivered out of order (a window, stored
  as ranges);
- exceptions: the rare rows the sink refused (final, reported again from here)
  or whose delivery failed (sent again by the next run, unless a journal says
  the sink took them after all).

A valid row below the watermark that is not an exception was delivered. Rows
that are invalid or duplicates are not stored: reading the file again finds
them again. The key of an input covers everything that decides which rows are
sent: the file's content, the URL, --keep-duplicates, the last valid year and
the importer's version; change one and the import starts afresh.

A re-run never lowers the watermark nor forgets a line delivered above it: it
reads the file from the top again and only rows the state says were not
delivered go out, so what earlier runs settled stays settled whatever happens
to this one. Writes are batched into one SQLite transaction at most every
0.2 s (WAL mode). What a crash of the importer loses of that batch, each
sending process has written to its journal as the answers came (journal.py);
the next run folds the journals in (`absorb`) before it sends anything.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from movymporter.errors import ConfigError

DELIVERED = "delivered"
SINK_REJECTED = "sink_rejected"
FAILED = "failed"
_FLUSH_EVERY_S = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    input_key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    url TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    delivered_above TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exceptions (
    input_key TEXT NOT NULL,
    line INTEGER NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (input_key, line)
) WITHOUT ROWID;
"""


def input_key(path: Path, url: str, *decisions: object, halt: threading.Event | None = None) -> str | None:
    """Identity of an import: the file's content, where it goes, and what decides which rows are sent.

    Reading a big file takes a while (about a second a GB); None when `halt` is set before the end."""
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            if halt is not None and halt.is_set():
                return None
            digest.update(chunk)
    digest.update(repr((url, *decisions)).encode())
    return digest.hexdigest()


def to_ranges(lines: Iterable[int]) -> list[list[int]]:
    """Sorted lines as [first, last] runs: a window of deliveries is mostly contiguous."""
    ranges: list[list[int]] = []
    for line in sorted(lines):
        if ranges and line == ranges[-1][1] + 1:
            ranges[-1][1] = line
        else:
            ranges.append([line, line])
    return ranges


def from_ranges(ranges: Iterable[list[int]]) -> set[int]:
    return {line for first, last in ranges for line in range(first, last + 1)}


class ResumeState:
    """What earlier runs of an input settled, and what this run settles as it goes."""

    def __init__(
        self,
        db_path: Path,
        key: str,
        *,
        path: Path,
        url: str,
        fresh: bool,
        durable: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`durable` (SYNC=full): every save is on the disk before it returns, not only handed to the OS."""
        self._key = key
        self._path = str(path)
        self._url = url
        self._clock = clock
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            # Used from the delivery threads too, always under their one lock.
            self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"STATE_DIR {db_path.parent}: cannot keep the resume state there ({error}). "
                "Accepted: a directory you can write to."
            ) from None
        if fresh:
            self._forget()
        row = self._db.execute("SELECT watermark, delivered_above FROM inputs WHERE input_key = ?", (key,)).fetchone()
        self.resuming = row is not None
        self.watermark: int = row[0] if row else 0
        """What earlier runs settled: every record starting before this line."""
        self.delivered_above: frozenset[int] = frozenset(from_ranges(json.loads(row[1]))) if row else frozenset()
        self.exceptions: dict[int, tuple[str, str]] = {
            line: (kind, reason)
            for line, kind, reason in self._db.execute(
                "SELECT line, kind, reason FROM exceptions WHERE input_key = ?", (key,)
            )
        }
        # This run's progress.
        self._frontier = 1
        self._in_flight: set[int] = set()
        self._first_cut_short: int | None = None
        self._delivered_now: set[int] = set()
        self._pending_exceptions: dict[int, tuple[str, str] | None] = {}
        self._next_flush = clock() + _FLUSH_EVERY_S
        self._saved_watermark = self.watermark
        """The watermark on disk: every row below it is settled there (lines journaled below it are known)."""

    def settled_before(self, line: int) -> str | None:
        """How an earlier run settled the valid row on this line: delivered, sink_rejected, failed, or None."""
        if line >= self.watermark and line not in self.delivered_above:
            return None
        kind, _ = self.exceptions.get(line, (DELIVERED, ""))
        return kind

    def reason(self, line: int) -> str:
        return self.exceptions[line][1]

    def read_past(self, line: int) -> None:
        """Every record starting before `line` has been read (and settled, or is in flight)."""
        self._frontier = line

    def sending(self, line: int) -> None:
        self._in_flight.add(line)

    def finished(self, line: int, kind: str | None, reason: str = "") -> None:
        """How the row on `line` ended: delivered, sink_rejected or failed; None when a stop cut it short."""
        self._in_flight.discard(line)
        if kind is None:
            first = self._first_cut_short
            self._first_cut_short = line if first is None else min(first, line)
            return
        if kind == DELIVERED:
            self._delivered_now.add(line)
            if line in self.exceptions or line in self._pending_exceptions:
                self._pending_exceptions[line] = None
        else:
            self._pending_exceptions[line] = (kind, reason)

    def absorb(self, lines: Iterable[int]) -> int:
        """Deliveries the journals hold that this state does not know yet (a killed run's last ones): now
        known, and saved. Returns how many there were."""
        found: set[int] = set()
        for line in lines:
            if line in self.exceptions:
                self._pending_exceptions[line] = None  # failed once, delivered after all
                found.add(line)
            elif line >= self._saved_watermark and line not in self.delivered_above and line not in self._delivered_now:
                found.add(line)
        if found:
            self.delivered_above = self.delivered_above | found
            self.resuming = True
            self.save(force=True)
        return len(found)

    def save(self, *, force: bool = False) -> None:
        """Write the progress, at most every 0.2 s unless forced."""
        now = self._clock()
        if not force and now < self._next_flush:
            return
        self._next_flush = now + _FLUSH_EVERY_S
        unsettled = [self._frontier, *self._in_flight]
        if self._first_cut_short is not None:
            unsettled.append(self._first_cut_short)
        watermark = self._saved_watermark = max(self.watermark, min(unsettled))
        self._delivered_now = {line for line in self._delivered_now if line >= watermark}
        above = {line for line in self.delivered_above if line >= watermark} | self._delivered_now
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO inputs (input_key, path, url, watermark, delivered_above, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, datetime('now')) ON CONFLICT (input_key) DO UPDATE SET "
                    "path = excluded.path, watermark = excluded.watermark, "
                    "delivered_above = excluded.delivered_above, updated_at = excluded.updated_at",
                    (self._key, self._path, self._url, watermark, json.dumps(to_ranges(above))),
                )
                for line, entry in self._pending_exceptions.items():
                    if entry is None:
                        self._db.execute("DELETE FROM exceptions WHERE input_key = ? AND line = ?", (self._key, line))
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO exceptions VALUES (?, ?, ?, ?)", (self._key, line, *entry)
                        )
        except sqlite3.Error as error:  # a full disk: what was delivered is still in the journals
            raise ConfigError(
                f"STATE_DIR: cannot save the resume state ({error}); the delivery journals still hold what was "
                "delivered. Accepted: a directory with room to write."
            ) from None
        for line, entry in self._pending_exceptions.items():
            if entry is None:
                self.exceptions.pop(line, None)
            else:
                self.exceptions[line] = entry
        self._pending_exceptions.clear()

    def _forget(self) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM inputs WHERE input_key = ?", (self._key,))
            self._db.execute("DELETE FROM exceptions WHERE input_key = ?", (self._key,))

    def close(self) -> None:
        self._db.close()
