"""The sink as a real process: statuses, metrics, storage, logs and settings over loopback HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from movymporter.sink.settings import SinkSettings

if TYPE_CHECKING:
    from conftest import RunningSink

ROOT = Path(__file__).resolve().parent.parent
StartSink = Callable[..., "RunningSink"]

FILM = {"title": "Heat", "year": 1995, "director": "Mann, Michael", "popularity": 68, "image": "heat.png"}


def post(session: requests.Session, url: str, payload: object = FILM, **kwargs: object) -> requests.Response:
    """POST a JSON body (bytes are sent as they are)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return session.post(url, data=data, headers={"content-type": "application/json", **kwargs}, timeout=10)


def request_log(sink: RunningSink, count: int) -> list[dict[str, object]]:
    """The sink's log lines for requests other than /metrics, once `count` of them are written (or, should they
    never be, after a minute: time enough for a busy machine)."""
    deadline = time.monotonic() + 60
    while True:
        lines = [line for line in sink.log_lines() if "method" in line and line["path"] != "/metrics"]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# --- the 503 dice


@pytest.mark.slow
def test_503_rate_matches_failure_rate_and_metrics_match_the_client(start_sink: StartSink) -> None:
    """With failure_rate=0.2, 1,000 valid POSTs see 15-25 % 503 (4 sigma), the rest 201, and the counters agree."""
    sink = start_sink(failure_rate=0.2, seed=2026)
    seen: Counter[int] = Counter()
    with requests.Session() as session:
        for number in range(1000):
            response = post(session, sink.movies_url, {**FILM, "title": f"film {number}"})
            seen[response.status_code] += 1
            if response.status_code == 503:
                assert response.content == b""
    assert set(seen) == {201, 503}
    assert 150 <= seen[503] <= 250, seen
    assert sink.post_counts() == {"201": seen[201], "503": seen[503]}
    assert requests.get(f"{sink.url}/_sink/stats", timeout=5).json() == {"stored": seen[201]}


@pytest.mark.slow
def test_same_seed_gives_the_same_503_sequence(start_sink: StartSink) -> None:
    """Two sinks with the same seed answer the same statuses in the same order; another seed differs."""

    def statuses(seed: int) -> list[int]:
        sink = start_sink(failure_rate=0.5, seed=seed)
        with requests.Session() as session:
            answers = [post(session, sink.movies_url).status_code for _ in range(40)]
        sink.stop()
        return answers

    first = statuses(11)
    assert set(first) == {201, 503}
    assert statuses(11) == first
    assert statuses(12) != first


def test_failure_rate_zero_accepts_every_valid_post(start_sink: StartSink) -> None:
    """With failure_rate=0 every valid POST is 201 with an empty body and is stored."""
    sink = start_sink(failure_rate=0)
    with requests.Session() as session:
        responses = [post(session, sink.movies_url, {**FILM, "title": f"film {n}"}) for n in range(200)]
    assert {(r.status_code, r.content) for r in responses} == {(201, b"")}
    assert sink.post_counts() == {"201": 200}
    assert [film["title"] for film in sink.stored()] == [f"film {n}" for n in range(200)]


def test_503_comes_before_the_body_is_read(start_sink: StartSink) -> None:
    """With failure_rate=1 even an invalid body gets 503 with an empty body, and nothing is stored."""
    sink = start_sink(failure_rate=1)
    with requests.Session() as session:
        responses = [post(session, sink.movies_url, payload) for payload in (b"not json", FILM, b"")]
    assert [(r.status_code, r.content) for r in responses] == [(503, b"")] * 3
    assert sink.post_counts() == {"503": 3}
    assert sink.stored() == []


# --- 400s

