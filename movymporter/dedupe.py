"""Exact duplicate detection for files of any length, at 8 bytes of memory per table slot.

Each distinct record is known by a 128-bit digest of its JSON. The digests (and
the line that first had them) go to an append-only temporary file; memory holds
only an open-addressing table of 32-bit tags taken from the digest, next to the
ordinal of the record in that file. A lookup compares tags in memory and reads
the file only when a tag matches, which is almost always a real duplicate, so
the answer is exact while a million distinct rows cost about 16 MB (a Python
dict of the same would cost over 100 MB; SQLite would cost 2-3 us per row in
B-tree inserts).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from operator import methodcaller
from pathlib import Path
from typing import IO

_DIGEST_BYTES = 16
_ENTRY = struct.Struct(f"<{_DIGEST_BYTES}sQ")  # digest, first line
_TAG = struct.Struct("=I")
"""A digest's tag: its first 4 bytes as an unsigned int in this machine's byte order, as `first_seen_all`
reads them too (the table lives in memory only)."""
_INITIAL_SLOTS = 1 << 16
_WRITE_BYTES = 1 << 16
"""New entries wait in memory up to this size, then go to the file in one write."""


_HASHER = partial(hashlib.blake2b, digest_size=_DIGEST_BYTES)
_DIGEST = methodcaller("digest")


def digest(body: bytes) -> bytes:
    """The identity of a record: equal JSON bodies, equal digests."""
    return _HASHER(body).digest()


def digests(bodies: Iterable[bytes]) -> Iterator[bytes]:
    """`digest` of each body, computed without a Python call per body."""
    return map(_DIGEST, map(_HASHER, bodies))


class SeenRecords:
    """Remembers every distinct record of a run and the line it first appeared on."""

    def __init__(self, directory: Path | None = None, expected: int = 0) -> None:
        """`expected` (an estimate of the rows) sizes the table once, so a big file never pays for doubling."""
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="movymporter-seen-", dir=directory)  # noqa: SIM115
        slots = _INITIAL_SLOTS
        while slots * 2 < expected * 3:
            slots *= 2
        # One 64-bit word per slot: the digest's tag above the record's ordinal + 1 (0 = empty).
        self._table = array("Q", [0]) * slots
        self._mask = slots - 1
        self._limit = slots * 2 // 3
        self._count = 0
        self._written = 0
        """Entries in the file; those after it wait in `_pending`."""
        self._pending = bytearray()

    def __len__(self) -> int:
        return self._count

    def first_seen(self, record_digest: bytes, line: int) -> int | None:
        """The line this record first appeared on, or None (and remember it) when it is new."""
        (tag,) = _TAG.unpack_from(record_digest)
        table, mask = self._table, self._mask
        slot = tag & mask
        while word := table[slot]:
            if word >> 32 == tag:
                stored, first_line = self._entry((word & 0xFFFFFFFF) - 1)
                if stored == record_digest:
                    return first_line
            slot = (slot + 1) & mask
        pending = self._pending
        pending += _ENTRY.pack(record_digest, line)
        if len(pending) >= _WRITE_BYTES:
            self._write()
        self._count = count = self._count + 1
        table[slot] = tag << 32 | count
        if count > self._limit:
            self._grow(count)
        return None

    def first_seen_all(self, record_digests: Iterable[bytes], lines: Sequence[int]) -> list[int | None]:
        """`first_seen` of each record in turn (a repeat within them finds the first): one call for a batch.

        The same lookup as `first_seen`, written out again because it runs once per row of a dry run:
        what can be done for the whole batch in C is done before the loop (the tags are read as one
        strided view of the joined digests, the table grows ahead), and the loop makes no call of ours."""
        known = list(record_digests)
        joined = b"".join(known)
        if len(lines) != len(known) or len(joined) != len(known) * _DIGEST_BYTES:
            raise ValueError(f"one digest of {_DIGEST_BYTES} bytes for each line expected")
        if self._count + len(known) > self._limit:
            self._grow(self._count + len(known))
        tags = memoryview(joined).cast("I")[:: _DIGEST_BYTES // 4]
        found: list[int | None] = []
        answer, pack, pending = found.append, _ENTRY.pack, self._pending
        table, mask, count = self._table, self._mask, self._count
        for tag, record_digest, line in zip(tags, known, lines, strict=True):
            slot = tag & mask
            while word := table[slot]:
                if word >> 32 == tag:
                    stored, first_line = self._entry((word & 0xFFFFFFFF) - 1)
                    if stored == record_digest:
                        answer(first_line)
                        break
                slot = (slot + 1) & mask
            else:
                pending += pack(record_digest, line)
                count += 1
                table[slot] = tag << 32 | count
                answer(None)
        self._count = count
        if len(pending) >= _WRITE_BYTES:
            self._write()
        return found

    def _entry(self, ordinal: int) -> tuple[bytes, int]:
        if ordinal >= self._written:
            return _ENTRY.unpack_from(self._pending, (ordinal - self._written) * _ENTRY.size)
        return _ENTRY.unpack(os.pread(self._file.fileno(), _ENTRY.size, ordinal * _ENTRY.size))

    def _write(self) -> None:
        """Move the pending entries to the end of the file, flushed: `_entry` reads the file below its buffer."""
        pending = self._pending
        self._file.write(pending)
        self._file.flush()
        self._written += len(pending) // _ENTRY.size
        pending.clear()

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
        self._file.close()

    def __enter__(self) -> SeenRecords:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
