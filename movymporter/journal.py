"""Append-only journals of deliveries: what a killed importer had delivered, for the run after it.

The resume state (state.py) is one SQLite row saved at most every 0.2 s by the
main process. An importer killed between two saves, or a sending process whose
outcomes were still on their way to the main process, would leave rows the
sink stored but the state does not know, and the original service (which does
not honour Idempotency-Key) would store them twice when the next run sends them
again. So the process that gets a 2xx writes the row's line to its own journal
at once, in one write() call, before it tells anyone else.

Why no fsync: a written page lives in the OS page cache, which outlives the
process (SIGKILL, the OOM killer, a crash of the interpreter). Only an OS crash
or a power loss can drop the last pages not yet written back; SYNC=full syncs
each entry to the disk for those, at the price of a disk flush per row.

Each journal is one file per writing process, locked (flock) for as long as its
writer lives. The next run reads them all and folds them into the state
(`ResumeState.absorb`); a file whose lock it can take has no writer left and is
deleted once the state holds its lines, a file still locked (a sending process
of a killed run finishing its last requests) is read and kept for later.
An entry is a line number in decimal and a newline; anything else (the torn end
of a file after a power loss) is not an entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from movymporter.errors import ConfigError

SUFFIX = ".journal"
_READ_BYTES = 1 << 16


class JournalWriter:
    """The journal of one process: a delivered line is on its way to the disk when `delivered` returns."""

    def __init__(self, directory: Path, *, sync: bool = False) -> None:
        name = f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        self.path = directory / name
        self._sync = sync
        # Locked before it has its name: a run folding journals in must never find it unlocked (it would take it
        # for the journal of a process that is gone, and delete it while this one writes on).
        unnamed = directory / f".{name}.new"
        try:
            self._fd = os.open(unnamed, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.rename(unnamed, self.path)
            if sync:  # the journal's name must outlive a power loss as much as its entries
                _sync_folder(directory)
        except OSError as error:
            raise _unwritable(directory, error) from None

    def delivered(self, line: int) -> None:
        """Safe from many threads at once: each entry is one append."""
        try:
            os.write(self._fd, b"%d\n" % line)
            if self._sync:
                os.fsync(self._fd)
        except OSError as error:  # a full disk: stop, rather than deliver rows a re-run would send again
            raise _unwritable(self.path.parent, error) from None

    def close(self) -> None:
        """Release the file (and its lock): from now on the next run may fold it into the state."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Journals:
    """The journals of one input (one folder per input key)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _unwritable(directory, error) from None

    def writer(self, *, sync: bool = False) -> JournalWriter:
        return JournalWriter(self.directory, sync=sync)

    @contextlib.contextmanager
    def absorbing(self) -> Iterator[Iterator[int]]:
        """Every line the journals hold, to fold into the state. The files no writer holds any more stay
        locked by us and are deleted when the block ends without an error: only once the state has their
        lines."""
        finished: list[tuple[Path, BinaryIO]] = []
        try:
            yield self._lines(finished)
            for path, _ in finished:
                path.unlink(missing_ok=True)
        finally:
            for _, stream in finished:
                stream.close()

    def written_by_the_gone(self) -> Iterator[int]:
        """The lines of the journals no writer holds any more (a sending process that died), read and kept."""
        finished: list[tuple[Path, BinaryIO]] = []
        try:
            yield from self._lines(finished, only_finished=True)
        finally:
            for _, stream in finished:
                stream.close()

    def tidy(self) -> None:
        """Remove the input's folder once it holds no journal (after a complete run)."""
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def _lines(self, finished: list[tuple[Path, BinaryIO]], *, only_finished: bool = False) -> Iterator[int]:
        for path, stream, locked in self._opened():
            if not locked:
                with stream:  # its writer is alive (a sending process of a killed run): read it, keep it
                    if not only_finished:
                        yield from entries(stream.read)
                continue
            finished.append((path, stream))
            yield from entries(stream.read)

    def forget(self) -> None:
        """--fresh: what earlier runs delivered no longer counts. A journal still being written (this run's own
        workers, or those a killed run left) is left alone: its writer goes on with it."""
        for path, stream, locked in self._opened():
            with stream:
                if locked:
                    path.unlink()

    def _opened(self) -> Iterator[tuple[Path, BinaryIO, bool]]:
        """Each journal, open, and whether we took its lock (we did unless its writer still holds it)."""
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                stream = path.open("rb")
            except FileNotFoundError:
                continue  # absorbed by another run meanwhile
            except OSError as error:
                raise _unreadable(path, error) from None
            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield path, stream, False
                continue
            except OSError as error:  # a file system without locks
                stream.close()
                raise _unreadable(path, error) from None
            yield path, stream, True


def _sync_folder(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def entries(read: Callable[[int], bytes]) -> Iterator[int]:
    """The line numbers of a journal, read in chunks; a torn last entry (no newline) is not one."""
    rest = b""
    while chunk := read(_READ_BYTES):
        *complete, rest = (rest + chunk).split(b"\n")
        for entry in complete:
            if entry.isdigit():
                yield int(entry)


def _unwritable(directory: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"STATE_DIR: cannot keep the delivery journal in {directory} ({error.strerror or error}). "
        "Accepted: a directory you can write to."
    )


def _unreadable(path: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"STATE_DIR: cannot read the delivery journal {path} ({error.strerror or error}). "
        "Accepted: a directory of journals this user can read and lock."
    )