INVALID = [
    (b'{"title": "Heat", "year": "1995"}', "cannot unmarshal string into field year of type int"),
    (b'{"title": "Heat", "year": 1995.5}', "cannot unmarshal number into field year"),
    (b'{"title": "", "year": 1995}', "title is empty"),
    (b'{"title": "Heat", "year": 1887}', "year 1887 is outside 1888.."),
    (b'{"title": "Heat", "year": 1995, "popularity": 101}', "popularity 101 is outside 0..100"),
    (b'{"title": "Heat", "year": 1995, "awards": "yes"}', 'awards "yes" is not one of'),
    (b'{"title": "Heat", "year": 1995, "image": "a.PNG"}', 'image "a.PNG" does not match'),
    (b'{"title": "Heat", "year": 1995, "image": "a.png\\n"}', 'image "a.png\\n" does not match'),
    (b'{"title": "Caf\xe9", "year": 1995}', "title is not valid UTF-8 or contains U+FFFD"),
    (b'{"title": "\\ud800", "year": 1995}', "title is not valid UTF-8"),
    (b'{"title": "Heat", "year": 1995, "length": NaN}', "invalid JSON"),
    (b'{"title": "Heat", "year": 1995, "length": 1e999}', "out of range for field length"),
    (b"[]", "cannot unmarshal array"),
    (b"", "invalid JSON"),
]


def test_invalid_films_get_400_with_the_reason_as_one_line(reliable_sink: RunningSink) -> None:
    """Every invalid film is answered 400 with a one-line reason body, counted as 400 and not stored."""
    with requests.Session() as session:
        for payload, reason in INVALID:
            response = post(session, reliable_sink.movies_url, payload)
            assert response.status_code == 400, payload
            text = response.content.decode("utf-8")
            assert text.endswith("\n"), payload
            assert text.count("\n") == 1, f"{payload!r} got a multi-line body {text!r}"
            assert reason in text, payload
    assert reliable_sink.post_counts() == {"400": len(INVALID)}
    assert reliable_sink.stored() == []


def test_post_to_any_path_is_a_film_post(reliable_sink: RunningSink) -> None:
    """POST answers the same on any path, not only /movies."""
    with requests.Session() as session:
        statuses = [post(session, f"{reliable_sink.url}{path}").status_code for path in ("/", "/films", "/a/b?c=d")]
    assert statuses == [201, 201, 201]
    assert len(reliable_sink.stored()) == 3


# --- other methods


