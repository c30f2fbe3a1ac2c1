"""Exact duplicate detection for files of any length, at 8 bytes of memory per table slot.

Each record is known by a 128-bit fingerprint of its key (see `schema.record_key`).
The fingerprint of each valid row, and its line, go to two append-only temporary
files (24 bytes a row); memory holds only an open-addressing table of 32-bit tags
taken from the fingerprint, next to the ordinal of the record in those files. A
lookup compares tags in memory and reads the files only when a tag matches, which
is almost always a real duplicate, so the answer is exact (up to two records
sharing all 128 bits, see below) while a million distinct rows cost about 16 MB (a
Python dict of the same would cost over 100 MB; SQLite would cost 2-3 us per row
in B-tree inserts).

The fingerprint is two 64-bit values of the interpreter's own string hash,
SipHash keyed with a secret drawn when the process starts: of the key, and of the
key with a salt drawn for each run. That costs about 0.3 us a row, against 0.5 for
blake2b, which a dry run feels; and, being keyed, it cannot be steered by what a
file holds. (XXH3-128 with a seed was tried: half the cost, but a review found
pairs of valid records, 96-byte keys written for the purpose, whose fingerprints
collide for one seed in 2^27, so a file could make the table drop a distinct film
now and then.) Even with PYTHONHASHSEED set, which makes the first half known, the
salt keeps the second half out of a file's reach. It is used for nothing that
outlives the run.
"""

from __future__ import annotations

import os
import secrets
import struct
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import IO

from movymporter.errors import InputError

_HALVES = struct.Struct("=qq")
FINGERPRINT_BYTES = _HALVES.size
_LINE_BYTES = array("Q").itemsize
_INITIAL_SLOTS = 1 << 16
_WRITE_ENTRIES = 1 << 12
"""New entries wait in memory up to this many, then go to the files in one write each."""
_MAX_ENTRIES = (1 << 32) - 1
"""A table word has 32 bits for the ordinal."""

Fingerprints = Callable[[Iterable[str]], Iterable[bytes]]
"""Keys -> one 16-byte fingerprint each, in order."""


def salted_fingerprints(salt: str) -> Fingerprints:
    """hash(key) and hash(key + salt) of each key, as 16 bytes: no Python call per key."""

    def fingerprints(keys: Iterable[str]) -> list[bytes]:
        keys = list(keys)
        return list(map(_HALVES.pack, map(hash, keys), map(hash, map(str.__add__, keys, repeat(salt)))))

    return fingerprints


class SeenRecords:
    """Remembers every distinct record of a run and the line it first appeared on."""

    def __init__(
        self, directory: Path | None = None, expected: int = 0, fingerprints: Fingerprints | None = None
    ) -> None:
        """`expected` (an estimate of the rows) sizes the table once, so a big file never pays for doubling.
        `fingerprints` is for tests that need records to collide; by default each instance draws its own salt."""
        self._fingerprints = fingerprints or salted_fingerprints("\x1f" + secrets.token_hex(8))
        self._files: list[IO[bytes]] = []
        try:
            for kind in ("fingerprints", "lines"):
                self._files.append(tempfile.TemporaryFile(prefix=f"movymporter-seen-{kind}-", dir=directory))  # noqa: SIM115
        except BaseException:
            self.close()
            raise
        slots = _INITIAL_SLOTS
        while slots * 2 < expected * 3:
            slots *= 2
        # One 64-bit word per slot: the fingerprint's tag above the entry's ordinal + 1 (0 = empty).
        self._table = array("Q", [0]) * slots
        self._mask = slots - 1
        self._limit = slots * 2 // 3
        self._count = 0
        """Distinct records in the table."""
        self._entries = 0
        """Entries stored (repeats included: a batch is stored whole); those from `_written` on wait in memory."""
        self._written = 0
        self._pending = bytearray()
        self._pending_lines = array("Q")

    def __len__(self) -> int:
        return self._count

    def first_seen(self, key: str, line: int) -> int | None:
        """The line this record first appeared on, or None (and remember it) when it is new."""
        repeated = self.repeats((key,), (line,))
        return repeated[0][1] if repeated else None

    def repeats(self, keys: Iterable[str], lines: Sequence[int]) -> list[tuple[int, int]]:
        """Remember the records of a batch (a repeat within it finds the first) and return, for each one seen
        before, its index in the batch and the line it first appeared on.

        This runs once per batch of a dry run, so what can be done for the whole batch in C is: the
        fingerprints, their storage, and the tags (one strided view of the joined fingerprints). What is left
        in Python is the walk along the table, which makes no call of ours unless a tag matches."""
        joined = b"".join(self._fingerprints(keys))
        size = len(lines)
        if len(joined) != size * FINGERPRINT_BYTES:
            raise ValueError("one key for each line expected")
        if self._count + size > self._limit:
            self._grow(self._count + size)
        base = self._entries
        if base + size > _MAX_ENTRIES:
            raise InputError(f"more than {_MAX_ENTRIES:,} rows to tell apart: split the file")
        self._pending += joined
        self._pending_lines.extend(lines)
        self._entries += size
        tags = memoryview(joined).cast("I")[:: FINGERPRINT_BYTES // 4]
        table, mask, fingerprint_at, line_at = self._table, self._mask, self._fingerprint_at, self._line_at
        found: list[tuple[int, int]] = []
        for ordinal, tag in enumerate(tags, start=base + 1):
            slot = tag & mask
            while word := table[slot]:
                if word >> 32 == tag:
                    stored = (word & 0xFFFFFFFF) - 1
                    if fingerprint_at(stored) == fingerprint_at(ordinal - 1):
                        found.append((ordinal - 1 - base, line_at(stored)))
                        break
                slot = (slot + 1) & mask
            else:
                table[slot] = tag << 32 | ordinal
        self._count += size - len(found)
        if len(self._pending_lines) >= _WRITE_ENTRIES:
            self._write()
        return found

    def _fingerprint_at(self, ordinal: int) -> bytes:
        if ordinal >= self._written:
            start = (ordinal - self._written) * FINGERPRINT_BYTES
            return bytes(self._pending[start : start + FINGERPRINT_BYTES])
        return os.pread(self._files[0].fileno(), FINGERPRINT_BYTES, ordinal * FINGERPRINT_BYTES)

    def _line_at(self, ordinal: int) -> int:
        if ordinal >= self._written:
            return self._pending_lines[ordinal - self._written]
        return int.from_bytes(os.pread(self._files[1].fileno(), _LINE_BYTES, ordinal * _LINE_BYTES), sys.byteorder)

    def _write(self) -> None:
        """Move the pending entries to the end of the files, flushed: the reads above go below their buffers."""
        fingerprints, lines = self._files
        fingerprints.write(self._pending)
        fingerprints.flush()
        lines.write(self._pending_lines.tobytes())
        lines.flush()
        self._written = self._entries
        self._pending.clear()
        del self._pending_lines[:]

    def _grow(self, needed: int) -> None:
        """Double the table until `needed` records fit under the load limit."""
        slots = len(self._table) * 2
        while slots * 2 // 3 < needed:
            slots *= 2
        table = array("Q", [0]) * slots
        mask = len(table) - 1
        for word in self._table:
            if word:
                slot = (word >> 32) & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = word
        self._table, self._mask, self._limit = table, mask, len(table) * 2 // 3

    def close(self) -> None:
        for file in self._files:
            file.close()

    def __enter__(self) -> SeenRecords:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
