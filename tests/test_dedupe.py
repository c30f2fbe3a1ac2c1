"""Exact duplicate detection: SeenRecords.first_seen and repeats, and the fingerprints they keep."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from movymporter import dedupe
from movymporter.dedupe import SeenRecords, salted_fingerprints
from movymporter.errors import InputError

INITIAL_SLOTS = 1 << 16  # SeenRecords' starting table size; growth starts past two thirds of it


def keys(count: int, start: int = 0) -> list[str]:
    """`count` distinct record keys."""
    return [f'1995""Film {number}""""""""' for number in range(start, start + count)]


def with_tag(tag: bytes, rest: int) -> str:
    """The key of a hand-made 16-byte fingerprint (see `as_written`): the 4-byte tag SeenRecords keys on, then
    12 distinguishing bytes."""
    return (tag + rest.to_bytes(12, "big")).hex()


def as_written(hex_keys: Iterable[str]) -> Iterable[bytes]:
    """Fingerprints chosen by the test: each key is the hex of its own fingerprint."""
    return map(bytes.fromhex, hex_keys)


@pytest.fixture
def seen(tmp_path: Path) -> Iterator[SeenRecords]:
    """An empty SeenRecords whose spill files live in the test's folder, closed after the test."""
    with SeenRecords(directory=tmp_path) as records:
        yield records


@pytest.fixture
def seen_as_written(tmp_path: Path) -> Iterator[SeenRecords]:
    """An empty SeenRecords whose keys are the hex of their fingerprints, so that a test can make tags collide."""
    with SeenRecords(directory=tmp_path, fingerprints=as_written) as records:
        yield records


def test_fingerprints_identify_equal_keys() -> None:
    """A fingerprint is 16 bytes, equal for equal keys (not only the same object), different for different
    ones, and its second half changes with the salt."""
    fingerprints = salted_fingerprints("\x1fa")
    key = '1995""Heat""""""""'
    heat, same, other, empty, space = fingerprints([key, "".join(list(key)), key + " ", "", " "])
    assert len(heat) == 16
    assert heat == same
    assert heat != other
    assert empty != space
    (salted_otherwise,) = salted_fingerprints("\x1fb")([key])
    assert salted_otherwise[:8] == heat[:8]
    assert salted_otherwise[8:] != heat[8:]


def test_a_key_with_an_undecoded_byte_is_still_fingerprinted() -> None:
    """A lone surrogate (a byte the reader could not decode) cannot reach a valid record, but would not crash."""
    first, second = salted_fingerprints("\x1fa")(["a\udcff", "a\udcfe"])
    assert first != second


def test_each_table_draws_its_own_salt(tmp_path: Path) -> None:
    """Two runs fingerprint the same key differently: what makes two records collide cannot be known ahead."""
    with SeenRecords(directory=tmp_path) as one, SeenRecords(directory=tmp_path) as other:
        key = '1995""Heat""""""""'
        assert one._fingerprints([key]) != other._fingerprints([key])


def test_first_seen_is_none_then_the_first_line(seen: SeenRecords) -> None:
    """first_seen returns None for a new record and the line it first appeared on for every repeat."""
    heat, alien = "heat", "alien"
    assert seen.first_seen(heat, 2) is None
    assert seen.first_seen(alien, 3) is None
    assert seen.first_seen(heat, 4) == 2
    assert seen.first_seen(heat, 9) == 2  # always the first line, not the latest repeat
    assert seen.first_seen(alien, 10) == 3
    assert len(seen) == 2


@pytest.mark.slow
def test_200k_distinct_records_are_told_apart_exactly(tmp_path: Path) -> None:
    """200,000 distinct keys in a table pre-sized for them are each new once, each repeat answers its own first
    line, and the table never doubles. (Growing from the initial table: the next test, also at 200,000.)"""
    many = keys(200_000)
    with SeenRecords(directory=tmp_path, expected=len(many)) as seen:
        slots = len(seen._table)
        assert [seen.first_seen(d, line) for line, d in enumerate(many, start=2)] == [None] * len(many)
        assert len(seen) == len(many)
        assert [seen.first_seen(d, 0) for d in many] == list(range(2, len(many) + 2))
        assert [seen.first_seen(d, 0) for d in keys(1000, start=len(many))] == [None] * 1000
        assert len(seen) == len(many) + 1000
        assert len(seen._table) == slots


