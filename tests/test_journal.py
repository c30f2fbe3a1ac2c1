"""The delivery journals: one append-only file per sending process, folded into the resume state by the next run."""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import responses

from movymporter import journal, pipeline
from movymporter.delivery.outcome import Delivery, Verdict
from movymporter.delivery.sender import Sender
from movymporter.errors import ConfigError
from movymporter.journal import SUFFIX, Journals, JournalWriter, entries
from movymporter.sending import JOURNALS
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import AfterDelivered, RunningSink, assert_accounted, journal_entries, read_csv, write_films

URL = "http://sink.test/movies"


def absorbed(journals: Journals) -> list[int]:
    with journals.absorbing() as lines:
        return sorted(lines)


def journal_files(journals: Journals) -> list[Path]:
    return sorted(journals.directory.glob(f"*{SUFFIX}"))


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        pytest.param(b"", [], id="empty-file-holds-nothing"),
        pytest.param(b"2\n3\n10\n", [2, 3, 10], id="one-line-number-an-entry"),
        pytest.param(b"2\n3\n1", [2, 3], id="torn-last-entry-without-newline-is-not-one"),
        pytest.param(b"2\n\x00\x00\x00\n4\n", [2, 4], id="zeroed-page-after-a-power-loss-is-skipped"),
        pytest.param(b"2\n-3\n x\n", [2], id="anything-but-digits-is-not-an-entry"),
    ],
)
def test_entries(data: bytes, lines: list[int]) -> None:
    """Only whole entries count: what a power loss may leave at the end of a file is never read as a line."""
    assert list(entries(io.BytesIO(data).read)) == lines


def test_entries_across_reads() -> None:
    """An entry cut between two reads of the file is one entry."""
    chunks = iter([b"12", b"3\n4", b"5\n", b""])

    assert list(entries(lambda size: next(chunks))) == [123, 45]


def test_a_writer_appends_each_delivery_and_the_next_run_absorbs_and_removes_it(tmp_path: Path) -> None:
    """Written, closed, absorbed: the lines come back once, and the file is gone once the block ended."""
    journals = Journals(tmp_path / "journal" / "key")
    writer = journals.writer()
    for line in (5, 2, 9):
        writer.delivered(line)
    writer.close()

    assert absorbed(journals) == [2, 5, 9]
    assert journal_files(journals) == []
    assert absorbed(journals) == []


def test_a_journal_still_being_written_is_read_and_kept(tmp_path: Path) -> None:
    """A writer alive (a sending process of a killed run finishing its requests) keeps its file: read, not deleted."""
    journals = Journals(tmp_path / "journal")
    writer = journals.writer()
    writer.delivered(7)

    assert absorbed(journals) == [7]
    assert journal_files(journals) == [writer.path]

    writer.delivered(8)
    writer.close()
    assert absorbed(journals) == [7, 8]
    assert journal_files(journals) == []


def test_a_journal_has_its_name_only_once_it_is_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folding journals in must never see a new one unlocked, or it would delete it as a dead writer's."""
    journals = Journals(tmp_path / "journal")
    named_when_locked: list[list[Path]] = []
    flock = journal.fcntl.flock

    def recording_flock(fd: int, operation: int) -> None:
        named_when_locked.append(journal_files(journals))
        flock(fd, operation)

    monkeypatch.setattr(journal.fcntl, "flock", recording_flock)
    writer = journals.writer()

    assert named_when_locked == [[]]
    assert journal_files(journals) == [writer.path]
    writer.close()


def _write_and_die(directory: Path, lines: list[int]) -> None:
    writer = Journals(directory).writer()
    for line in lines:
        writer.delivered(line)
    os._exit(0)  # no close, no flush: as a process the OS ends


def test_the_lock_of_a_dead_writer_is_gone_with_it(tmp_path: Path) -> None:
    """A process that ends without closing its journal leaves every entry written, and a file the next run removes."""
    journals = Journals(tmp_path / "journal")
    process = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(journals.directory, [3, 4]))
    process.start()
    process.join()

    assert absorbed(journals) == [3, 4]
    assert journal_files(journals) == []


def test_an_error_in_the_block_keeps_the_files(tmp_path: Path) -> None:
    """Lines that did not reach the state (the block failed) are not thrown away with their file."""
    journals = Journals(tmp_path / "journal")
    writer = journals.writer()
    writer.delivered(1)
    writer.close()

    def fail_to_save() -> None:
        with journals.absorbing() as lines:
            list(lines)
            raise RuntimeError("saving the state failed")

    with pytest.raises(RuntimeError):
        fail_to_save()

    assert absorbed(journals) == [1]


def test_forget_drops_the_journals_of_earlier_runs_only(tmp_path: Path) -> None:
    """--fresh: what earlier runs journaled does not count any more; a journal still being written (this run's own
    workers started first) is its writer's."""
    journals = Journals(tmp_path / "journal")
    earlier = journals.writer()
    earlier.delivered(1)
    earlier.close()
    alive = journals.writer()
    alive.delivered(2)

    journals.forget()

    assert journal_files(journals) == [alive.path]
    alive.close()
    assert absorbed(journals) == [2]


def test_a_folder_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    """STATE_DIR under a file: a clear message naming the setting, no traceback."""
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError, match="STATE_DIR"):
        Journals(tmp_path / "file" / "journal")


