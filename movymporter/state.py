"""What earlier runs settled, on disk, so a re-run sends only what was not delivered.

Kept small for files of any length. Records are read in file order and at most
CONCURRENCY of them are in flight, so the state of an input is:

- a watermark: every record that starts before this line is settled;
- the lines at or after it that were delivered out of order (at most a window);
- exceptions: the rare rows the sink refused (final, reported again from here)
  or whose delivery failed (sent again by the next run).

A valid row below the watermark that is not an exception was delivered. Rows
that are invalid or duplicates are not stored: reading the file again finds
them again. The input is identified by a hash of its content and the URL it
goes to, so an edited file, or another sink, starts afresh.

Writes are batched into one SQLite transaction at most every 0.2 s (WAL mode):
a crash loses at most that batch, whose rows the next run sends again under
the same idempotency keys.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from movymporter.errors import ConfigError

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


def input_key(path: Path, url: str) -> str:
    """Identity of an import: the file's content and where it goes."""
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    digest.update(b"\0" + url.encode())
    return digest.hexdigest()


class ResumeState:
    """The settled lines of one input, loaded at start and written as the run goes."""

    def __init__(
        self,
        db_path: Path,
        key: str,
        *,
        path: Path,
        url: str,
        fresh: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = key
        self._path = str(path)
        self._url = url
        self._clock = clock
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            # Used from the delivery threads too, always under their one lock.
            self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"STATE_DIR {db_path.parent}: cannot keep the resume state there ({error}). "
                "Accepted: a directory you can write to."
            ) from None
        if fresh:
            self._forget()
        row = self._db.execute("SELECT watermark, delivered_above FROM inputs WHERE input_key = ?", (key,)).fetchone()
        self.watermark: int = row[0] if row else 0
        self.delivered_above: frozenset[int] = frozenset(json.loads(row[1])) if row else frozenset()
        self.exceptions: dict[int, tuple[str, str]] = {
            line: (kind, reason)
            for line, kind, reason in self._db.execute(
                "SELECT line, kind, reason FROM exceptions WHERE input_key = ?", (key,)
            )
        }
        self.resuming = row is not None
        self._pending_exceptions: dict[int, tuple[str, str] | None] = {}
        self._next_flush = clock() + _FLUSH_EVERY_S

    def settled_before(self, line: int) -> str | None:
        """How an earlier run settled the valid row on this line: delivered, sink_rejected, failed, or None."""
        if line >= self.watermark and line not in self.delivered_above:
            return None
        kind, _ = self.exceptions.get(line, ("delivered", ""))
        return kind

    def reason(self, line: int) -> str:
        return self.exceptions[line][1]

    def note(self, line: int, kind: str | None, reason: str = "") -> None:
        """Record how a row ended (sink_rejected, failed), or None when it was delivered after all."""
        if kind is None and line not in self.exceptions and line not in self._pending_exceptions:
            return
        self._pending_exceptions[line] = (kind, reason) if kind else None

    def due(self) -> bool:
        """Whether `save` would write now (so callers can skip preparing its arguments)."""
        return self._clock() >= self._next_flush

    def save(self, watermark: int, delivered_above: set[int], *, force: bool = False) -> None:
        """Write the progress, at most every 0.2 s unless forced."""
        now = self._clock()
        if not force and now < self._next_flush:
            return
        self._next_flush = now + _FLUSH_EVERY_S
        above = sorted(line for line in delivered_above if line >= watermark)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO inputs (input_key, path, url, watermark, delivered_above, updated_at) "
                "VALUES (?, ?, ?, ?, ?, datetime('now')) ON CONFLICT (input_key) DO UPDATE SET "
                "path = excluded.path, watermark = excluded.watermark, "
                "delivered_above = excluded.delivered_above, updated_at = excluded.updated_at",
                (self._key, self._path, self._url, watermark, json.dumps(above)),
            )
            for line, entry in self._pending_exceptions.items():
                if entry is None:
                    self._db.execute("DELETE FROM exceptions WHERE input_key = ? AND line = ?", (self._key, line))
                else:
                    self._db.execute("INSERT OR REPLACE INTO exceptions VALUES (?, ?, ?, ?)", (self._key, line, *entry))
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