@pytest.mark.slow
def test_growth_keeps_every_answer_right(seen: SeenRecords) -> None:
    """From the initial table, answers stay right before, across and after each doubling, up to 200,000 keys."""
    batches = [keys(40_000, start) for start in range(0, 200_000, 40_000)]
    known: list[str] = []
    for batch in batches:
        assert all(seen.first_seen(d, len(known) + i) is None for i, d in enumerate(batch))
        known.extend(batch)
        # every record seen so far, including those stored before the last growth
        assert [seen.first_seen(d, 0) for d in known[::997]] == list(range(0, len(known), 997))
    assert [seen.first_seen(d, 0) for d in known] == list(range(len(known)))
    assert [seen.first_seen(d, 0) for d in keys(1000, start=len(known))] == [None] * 1000
    assert len(seen) == len(known) + 1000
    assert len(seen._table) > INITIAL_SLOTS, "the table never grew"


@pytest.mark.parametrize(
    ("expected", "slots"),
    [
        pytest.param(0, INITIAL_SLOTS, id="no-estimate-initial-table"),
        pytest.param(40_000, INITIAL_SLOTS, id="small-estimate-initial-table"),
        pytest.param(50_000, INITIAL_SLOTS * 2, id="estimate-past-two-thirds-doubles-ahead"),
        pytest.param(200_000, 1 << 19, id="200k-rows-get-512k-slots"),
        pytest.param(1_000_000, 1 << 21, id="1m-rows-get-2m-slots"),
    ],
)
def test_expected_sizes_the_table_once(tmp_path: Path, expected: int, slots: int) -> None:
    """expected= sizes the table to the smallest power of two that holds that many rows under 2/3 load."""
    with SeenRecords(directory=tmp_path, expected=expected) as seen:
        assert len(seen._table) == slots
        assert slots * 2 >= expected * 3


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param(b"\xaa\xbb\xcc\xdd", id="same-tag"),
        pytest.param(b"\x00\x00\x00\x00", id="same-zero-tag"),
        pytest.param(b"\xff\xff\xff\xff", id="same-all-ones-tag"),
    ],
)
def test_fingerprints_sharing_a_tag_are_still_told_apart(seen_as_written: SeenRecords, tag: bytes) -> None:
    """Fingerprints with the same first 4 bytes (same in-memory tag) but different rest are different records."""
    seen = seen_as_written
    twins = [with_tag(tag, rest) for rest in range(1, 201)]
    assert len(set(twins)) == len(twins)
    assert [seen.first_seen(d, line) for line, d in enumerate(twins, start=10)] == [None] * len(twins)
    assert [seen.first_seen(d, 0) for d in reversed(twins)] == list(range(209, 9, -1))
    assert seen.first_seen(with_tag(tag, 0), 1) is None  # an unseen twin is new


def test_tag_twins_survive_growth(seen_as_written: SeenRecords) -> None:
    """Records sharing a tag are still told apart after the table grows around them."""
    seen = seen_as_written
    twins = [with_tag(b"\x01\x02\x03\x04", rest) for rest in range(50)]
    for line, d in enumerate(twins):
        assert seen.first_seen(d, line) is None
    for line, number in enumerate(range(INITIAL_SLOTS * 2), start=1000):
        seen.first_seen(with_tag(number.to_bytes(4, "little"), 1), line)
    assert len(seen._table) > INITIAL_SLOTS
    assert [seen.first_seen(d, 0) for d in twins] == list(range(50))
    assert seen.first_seen(with_tag(b"\x01\x02\x03\x04", 50), 7) is None


def test_different_tags_in_the_same_slot_are_told_apart(seen_as_written: SeenRecords) -> None:
    """Tags that differ only above the table mask land in one slot and are still distinct records."""
    seen = seen_as_written
    neighbours = [with_tag((k << 16).to_bytes(4, "little"), 0) for k in range(1, 101)]
    assert len({d[:8] for d in neighbours}) == 100
    assert [seen.first_seen(d, k) for k, d in enumerate(neighbours)] == [None] * 100
    assert [seen.first_seen(d, 0) for d in neighbours] == list(range(100))


WRITE_ENTRIES = 1 << 12  # entries SeenRecords holds in memory before one write to its files


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(WRITE_ENTRIES - 1, id="all-still-in-memory"),
        pytest.param(WRITE_ENTRIES, id="exactly-one-write"),
        pytest.param(WRITE_ENTRIES + 1, id="one-past-the-write"),
        pytest.param(3 * WRITE_ENTRIES + 7, id="several-writes"),
    ],
)
def test_repeats_are_found_in_memory_and_in_the_file(seen: SeenRecords, count: int) -> None:
    """A repeat answers its first line whether that entry still waits in memory or was written to the files."""
    many = keys(count)
    assert [seen.first_seen(d, line) for line, d in enumerate(many, start=2)] == [None] * count
    assert [seen.first_seen(d, 0) for d in reversed(many)] == list(range(count + 1, 1, -1))


