"""The HTTP side of a POST: the pooled session, its adapter, Retry-After, and the deadline of each answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
import requests

from movymporter.delivery import sender as sender_module
from movymporter.delivery.http import Watchdog, WatchedHTTPConnection, make_session, retry_after_seconds
from movymporter.delivery.outcome import Delivery, Verdict
from movymporter.settings import Settings
from tests.conftest import GIVE_UP_S, RunningSink, wait_until
from tests.test_sender import BODY, DELIVERY, FakeClock, make_sender

pytestmark = pytest.mark.timeout(2 * GIVE_UP_S)


@pytest.fixture(autouse=True)
def _no_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep the developer's variables out of these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


# --- the session ---------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 16, 64])
def test_session_pool_holds_one_connection_per_request_in_flight(concurrency: int) -> None:
    """make_session's adapters keep `concurrency` keep-alive connections, block when full, and never retry."""
    session = make_session(concurrency)

    for url in ("http://sink.test/movies", "https://sink.test/movies"):
        adapter = session.get_adapter(url)
        assert adapter._pool_maxsize == concurrency  # type: ignore[attr-defined]
        assert adapter._pool_block is True  # type: ignore[attr-defined]
        assert adapter.max_retries.total == 0  # type: ignore[attr-defined]
    assert session.headers["Content-Type"] == "application/json"
    session.close()


def test_the_adapter_answers_repeated_posts_to_one_url_from_memory(reliable_sink: RunningSink) -> None:
    """The adapter gives the same pool for the same URL, TLS setting and proxies, and the request target from memory."""
    session = make_session(2)
    adapter = session.get_adapter(reliable_sink.movies_url)
    film = {"title": "A", "year": 2000}
    request = session.prepare_request(requests.Request("POST", reliable_sink.movies_url, json=film))
    other = session.prepare_request(requests.Request("GET", f"{reliable_sink.url}/metrics"))

    first = adapter.get_connection_with_tls_context(request, True, {})

    assert adapter.get_connection_with_tls_context(request, True, {}) is first
    assert adapter.get_connection_with_tls_context(request, True, {"http": "http://proxy.test:3128"}) is not first
    assert adapter.request_url(request, {}) == "/movies"
    assert adapter.request_url(other, {}) == "/metrics"
    assert session.send(request, timeout=5).status_code == 201
    assert session.send(other, timeout=5).status_code == 200


# --- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent-is-none"),
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="past-date-is-zero"),
        pytest.param("later", None, id="garbage-is-none"),
        pytest.param("", None, id="empty-is-none"),
    ],
)
def test_retry_after_seconds_reads_the_header(header: str | None, expected: float | None) -> None:
    """retry_after_seconds turns a Retry-After header into seconds, or None when there is none to honour."""
    response = requests.Response()
    if header is not None:
        response.headers["Retry-After"] = header

    assert retry_after_seconds(response) == expected


# --- the answer deadline against real sockets ------------------------------------------------

NEVER = 3600.0
"""A watchdog tick that does not come during a test: the test calls cut_overdue() itself."""


@dataclass
class Trickled:
    """What the trickling sink saw: when each request arrived, and how many connections the client cut."""

    url: str
    arrivals: list[float] = field(default_factory=list)
    cut_by_the_client: list[float] = field(default_factory=list)


