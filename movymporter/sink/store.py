"""Accepted films in SQLite, with the Idempotency-Key unique.

One autocommit INSERT per accepted film: in WAL mode with synchronous=NORMAL
the commit is an append to the log without fsync, so an answered 201 survives
the sink being killed (what the fault tests need) at a cost of tens of
microseconds, well inside the sink's throughput budget.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from movymporter.sink.contract import FIELDS, Film

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS movies (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    {", ".join(FIELDS)}
)
"""
_INSERT = (
    f"INSERT INTO movies (idempotency_key, {', '.join(FIELDS)}) "
    f"VALUES (?, {', '.join('?' * len(FIELDS))}) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)


class MovieStore:
    """The sink's table of accepted films."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def add(self, film: Film, key: str | None) -> bool:
        """Store a film; False when its idempotency key was already stored."""
        cursor = self._db.execute(_INSERT, (key, *(film[name] for name in FIELDS)))
        return cursor.rowcount == 1

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM movies").fetchone()[0]

    def page(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored films in arrival order, keyset-paginated by id."""
        cursor = self._db.execute(
            f"SELECT id, idempotency_key, received_at, {', '.join(FIELDS)} "
            "FROM movies WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        self._db.close()
