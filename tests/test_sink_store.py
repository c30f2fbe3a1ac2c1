"""MovieStore: accepted films in SQLite, the Idempotency-Key unique unless every request is to be kept."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from movymporter.sink.contract import FIELDS, Film, zero_film
from movymporter.sink.store import MovieStore, StoreError


def make_film(title: str = "Heat", **fields: object) -> Film:
    return {**zero_film(), "title": title, "year": 1995, **fields}


@pytest.fixture
def store() -> Iterator[MovieStore]:
    """An in-memory store, closed after the test."""
    movie_store = MovieStore(":memory:")
    yield movie_store
    movie_store.close()


def test_add_stores_every_field_and_counts_it(store: MovieStore) -> None:
    """add() returns True, count() sees the film, and page() returns every field as given."""
    heat = make_film(length=170.0, actor="Pacino, Al", popularity=68.5, awards="No", image="heat.png")
    assert store.count() == 0
    assert store.add(heat, "key-1") is True
    assert store.count() == 1
    [row] = store.page()
    assert {name: row[name] for name in FIELDS} == heat
    assert row["id"] == 1
    assert row["idempotency_key"] == "key-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["received_at"])


def test_repeated_key_is_not_stored_twice(store: MovieStore) -> None:
    """A second add() with a stored key returns False and keeps the first film only."""
    assert store.add(make_film("Heat"), "same") is True
    assert store.add(make_film("Heat"), "same") is False
    assert store.add(make_film("Alien"), "same") is False
    assert store.count() == 1
    assert [row["title"] for row in store.page()] == ["Heat"]


def test_different_keys_store_equal_films_separately(store: MovieStore) -> None:
    """Two keys are two films, even when the films are equal."""
    assert store.add(make_film(), "a") is True
    assert store.add(make_film(), "b") is True
    assert [row["idempotency_key"] for row in store.page()] == ["a", "b"]


def test_films_without_a_key_never_collide(store: MovieStore) -> None:
    """Every add() without a key stores the film, even the same film again."""
    assert [store.add(make_film(), None) for _ in range(3)] == [True, True, True]
    assert store.add(make_film(), "k") is True
    assert store.add(make_film(), None) is True
    assert store.count() == 5
    assert [row["idempotency_key"] for row in store.page()] == [None, None, None, "k", None]


def test_empty_string_key_is_a_key(store: MovieStore) -> None:
    """An empty Idempotency-Key is a real key: its repeat is not stored (unlike None)."""
    assert store.add(make_film(), "") is True
    assert store.add(make_film(), "") is False
    assert store.count() == 1


def test_page_walks_films_in_arrival_order_by_id(store: MovieStore) -> None:
    """page(after_id, limit) returns the next `limit` films after `after_id`, in arrival order."""
    for number in range(25):
        store.add(make_film(f"film {number}"), f"k{number}")
    first = store.page(0, 10)
    assert [row["title"] for row in first] == [f"film {n}" for n in range(10)]
    second = store.page(first[-1]["id"], 10)
    assert [row["title"] for row in second] == [f"film {n}" for n in range(10, 20)]
    last = store.page(second[-1]["id"], 10)
    assert [row["title"] for row in last] == [f"film {n}" for n in range(20, 25)]
    assert store.page(last[-1]["id"], 10) == []
    ids = [row["id"] for row in first + second + last]
    assert ids == sorted(ids)
    assert len(set(ids)) == 25


def test_page_defaults_to_everything_up_to_a_thousand(store: MovieStore) -> None:
    """page() without arguments starts at the beginning and returns at most 1,000 films."""
    for number in range(1001):
        store.add(make_film(f"film {number}"), None)
    everything = store.page()
    assert len(everything) == 1000
    assert everything[0]["title"] == "film 0"
    assert [row["title"] for row in store.page(everything[-1]["id"])] == ["film 1000"]


def test_file_store_persists_across_reopen(tmp_path: Path) -> None:
    """A file store creates its folder, and after close and reopen keeps films and key uniqueness."""
    path = tmp_path / "nested" / "dir" / "sink.sqlite"
    first = MovieStore(str(path))
    first.add(make_film("Heat"), "k1")
    first.add(make_film("Alien"), None)
    first.close()
    assert path.exists()

    again = MovieStore(str(path))
    try:
        assert again.count() == 2
        assert [row["title"] for row in again.page()] == ["Heat", "Alien"]
        assert again.add(make_film("Heat"), "k1") is False
        assert again.add(make_film("Brazil"), "k2") is True
        assert again.count() == 3
    finally:
        again.close()


def test_memory_stores_are_independent() -> None:
    """Two :memory: stores share nothing."""
    one, two = MovieStore(":memory:"), MovieStore(":memory:")
    try:
        one.add(make_film(), "k")
        assert (one.count(), two.count()) == (1, 0)
        assert two.add(make_film(), "k") is True
    finally:
        one.close()
        two.close()


def test_a_store_without_unique_keys_keeps_every_request() -> None:
    """SINK_IDEMPOTENCY=off, like the original service: a repeat of a key is stored again, so repeats can be counted."""
    store = MovieStore(":memory:", unique_keys=False)
    try:
        assert [store.add(make_film("Heat"), "same") for _ in range(3)] == [True, True, True]
        assert [row["idempotency_key"] for row in store.page()] == ["same"] * 3
    finally:
        store.close()


@pytest.mark.parametrize(
    ("unique_keys", "repeat_stored"),
    [pytest.param(True, False, id="unique-then-unique"), pytest.param(False, True, id="unique-then-every-request")],
)
def test_one_file_serves_either_setting(tmp_path: Path, unique_keys: bool, repeat_stored: bool) -> None:
    """The key's index is not a constraint of the file: the same store can be reopened with the other setting."""
    path = str(tmp_path / "sink.sqlite")
    MovieStore(path).close()
    again = MovieStore(path, unique_keys=unique_keys)
    try:
        assert again.add(make_film(), "k") is True
        assert again.add(make_film(), "k") is repeat_stored
    finally:
        again.close()


def test_a_file_of_an_older_sink_cannot_store_every_request(tmp_path: Path) -> None:
    """A store made when the key was a UNIQUE column is refused with a clear message, not a failure per request."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE movies (id INTEGER PRIMARY KEY, idempotency_key TEXT UNIQUE, {', '.join(FIELDS)})")
    db.close()

    with pytest.raises(StoreError, match=r"older sink.*bin/clean"):
        MovieStore(str(path), unique_keys=False)
