"""Accepted films in SQLite, the Idempotency-Key unique unless the sink stores every request.

One autocommit INSERT per accepted film: in WAL mode with synchronous=NORMAL
the commit is an append to the log without fsync, so an answered 201 survives
the sink being killed (what the fault tests need) at a cost of tens of
microseconds, well inside the sink's throughput budget.

The original service does not honour Idempotency-Key; a store made with
`unique_keys=False` (SINK_IDEMPOTENCY=off) keeps every request like it, so tests
count what a client sent twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from movymporter.sink.contract import FIELDS, Film

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS movies (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    {", ".join(FIELDS)}
);
CREATE INDEX IF NOT EXISTS movies_by_key ON movies (idempotency_key);
"""
_INSERT = f"INSERT INTO movies (idempotency_key, {', '.join(FIELDS)}) VALUES (?, {', '.join('?' * len(FIELDS))})"
_INSERT_NEW_KEY = (
    f"INSERT INTO movies (idempotency_key, {', '.join(FIELDS)}) SELECT ?, {', '.join('?' * len(FIELDS))} "
    "WHERE NOT EXISTS (SELECT 1 FROM movies WHERE idempotency_key = ?1)"
)


class StoreError(Exception):
    """The store file cannot serve these settings."""


class MovieStore:
    """The sink's table of accepted films."""

    def __init__(self, path: str, *, unique_keys: bool = True) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._insert = _INSERT_NEW_KEY if unique_keys else _INSERT
        if not unique_keys and any(
            index[2] and index[3] == "u" for index in self._db.execute("PRAGMA index_list(movies)")
        ):
            self._db.close()
            raise StoreError(
                f"{path} was made by an older sink, whose idempotency keys are unique; it cannot store every "
                "request: remove it (bin/clean) or choose another SINK_DB"
            )

    def add(self, film: Film, key: str | None) -> bool:
        """Store a film; False when keys are unique and this one was already stored (a film without a key is
        always stored)."""
        cursor = self._db.execute(self._insert, (key, *(film[name] for name in FIELDS)))
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