def test_get_on_any_path_answers_an_empty_list_and_is_counted(reliable_sink: RunningSink) -> None:
    """GET on any path but /metrics answers 200 with [] and counts sink_get_total{status="200"}."""
    paths = ["/", "/movies", "/movies/1", "/a/b/c?x=1"]
    with requests.Session() as session:
        responses = [session.get(f"{reliable_sink.url}{path}", timeout=5) for path in paths]
    assert [(r.status_code, r.text) for r in responses] == [(200, "[]")] * len(paths)
    assert {r.headers["content-type"] for r in responses} == {"application/json"}
    assert reliable_sink.get_counts() == {"200": len(paths)}
    assert reliable_sink.get_counts() == {"200": len(paths)}, "scraping /metrics must not count as a GET"
    assert reliable_sink.post_counts() == {}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_answer_405(reliable_sink: RunningSink, method: str) -> None:
    """PUT, DELETE and PATCH answer 405 with Allow: GET, POST, store nothing and count no POST."""
    response = requests.request(method, reliable_sink.movies_url, json=FILM, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert reliable_sink.post_counts() == {}
    assert reliable_sink.stored() == []


# --- storage and idempotency


def test_repeated_idempotency_key_is_201_twice_but_stored_once(reliable_sink: RunningSink) -> None:
    """A repeated Idempotency-Key is answered 201 again but not stored again; another key is stored."""
    with requests.Session() as session:
        statuses = [
            post(session, reliable_sink.movies_url, FILM, **{"Idempotency-Key": key}).status_code
            for key in ("k-1", "k-1", "k-2")
        ]
    assert statuses == [201, 201, 201]
    assert reliable_sink.post_counts() == {"201": 3}
    stored = reliable_sink.stored()
    assert [film["idempotency_key"] for film in stored] == ["k-1", "k-2"]
    assert {film["title"] for film in stored} == {"Heat"}


def test_posts_without_a_key_are_each_stored(reliable_sink: RunningSink) -> None:
    """Identical POSTs without an Idempotency-Key are each stored."""
    with requests.Session() as session:
        statuses = [post(session, reliable_sink.movies_url).status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    stored = reliable_sink.stored()
    assert len(stored) == 3
    assert {film["idempotency_key"] for film in stored} == {None}


def test_stored_film_keeps_every_field(reliable_sink: RunningSink) -> None:
    """The stored row holds the decoded film: case-folded keys, numbers as numbers, unknown keys dropped."""
    body = {
        "TITLE": "Heat",
        "Year": 1995,
        "length": 170,
        "subject": "Action",
        "actor": "Pacino, Al",
        "actress": "Judd, Ashley",
        "director": "Mann, Michael",
        "popularity": 68.5,
        "awards": "No",
        "image": "heat.jpeg",
        "rating": "R",
    }
    with requests.Session() as session:
        assert post(session, reliable_sink.movies_url, body).status_code == 201
    [stored] = reliable_sink.stored()
    assert {name: stored[name] for name in ("title", "year", "length", "popularity", "awards", "image")} == {
        "title": "Heat",
        "year": 1995,
        "length": 170.0,
        "popularity": 68.5,
        "awards": "No",
        "image": "heat.jpeg",
    }
    assert "rating" not in stored


def test_sink_extras_count_and_refuse_unknown_names(reliable_sink: RunningSink) -> None:
    """/_sink/stats counts stored films; unknown /_sink/ names are 404 and bad paging is 400."""
    with requests.Session() as session:
        post(session, reliable_sink.movies_url)
        post(session, reliable_sink.movies_url, {"title": ""})
        stats = session.get(f"{reliable_sink.url}/_sink/stats", timeout=5)
        unknown = session.get(f"{reliable_sink.url}/_sink/nothing", timeout=5)
        bad_page = session.get(f"{reliable_sink.url}/_sink/movies", params={"after": "x"}, timeout=5)
    assert (stats.status_code, stats.json()) == (200, {"stored": 1})
    assert unknown.status_code == 404
    assert bad_page.status_code == 400
    assert reliable_sink.get_counts() == {}, "the sink's own endpoints are not film GETs"


# --- limits and timing


def film_body_of_size(size: int) -> bytes:
    """A valid film whose JSON body is exactly `size` bytes long."""
    empty = json.dumps({"title": "", "year": 1995}).encode()
    return json.dumps({"title": "x" * (size - len(empty)), "year": 1995}).encode()


def test_body_over_the_limit_is_413(start_sink: StartSink) -> None:
    """A body of max_body_bytes is accepted; one byte more, declared or chunked, is 413 and not stored."""
    sink = start_sink(failure_rate=0, max_body_bytes=100)
    at_limit, over_limit = film_body_of_size(100), film_body_of_size(101)
    assert (len(at_limit), len(over_limit)) == (100, 101)
    with requests.Session() as session:
        accepted = post(session, sink.movies_url, at_limit)
        declared = post(session, sink.movies_url, over_limit)
        chunked = session.post(sink.movies_url, data=iter([over_limit[:60], over_limit[60:]]), timeout=10)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert [accepted.status_code, declared.status_code, chunked.status_code] == [201, 413, 413]
    assert sink.post_counts() == {"201": 1, "413": 2}
    assert len(sink.stored()) == 1


@pytest.mark.slow
def test_latency_setting_delays_every_post(start_sink: StartSink) -> None:
    """SINK_LATENCY_MS delays every POST answer, 201 and 503 alike, by at least that long."""
    latency_s = 0.2
    sink = start_sink(latency_ms=latency_s * 1000, failure_rate=0.5, seed=3)
    timings: list[tuple[int, float]] = []
    with requests.Session() as session:
        session.get(sink.url, timeout=5)  # connect before timing
        for _ in range(4):
            started = time.perf_counter()
            status = post(session, sink.movies_url).status_code
            timings.append((status, time.perf_counter() - started))
    assert {status for status, _ in timings} == {201, 503}, "the seed should give both statuses"
    assert all(elapsed >= latency_s for _, elapsed in timings), timings


def test_body_not_received_in_time_is_408(start_sink: StartSink) -> None:
    """A POST whose declared body does not arrive within read_timeout_s is answered 408."""
    sink = start_sink(failure_rate=0, read_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as client:
        started = time.perf_counter()
        client.sendall(b"POST /movies HTTP/1.1\r\nHost: sink\r\nContent-Length: 50\r\n\r\n{")
        answer = client.recv(4096)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert elapsed >= 0.3
    assert sink.post_counts() == {"408": 1}


# --- restart and logs


@pytest.mark.slow
def test_restart_resets_metrics_but_keeps_stored_films(reliable_sink: RunningSink) -> None:
    """After a restart the counters start from zero and the stored films are still there."""
    with requests.Session() as session:
        post(session, reliable_sink.movies_url, {**FILM, "title": "one"}, **{"Idempotency-Key": "k1"})
        post(session, reliable_sink.movies_url, {**FILM, "title": "two"})
        post(session, reliable_sink.movies_url, {"title": ""})
        session.get(reliable_sink.url, timeout=5)
    assert reliable_sink.post_counts() == {"201": 2, "400": 1}
    before = reliable_sink.stored()

    reliable_sink.restart()

    assert reliable_sink.post_counts() == {}
    assert reliable_sink.get_counts() == {}
    assert reliable_sink.stored() == before
    with requests.Session() as session:
        repeat = post(session, reliable_sink.movies_url, {**FILM, "title": "one"}, **{"Idempotency-Key": "k1"})
    assert repeat.status_code == 201
    assert len(reliable_sink.stored()) == 2, "the key stored before the restart is still unique"


def test_every_request_is_one_json_log_line(reliable_sink: RunningSink) -> None:
    """Each request writes one JSON line with its method, path and status (and the reason of a 400)."""
    with requests.Session() as session:
        post(session, reliable_sink.movies_url, FILM, **{"Idempotency-Key": "k-9"})
        post(session, f"{reliable_sink.url}/other", {"title": ""})
        session.get(f"{reliable_sink.url}/list?page=2", timeout=5)
        session.delete(f"{reliable_sink.url}/movies/1", timeout=5)
    lines = request_log(reliable_sink, 4)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/movies", 201),
        ("POST", "/other", 400),
        ("GET", "/list", 200),
        ("DELETE", "/movies/1", 405),
    ]
    assert lines[0]["key"] == "k-9"
    assert lines[1]["reason"] == "title is empty"
    assert all("time" in line for line in lines)
    raw_lines = reliable_sink.log_path.read_text().splitlines()
    assert all(json.loads(line) for line in raw_lines), "every log line is JSON"


def test_listening_line_announces_the_settings(reliable_sink: RunningSink) -> None:
    """The first log line is a JSON 'listening' event with the port and the effective settings."""
    first = reliable_sink.log_lines()[0]
    assert first["event"] == "listening"
    assert first["port"] == reliable_sink.port
    assert first["host"] == "127.0.0.1"
    assert first["failure_rate"] == 0.0


# --- settings and process entry


def test_defaults_reproduce_the_original_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SINK_ variables the sink is the spec's: 127.0.0.1:9009, 20 % 503, no latency, 2 s read timeout."""
    for name in list(os.environ):
        if name.startswith("SINK_"):
            monkeypatch.delenv(name)
    settings = SinkSettings()
    assert (settings.host, settings.port, settings.failure_rate) == ("127.0.0.1", 9009, 0.2)
    assert (settings.latency_ms, settings.seed, settings.read_timeout_s) == (0.0, None, 2.0)


def run_sink_process(**variables: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m movymporter.sink` with only the given SINK_ variables (port 0 unless given)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SINK_")}
    env.update({"SINK_PORT": "0", **variables})
    return subprocess.run(
        [sys.executable, "-m", "movymporter.sink"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("SINK_FAILURE_RATE", "2", id="failure-rate-above-1"),
        pytest.param("SINK_FAILURE_RATE", "often", id="failure-rate-not-a-number"),
        pytest.param("SINK_PORT", "70000", id="port-above-65535"),
        pytest.param("SINK_LATENCY_MS", "-5", id="negative-latency"),
        pytest.param("SINK_MAX_BODY_BYTES", "0", id="zero-body-limit"),
        pytest.param("SINK_SEED", "lucky", id="seed-not-an-integer"),
    ],
)
def test_bad_setting_exits_2_naming_the_setting(name: str, value: str) -> None:
    """A bad SINK_ setting exits 2 with a one-line message naming it, without a traceback or starting."""
    result = run_sink_process(**{name: value})
    assert result.returncode == 2
    assert name in result.stderr
    assert repr(value) in result.stderr, "the message shows the value given"
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == "", "no 'listening' line: the sink did not start"


def test_port_in_use_exits_2_with_a_message() -> None:
    """A port already taken makes the sink exit 2 with 'cannot listen on host:port', no traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_sink_process(SINK_PORT=str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