def test_spill_files_are_anonymous_and_closed(tmp_path: Path) -> None:
    """The on-disk spill leaves no file behind in its directory, and close() is idempotent."""
    seen = SeenRecords(directory=tmp_path)
    assert seen.first_seen("x", 1) is None
    assert seen.first_seen("x", 2) == 1
    seen.close()
    seen.close()
    assert list(tmp_path.iterdir()) == []


# --- many records in one call ---------------------------------------------------------------------

TWIN_TAG = b"\x05\x06\x07\x08"


def as_a_dict_would(first_lines: dict[str, int], batch: list[str], lines: Iterable[int]) -> list[tuple[int, int]]:
    """What `repeats` should answer, told by a dict of every key's first line (which it updates)."""
    found = []
    for index, (key, line) in enumerate(zip(batch, lines, strict=True)):
        if key in first_lines:
            found.append((index, first_lines[key]))
        else:
            first_lines[key] = line
    return found


@pytest.mark.parametrize(
    ("batches"),
    [
        pytest.param([keys(300)], id="distinct-records"),
        pytest.param([keys(5) + keys(5) + keys(2)], id="repeats-within-one-batch"),
        pytest.param([keys(50), keys(80, start=30), keys(10, start=200)], id="repeats-across-batches"),
        pytest.param([[with_tag(TWIN_TAG, rest % 7) for rest in range(40)]], id="tag-twins-within-one-batch"),
        pytest.param(
            [keys(INITIAL_SLOTS), keys(INITIAL_SLOTS + 10, start=5)],
            id="a-batch-that-needs-a-bigger-table",
            marks=pytest.mark.slow,
        ),
        pytest.param([keys(WRITE_ENTRIES + 3), keys(10, start=WRITE_ENTRIES - 2)], id="repeats-of-entries-written"),
        pytest.param([[], keys(3), [], keys(3)], id="empty-batches"),
    ],
)
def test_repeats_answers_as_a_dict_would(tmp_path: Path, batches: list[list[str]]) -> None:
    """repeats gives, for each batch, the index and first line of each record seen before, as a dict of first
    lines would: a repeat inside the batch finds the earlier one, and neither a bigger table nor entries moved
    to the files lose a record."""
    fingerprints = as_written if batches[0] and batches[0][0].startswith(TWIN_TAG.hex()) else None
    with SeenRecords(directory=tmp_path, fingerprints=fingerprints) as seen:
        first_lines: dict[str, int] = {}
        line = 1
        for batch in batches:
            lines = range(line, line + len(batch))
            assert seen.repeats(iter(batch), lines) == as_a_dict_would(first_lines, batch, lines)
            line += len(batch)
        assert len(seen) == len(first_lines)
        again = [d for batch in batches for d in batch]
        assert seen.repeats(iter(again), [0] * len(again)) == as_a_dict_would(first_lines, again, [0] * len(again))


@pytest.mark.parametrize(
    ("tags", "twins"),
    [pytest.param(3, 100, id="3-tags-100-twins-each"), pytest.param(50, 40, id="50-tags-40-twins-each")],
)
def test_random_batches_with_colliding_tags_answer_as_a_dict_would(
    seen_as_written: SeenRecords, tags: int, twins: int
) -> None:
    """Batches of random sizes drawn from few tags (so that most lookups meet a twin), across entries moved to the
    files: every answer is the dict's."""
    rng = random.Random(tags)
    first_lines: dict[str, int] = {}
    line = 1
    for _ in range(40):
        batch = [
            with_tag(rng.randrange(tags).to_bytes(4, "little"), rng.randrange(twins)) for _ in range(rng.randrange(300))
        ]
        lines = range(line, line + len(batch))
        assert seen_as_written.repeats(batch, lines) == as_a_dict_would(first_lines, batch, lines)
        line += len(batch)
    assert line > WRITE_ENTRIES  # some answers came from the files
    assert len(seen_as_written) == len(first_lines)


def test_repeats_needs_a_line_for_each_key(seen: SeenRecords) -> None:
    """A key without its line (or a line without its key) is a bug in the caller, not a silent skip."""
    with pytest.raises(ValueError, match="one key"):
        seen.repeats(iter(keys(3)), [1, 2])


def test_more_rows_than_the_table_can_number_stop_with_a_message(
    seen: SeenRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table numbers its entries in 32 bits: past that, the run stops and says why instead of mixing
    records up (the limit is lowered here; the real one is over 4 billion rows)."""
    monkeypatch.setattr(dedupe, "_MAX_ENTRIES", 5)
    assert seen.repeats(keys(5), range(5)) == []
    with pytest.raises(InputError, match="more than 5 rows"):
        seen.repeats(keys(1, start=5), [6])