@pytest.fixture
def trickling_sink() -> Iterator[Trickled]:
    """A server that answers each POST with a status line and then one header byte every 0.2 s, never ending
    the answer: each read is quick, the answer never comes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()
    seen = Trickled(f"http://127.0.0.1:{server.getsockname()[1]}/movies")

    def trickle(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            seen.arrivals.append(time.monotonic())
            try:
                connection.sendall(b"HTTP/1.1 201 Created\r\nX-Slow: ")
                while not stop.wait(0.2):
                    connection.sendall(b"a")
            except OSError:  # the client cut the connection while its answer was still coming
                seen.cut_by_the_client.append(time.monotonic())

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed at the end of the test
            threading.Thread(target=trickle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield seen
    stop.set()
    server.close()


@pytest.mark.slow
def test_an_answer_that_trickles_in_is_cut_at_the_deadline(trickling_sink: Trickled) -> None:
    """urllib3's read timeout bounds each read; CONNECT_TIMEOUT + READ_TIMEOUT bound the whole answer. Attempts
    against a sink that never finishes its answer end at that deadline as timeouts, until UNREACHABLE_AFTER
    stops the row, instead of holding it (and its thread) for ever."""
    deadline = {"connect_timeout": 0.3, "read_timeout": 0.7}
    sender = make_sender([], sleep=time.sleep, url_out=trickling_sink.url, unreachable_after=2.5, **deadline)
    started = time.monotonic()

    outcome = sender.deliver(DELIVERY)  # without the deadline, it never returns (and the test times out)

    elapsed = time.monotonic() - started
    sender.close()
    arrivals = trickling_sink.arrivals
    assert outcome.verdict is Verdict.ABORTED
    assert outcome.reason == "not delivered: the sink stopped answering (last: timeout)"
    assert elapsed >= 2.5  # lower bounds only: a busy machine makes every wait longer, never shorter
    assert outcome.unanswered == outcome.attempts == len(arrivals) >= 2
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # each attempt lasted its deadline (0.3 + 0.7 s)
    wait_until(
        lambda: len(trickling_sink.cut_by_the_client) == len(arrivals),
        "an attempt ended without the importer cutting its connection",
    )


def test_answers_within_the_deadline_are_never_cut(reliable_sink: RunningSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Armed and disarmed around every attempt, the deadline cuts nothing that answers in time, not even a
    pooled connection that waits idle between rows for longer than the deadline."""
    clock = FakeClock()  # still while a request is under way: however busy the machine, each answers "in time"
    watchdogs: list[Watchdog] = []

    def watchdog_on_the_fake_clock(seconds: float) -> Watchdog:
        watchdogs.append(Watchdog(seconds, clock=clock, tick_s=NEVER))
        return watchdogs[-1]

    monkeypatch.setattr(sender_module, "Watchdog", watchdog_on_the_fake_clock)
    # urllib3's own timeouts run on the real clock: generous, so that a busy machine does not trip them either.
    sender = make_sender([], url_out=reliable_sink.movies_url, connect_timeout=GIVE_UP_S, read_timeout=GIVE_UP_S)
    (watchdog,) = watchdogs
    outcomes = []
    cut_while_idle = []
    for line in range(30):
        outcomes.append(sender.deliver(Delivery(line, [], b'{"title":"Heat %d","year":1995}' % line, f"key-{line}")))
        if line % 10 == 0:
            clock.advance(10 * watchdog.seconds)  # idle far past the deadline, the pooled connection open
            cut_while_idle.append(watchdog.cut_overdue())
    sender.close()

    assert [outcome.verdict for outcome in outcomes] == [Verdict.DELIVERED] * 30
    assert [outcome.attempts for outcome in outcomes] == [1] * 30
    assert cut_while_idle == [0, 0, 0]
    assert reliable_sink.post_counts() == {"201": 30}


def test_the_watchdog_cuts_an_attempt_past_its_deadline_and_says_so() -> None:
    """An attempt still armed past its deadline has its socket shut down, once, and disarm() says it was cut;
    before its deadline it is left alone."""
    clock = FakeClock()
    watchdog = Watchdog(1.0, clock=clock, tick_s=NEVER)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        connection = WatchedHTTPConnection("127.0.0.1", silent.getsockname()[1], timeout=GIVE_UP_S)
        watchdog.arm()
        connection.request("POST", "/movies", body=BODY)  # makes the connection known to the armed watchdog
        clock.advance(0.5)
        before = watchdog.cut_overdue()
        clock.advance(0.5)
        at_the_deadline, again = watchdog.cut_overdue(), watchdog.cut_overdue()
        was_cut = watchdog.disarm()
        assert connection.sock is not None
        ended = connection.sock.recv(1)  # a socket shut down reads end of file at once
        connection.close()
    watchdog.close()

    assert (before, at_the_deadline, again, was_cut, ended) == (0, 1, 0, True, b"")