@pytest.mark.parametrize(
    ("statuses", "verdict", "journaled"),
    [
        pytest.param([201], Verdict.DELIVERED, [7], id="delivered-is-journaled"),
        pytest.param([503, 503, 201], Verdict.DELIVERED, [7], id="delivered-after-retries-is-journaled-once"),
        pytest.param([400], Verdict.REJECTED, [], id="refused-by-the-sink-is-not"),
        pytest.param([503] * 3, Verdict.FAILED, [], id="failed-is-not"),
    ],
)
def test_a_delivery_is_journaled_while_its_request_slot_is_held(
    tmp_path: Path, statuses: list[int], verdict: Verdict, journaled: list[int]
) -> None:
    """The line goes into the journal as soon as the 2xx is in, before the slot is free for another request: rows
    answered but not journaled are never more than CONCURRENCY (what a kill -9 may make a re-run send again)."""
    journals = Journals(tmp_path / "journal")
    writer = journals.writer()
    settings = Settings(_env_file=None, url_out=URL, max_attempts=3, concurrency=1)  # type: ignore[call-arg]
    sender = Sender(settings, halt=threading.Event(), sleep=lambda seconds: None)
    slots_free_when_journaled: list[int] = []

    def delivered(line: int) -> None:
        slots_free_when_journaled.append(sender.slots.acquire(timeout=0))
        writer.delivered(line)

    with responses.RequestsMock() as mock:
        for status in statuses:
            mock.add(responses.POST, URL, status=status)
        outcome = sender.deliver(Delivery(7, [], b"{}", "key"), on_delivered=delivered)

    writer.close()
    assert outcome.verdict is verdict
    assert absorbed(journals) == journaled
    assert slots_free_when_journaled == [False] * len(journaled)


# --- journals in whole runs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fresh", [False, True], ids=["resuming", "fresh"])
@pytest.mark.parametrize("workers", [1, 2], ids=["threads", "worker-processes"])
def test_every_delivery_is_in_a_journal_while_the_run_goes_on(
    start_sink: Callable[..., RunningSink],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    fresh: bool,
    workers: int,
) -> None:
    """When the run hears of its 30th delivery, the journals on disk hold at least 30: a kill now loses none.
    --fresh forgets earlier journals, never those this run's workers have just begun."""
    sink = start_sink(failure_rate=0, latency_ms=5)
    settings = make_settings(
        csv_in=write_films(tmp_path, 200), url_out=sink.movies_url, concurrency=4, workers=workers, fresh=fresh
    )
    seen: list[int] = []
    observer = AfterDelivered(30, lambda: seen.append(journal_entries(settings.state_dir)))

    result = pipeline.run(settings, on_outcome=observer)

    assert result.summary["delivered"] == 200
    assert len(seen) == 1
    assert seen[0] >= 30
    assert not (settings.state_dir / JOURNALS).exists() or journal_entries(settings.state_dir) == 0


FIRST_WORKER = "movymporter-worker-0"


def test_a_lost_worker_s_journaled_rows_count_as_delivered(
    start_sink: Callable[..., RunningSink],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker killed with outcomes still on their way: the rows its journal holds are delivered, not listed as
    'not delivered' for a human to send again; only its requests in flight may have reached the sink unnoticed."""
    sink = start_sink(failure_rate=0, latency_ms=10, idempotency="off")
    settings = make_settings(csv_in=write_films(tmp_path, 600), url_out=sink.movies_url, concurrency=8, workers=2)
    send = Connection.send

    def first_worker_s_outcomes_never_arrive(self: Connection, message: object) -> None:
        if multiprocessing.current_process().name == FIRST_WORKER and isinstance(message, list):
            return  # its journal has them, the importer does not: what a kill between the two leaves
        send(self, message)

    def kill_the_first_worker() -> None:
        [worker] = [child for child in multiprocessing.active_children() if child.name == FIRST_WORKER]
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]

    monkeypatch.setattr(Connection, "send", first_worker_s_outcomes_never_arrive)
    observer = AfterDelivered(100, kill_the_first_worker)
    result = pipeline.run(settings, on_outcome=observer)

    assert result.exit_status is ExitStatus.STOPPED
    assert_accounted(result.summary)
    stored = {film["title"] for film in sink.stored()}
    listed = [row[3] for row in read_csv(settings.report_dir / "rejected.csv")[1:] if row[1] == "delivery"]
    assert len(listed) == result.summary["not_attempted"]
    assert len(stored & set(listed)) <= 4, "rows a dead worker had journaled were reported as not delivered"
    assert result.summary["delivered"] == len(stored) - len(stored & set(listed))


@pytest.mark.parametrize("workers", [1, 2], ids=["threads", "worker-processes"])
def test_a_journal_that_cannot_be_written_stops_the_run_with_a_clear_error(
    reliable_sink: RunningSink,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """A full disk under STATE_DIR is the user's to mend: a ConfigError naming STATE_DIR, from a worker process
    too, not a traceback."""
    written = 0

    def fills_up(self: JournalWriter, line: int) -> None:
        nonlocal written
        written += 1
        if written > 5:
            raise journal._unwritable(self.path.parent, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(JournalWriter, "delivered", fills_up)
    settings = make_settings(csv_in=write_films(tmp_path, 100), url_out=reliable_sink.movies_url, workers=workers)

    with pytest.raises(ConfigError, match=r"STATE_DIR.*No space left on device"):
        pipeline.run(settings)
