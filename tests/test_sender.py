"""The sender: one POST per record, the retry policy of SPEC section 3, and the sink's health."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from bench.generate import write
from movymporter import pipeline
from movymporter.delivery.http import make_session
from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.delivery.sender import RetryableAnswer, Sender, SinkHealth, make_retrying
from movymporter.errors import SinkUnreachable
from movymporter.settings import Settings
from tests.conftest import GIVE_UP_S, RunningSink

URL = "http://sink.test/movies"
BODY = '{"title":"Alien","year":1979,"awards":"Yes","image":"\u00e9t\u00e9.png"}'.encode()
DELIVERY = Delivery(line=7, cells=["Alien", "1979"], body=BODY, key="0f1e2d3c4b5a69788796a5b4c3d2e1f0")

MAX_ATTEMPTS = 5
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 1.0
RETRY_AFTER_MAX = 30.0

# A retry loop that never ends is a failure of these tests, not a wait (the bound is generous: a busy machine
# runs the tests against real sockets several times slower).
pytestmark = pytest.mark.timeout(2 * GIVE_UP_S)


@pytest.fixture(autouse=True)
def _no_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep the developer's variables out of these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def sender_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "url_out": URL,
        "max_attempts": MAX_ATTEMPTS,
        "backoff_initial": BACKOFF_INITIAL,
        "backoff_max": BACKOFF_MAX,
        "retry_after_max": RETRY_AFTER_MAX,
        "unreachable_after": 60.0,
        "concurrency": 4,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_sender(
    sleeps: list[float],
    *,
    halt: threading.Event | None = None,
    health: SinkHealth | None = None,
    sleep: Callable[[float], object] | None = None,
    **overrides: Any,
) -> Sender:
    return Sender(
        sender_settings(**overrides),
        halt=halt or threading.Event(),
        sleep=sleep or sleeps.append,
        health=health,
    )


def answer(rsps: responses.RequestsMock, *statuses: int, **kwargs: Any) -> None:
    """Queue the sink's answers in order; the last one repeats."""
    for status in statuses:
        rsps.add(responses.POST, URL, status=status, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- retried answers ----------------------------------------------------------------------


def test_503_then_201_is_delivered_on_the_second_attempt(rsps: responses.RequestsMock) -> None:
    """A 503 followed by a 201 delivers the row in two attempts and records both statuses."""
    answer(rsps, 503, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.attempts == 2
    assert outcome.statuses == [503, 201]
    assert outcome.status == 201
    assert outcome.unanswered == 0
    assert outcome.reason == ""
    assert len(sleeps) == 1
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504], ids=lambda status: f"{status}-is-retried")
def test_transient_statuses_are_retried(rsps: responses.RequestsMock, status: int) -> None:
    """Each transient status of the spec gets another attempt, after one wait."""
    answer(rsps, status, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.statuses == [status, 201]
    assert outcome.attempts == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [200, 201, 202, 204], ids=lambda status: f"{status}-is-delivered")
def test_any_2xx_is_delivered_at_once(rsps: responses.RequestsMock, status: int) -> None:
    """Every 2xx answer counts as delivered, without a retry."""
    answer(rsps, status)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert (outcome.verdict, outcome.attempts, outcome.status, sleeps) == (Verdict.DELIVERED, 1, status, [])


def _in(seconds: float) -> Callable[[], str]:
    return lambda: formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry_after", "low", "high"),
    [
        pytest.param(429, lambda: "7", 7.0, 7.0, id="429-seconds-is-waited-exactly"),
        pytest.param(503, lambda: "7", 7.0, 7.0, id="503-seconds-is-waited-exactly"),
        pytest.param(429, lambda: " 3 ", 3.0, 3.0, id="seconds-with-spaces"),
        pytest.param(429, lambda: "0", 0.0, 0.0, id="zero-means-at-once"),
        pytest.param(429, _in(20), 15.0, 20.0, id="http-date-is-waited-until"),
        pytest.param(429, lambda: "Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0, id="http-date-in-the-past-is-zero"),
        pytest.param(429, lambda: "3600", RETRY_AFTER_MAX, RETRY_AFTER_MAX, id="above-retry-after-max-is-capped"),
        pytest.param(429, _in(3600), RETRY_AFTER_MAX, RETRY_AFTER_MAX, id="distant-http-date-is-capped"),
        pytest.param(429, lambda: "soon", 0.0, BACKOFF_INITIAL, id="garbage-falls-back-to-backoff"),
        pytest.param(429, lambda: "1.5", 0.0, BACKOFF_INITIAL, id="fraction-falls-back-to-backoff"),
        pytest.param(429, lambda: "-5", 0.0, BACKOFF_INITIAL, id="negative-falls-back-to-backoff"),
    ],
)
def test_retry_after_is_honoured(
    rsps: responses.RequestsMock, status: int, retry_after: Callable[[], str], low: float, high: float
) -> None:
    """The wait before the next attempt is what Retry-After asks for, capped; an unreadable one means backoff."""
    rsps.add(responses.POST, URL, status=status, headers={"Retry-After": retry_after()})
    answer(rsps, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert len(sleeps) == 1
    assert low <= sleeps[0] <= high


@pytest.mark.parametrize(
    "retry_after",
    ["Mon, 01 Jan 99999 00:00:00 GMT", "31 Dec 10000000000000 00:00"],
    ids=["year-99999", "year-beyond-c-long"],
)
def test_out_of_range_retry_after_date_falls_back_to_backoff(rsps: responses.RequestsMock, retry_after: str) -> None:
    """A Retry-After date no clock can hold is garbage like any other: the sender backs off and retries."""
    rsps.add(responses.POST, URL, status=503, headers={"Retry-After": retry_after})
    answer(rsps, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert len(sleeps) == 1
    assert 0.0 <= sleeps[0] <= BACKOFF_INITIAL


def test_backoff_waits_stay_within_exponential_jitter_bounds(rsps: responses.RequestsMock) -> None:
    """Wait n (0-based) is drawn from [0, min(backoff_max, backoff_initial * 2**n)], so it grows and is capped."""
    answer(rsps, 503)
    attempts = 10
    for _ in range(20):
        sleeps: list[float] = []
        outcome = make_sender(sleeps, max_attempts=attempts).deliver(DELIVERY)

        assert outcome.attempts == attempts
        assert len(sleeps) == attempts - 1
        for n, wait in enumerate(sleeps):
            assert 0 <= wait <= min(BACKOFF_MAX, BACKOFF_INITIAL * 2**n), (n, sleeps)
        # Full jitter: waits are random, not the bounds themselves.
        assert len(set(sleeps)) > 1


def test_retry_policy_stops_after_max_counted_attempts_and_reraises() -> None:
    """make_retrying's policy stops once the Outcome counts max_attempts, and re-raises the last transient error."""
    sleeps: list[float] = []
    retrying = make_retrying(sender_settings(max_attempts=3), give_up=lambda: False, sleep=sleeps.append)
    outcome = Outcome(DELIVERY, Verdict.FAILED)

    def always_down(delivery: Delivery, outcome: Outcome) -> None:
        outcome.attempts += 1
        outcome.counted += 1
        raise requests.ConnectionError("Connection refused")

    with pytest.raises(requests.ConnectionError):
        retrying(always_down, DELIVERY, outcome)
    assert outcome.attempts == 3
    assert len(sleeps) == 2


def test_retry_policy_stops_at_once_when_giving_up() -> None:
    """make_retrying's policy makes no further attempt once give_up() holds."""
    sleeps: list[float] = []
    retrying = make_retrying(sender_settings(max_attempts=10), give_up=lambda: True, sleep=sleeps.append)
    outcome = Outcome(DELIVERY, Verdict.FAILED)

    def busy(delivery: Delivery, outcome: Outcome) -> None:
        outcome.attempts += 1
        outcome.counted += 1
        raise RetryableAnswer(503, None)

    with pytest.raises(RetryableAnswer):
        retrying(busy, DELIVERY, outcome)
    assert outcome.attempts == 1
    assert sleeps == []


def test_retry_policy_does_not_retry_other_errors() -> None:
    """make_retrying's policy lets an error that is not transient through at once."""
    retrying = make_retrying(sender_settings(), give_up=lambda: False, sleep=lambda _: None)
    outcome = Outcome(DELIVERY, Verdict.FAILED)

    def broken(delivery: Delivery, outcome: Outcome) -> None:
        outcome.attempts += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retrying(broken, DELIVERY, outcome)
    assert outcome.attempts == 1


# --- no answer ------------------------------------------------------------------------------


def test_connection_error_then_201_counts_one_unanswered_attempt(rsps: responses.RequestsMock) -> None:
    """A connection error is retried, and counted as an attempt the sink did not answer."""
    rsps.add(responses.POST, URL, body=requests.ConnectionError("Connection refused"))
    answer(rsps, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.attempts == 2
    assert outcome.unanswered == 1
    assert outcome.statuses == [201]
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "error",
    [requests.exceptions.ReadTimeout("read timed out"), requests.exceptions.ConnectTimeout("connect timed out")],
    ids=["read-timeout-is-retried", "connect-timeout-is-retried"],
)
def test_timeout_then_success(rsps: responses.RequestsMock, error: Exception) -> None:
    """A timeout is retried, and counted as unanswered."""
    rsps.add(responses.POST, URL, body=error)
    answer(rsps, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert (outcome.verdict, outcome.attempts, outcome.unanswered, outcome.statuses) == (
        Verdict.DELIVERED,
        2,
        1,
        [201],
    )


def test_unanswered_attempts_do_not_use_up_max_attempts_while_nobody_gets_answers(
    rsps: responses.RequestsMock,
) -> None:
    """While the sink answers no one, failed connections do not count against max_attempts: the row waits for it."""
    for _ in range(MAX_ATTEMPTS + 2):
        rsps.add(responses.POST, URL, body=requests.ConnectionError("Connection refused"))
    answer(rsps, 201)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.attempts == MAX_ATTEMPTS + 3
    assert outcome.unanswered == MAX_ATTEMPTS + 2
    assert outcome.counted == 1
    assert outcome.statuses == [201]


def test_unanswered_attempts_count_when_the_sink_answered_others(rsps: responses.RequestsMock) -> None:
    """A row whose attempts get no answer while other requests do get answers fails after max_attempts."""
    health = SinkHealth(after=60)

    def others_answered_then_reset(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        health.answered()  # another thread's request got an answer meanwhile
        raise requests.ConnectionError("Connection reset by peer")

    rsps.add_callback(responses.POST, URL, callback=others_answered_then_reset)
    sleeps: list[float] = []

    outcome = make_sender(sleeps, health=health).deliver(DELIVERY)

    assert outcome.verdict is Verdict.FAILED
    assert outcome.attempts == MAX_ATTEMPTS
    assert outcome.unanswered == MAX_ATTEMPTS
    assert outcome.statuses == []
    assert outcome.status is None
    assert outcome.reason == f"gave up after {MAX_ATTEMPTS} attempts (last: connection reset)"
    assert len(sleeps) == MAX_ATTEMPTS - 1


# --- final answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422], ids=lambda status: f"{status}-is-final")
def test_data_refusal_is_final_after_one_attempt(rsps: responses.RequestsMock, status: int) -> None:
    """A 400 or 422 is not retried: the row is REJECTED with the first line of the sink's body as the reason."""
    answer(rsps, status, body="year 1850 is outside 1888..2026\nsecond line\n")
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REJECTED
    assert outcome.attempts == 1
    assert outcome.status == status
    assert outcome.statuses == [status]
    assert outcome.reason == f"sink {status}: year 1850 is outside 1888..2026"
    assert sleeps == []
    assert len(rsps.calls) == 1


def test_data_refusal_without_a_body_still_has_a_reason(rsps: responses.RequestsMock) -> None:
    """A 400 with an empty body gets a reason that says so rather than an empty cell."""
    answer(rsps, 400, body="")
    outcome = make_sender([]).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REJECTED
    assert outcome.reason == "sink 400: (no reason given)"


def test_data_refusal_reason_is_bounded(rsps: responses.RequestsMock) -> None:
    """A huge one-line body does not become a huge reason cell."""
    answer(rsps, 400, body="x" * 10_000)
    outcome = make_sender([]).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REJECTED
    assert 500 <= len(outcome.reason) < 600


@pytest.mark.parametrize("status", [401, 403, 404, 405], ids=lambda status: f"{status}-stops-the-run")
def test_configuration_answers_are_refused_after_one_attempt(rsps: responses.RequestsMock, status: int) -> None:
    """401/403/404/405 mean the configuration is wrong: REFUSED at once, with a reason naming the status and URL."""
    answer(rsps, status)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REFUSED
    assert outcome.attempts == 1
    assert outcome.status == status
    assert str(status) in outcome.reason
    assert URL in outcome.reason
    assert sleeps == []
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308], ids=lambda status: f"{status}-is-not-followed")
def test_redirect_is_refused_and_not_followed(rsps: responses.RequestsMock, status: int) -> None:
    """A redirect is a configuration problem: REFUSED, naming where it points, and never followed."""
    elsewhere = "http://sink.test/v2/movies"
    answer(rsps, status, headers={"Location": elsewhere})
    rsps.add(responses.POST, elsewhere, status=201)
    rsps.add(responses.GET, elsewhere, status=200)

    outcome = make_sender([]).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REFUSED
    assert outcome.attempts == 1
    assert str(status) in outcome.reason
    assert elsewhere in outcome.reason
    assert [call.request.url for call in rsps.calls] == [URL]


@pytest.mark.parametrize("status", [409, 410, 413, 501, 505], ids=lambda status: f"{status}-fails-at-once")
def test_other_statuses_fail_after_one_attempt(rsps: responses.RequestsMock, status: int) -> None:
    """An answer that retrying cannot change fails the row at once, with the status in the reason."""
    answer(rsps, status, body="conflict with a stored film")
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.FAILED
    assert outcome.attempts == 1
    assert outcome.status == status
    assert outcome.reason == f"sink {status}: conflict with a stored film"
    assert sleeps == []


def test_always_503_fails_after_exactly_max_attempts(rsps: responses.RequestsMock) -> None:
    """A sink that answers 503 every time gets exactly max_attempts POSTs, then the row FAILED."""
    answer(rsps, 503)
    sleeps: list[float] = []

    outcome = make_sender(sleeps).deliver(DELIVERY)

    assert outcome.verdict is Verdict.FAILED
    assert outcome.attempts == MAX_ATTEMPTS
    assert outcome.statuses == [503] * MAX_ATTEMPTS
    assert outcome.status == 503
    assert outcome.unanswered == 0
    assert len(sleeps) == MAX_ATTEMPTS - 1
    assert len(rsps.calls) == MAX_ATTEMPTS
    assert outcome.reason == f"gave up after {MAX_ATTEMPTS} attempts (last: HTTP 503)"


# --- what goes on the wire ------------------------------------------------------------------


def test_every_post_carries_the_key_and_the_body_unchanged(rsps: responses.RequestsMock) -> None:
    """Each attempt POSTs the Delivery's body bytes as JSON, with its Idempotency-Key, to URL_OUT."""
    answer(rsps, 503, 502, 201)

    outcome = make_sender([]).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert len(rsps.calls) == 3
    for call in rsps.calls:
        request = call.request
        assert request.method == "POST"
        assert request.url == URL
        assert request.body == BODY
        assert request.headers["Idempotency-Key"] == DELIVERY.key
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("movymporter/")


def test_outcome_keeps_the_delivery(rsps: responses.RequestsMock) -> None:
    """The outcome carries its Delivery, so the report gets the line and the original cells."""
    answer(rsps, 400, body="title is empty")
    outcome = make_sender([]).deliver(DELIVERY)

    assert isinstance(outcome, Outcome)
    assert outcome.delivery is DELIVERY


# --- stopping ---------------------------------------------------------------------------------


def test_halt_set_while_waiting_aborts_the_row_and_stops_sleeping(rsps: responses.RequestsMock) -> None:
    """A stop that arrives while the sender waits between attempts makes the row ABORTED, and no more waits follow."""
    answer(rsps, 503)
    halt = threading.Event()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        halt.set()

    outcome = make_sender(sleeps, halt=halt, sleep=sleep).deliver(DELIVERY)

    assert outcome.verdict is Verdict.ABORTED
    assert outcome.verdict is not Verdict.FAILED
    assert len(sleeps) == 1
    assert outcome.attempts < MAX_ATTEMPTS
    assert "stopped" in outcome.reason
    assert outcome.status == 503


def test_halt_set_during_an_attempt_aborts_without_waiting(rsps: responses.RequestsMock) -> None:
    """A stop that arrives while a POST is in flight ends the row after that attempt, without a wait."""
    halt = threading.Event()

    def stop_then_503(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        halt.set()
        return 503, {}, ""

    rsps.add_callback(responses.POST, URL, callback=stop_then_503)
    sleeps: list[float] = []

    outcome = make_sender(sleeps, halt=halt).deliver(DELIVERY)

    assert outcome.verdict is Verdict.ABORTED
    assert outcome.attempts == 1
    assert sleeps == []
    assert len(rsps.calls) == 1


def test_halt_does_not_undo_a_final_answer(rsps: responses.RequestsMock) -> None:
    """A row the sink answered 201 is DELIVERED even if the run starts stopping during that POST."""
    halt = threading.Event()

    def stop_then_201(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        halt.set()
        return 201, {}, ""

    rsps.add_callback(responses.POST, URL, callback=stop_then_201)

    outcome = make_sender([], halt=halt).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED


def test_a_row_after_the_halt_is_not_sent_at_all(rsps: responses.RequestsMock) -> None:
    """Once the run is stopping, a row that has not started is ABORTED without a POST."""
    halt = threading.Event()
    halt.set()
    answer(rsps, 201)

    outcome = make_sender([], halt=halt).deliver(DELIVERY)

    assert outcome.verdict is Verdict.ABORTED
    assert outcome.attempts == 0
    assert len(rsps.calls) == 0
    assert outcome.reason == "not delivered: the run was stopped"


class WatchedHalt(threading.Event):
    """A halt event that records every wait on it (timeout asked, and whether the event ended it)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[tuple[float | None, bool]] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        ended_by_the_event = super().wait(timeout)
        self.waits.append((timeout, ended_by_the_event))
        return ended_by_the_event


def test_default_sleep_is_the_halt_event_so_a_stop_interrupts_the_wait(rsps: responses.RequestsMock) -> None:
    """Without an injected sleep the sender waits on the halt event, so a set event ends the wait at once."""
    answer(rsps, 429, headers={"Retry-After": "30"})
    halt = WatchedHalt()
    ctrl_c = threading.Thread(target=lambda: halt.waiting.wait(GIVE_UP_S) and halt.set())
    ctrl_c.start()
    sender = Sender(sender_settings(), halt=halt)

    outcome = sender.deliver(DELIVERY)

    ctrl_c.join()
    assert outcome.verdict is Verdict.ABORTED
    assert halt.waits == [(30.0, True)], "the Retry-After wait was not a wait on the halt event, ended by it"


# --- sink health ------------------------------------------------------------------------------


def test_health_goes_down_after_failing_for_longer_than_after() -> None:
    """Failures that keep coming for more than `after` seconds without an answer mark the sink down."""
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)

    health.failed("connection refused")
    clock.advance(6)
    health.failed("connection refused")
    assert not health.down
    clock.advance(6)
    health.failed("HTTP 503")

    assert health.down
    assert health.last_error == "HTTP 503"


def test_health_counts_usable_answers() -> None:
    """answered() counts every usable answer, so a sender can tell whether the sink answered anyone meanwhile."""
    health = SinkHealth(after=10, clock=FakeClock())
    health.answered()
    health.failed("timeout")
    health.answered()

    assert health.answers == 2


def test_health_is_not_down_at_exactly_after_seconds() -> None:
    """`after` seconds of failures are tolerated; only more than that marks the sink down."""
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    clock.advance(10)
    health.failed("timeout")

    assert not health.down


def test_an_answer_resets_the_health_clock() -> None:
    """An answer between failures starts the `after` period again."""
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)

    for _ in range(5):
        clock.advance(6)
        health.failed("HTTP 503")
        clock.advance(1)
        health.answered()
    clock.advance(6)
    health.failed("HTTP 503")

    assert not health.down


def test_one_failure_after_an_idle_stretch_does_not_mark_the_sink_down() -> None:
    """Time without any attempt is not time of failure: one 503 after a quiet minute does not declare the sink down."""
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    health.answered()
    clock.advance(120)  # nothing sent: the reader was going through rows that are not sent

    health.failed("HTTP 503")

    assert not health.down


def test_sender_gives_up_once_the_sink_is_down(rsps: responses.RequestsMock) -> None:
    """When failures outlast `unreachable_after`, the sender stops retrying and the row is ABORTED, not FAILED."""
    rsps.add(responses.POST, URL, body=requests.ConnectionError("Connection refused"))
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(6)

    sender = make_sender(sleeps, health=health, sleep=sleep, max_attempts=10)
    outcome = sender.deliver(DELIVERY)

    assert sender.health.down
    assert outcome.verdict is Verdict.ABORTED
    assert outcome.attempts == 3  # failures at t=0, 6 and 12: the third is more than 10 s after the start
    assert len(sleeps) == 2
    assert "connection refused" in sender.health.last_error


def test_503s_count_as_failures_for_health(rsps: responses.RequestsMock) -> None:
    """A sink that only answers 503 for longer than `unreachable_after` is declared down."""
    answer(rsps, 503)
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    sender = make_sender([], health=health, sleep=lambda _: clock.advance(4), max_attempts=10)

    outcome = sender.deliver(DELIVERY)

    assert health.down
    assert outcome.verdict is Verdict.ABORTED
    assert health.last_error == "HTTP 503"


@pytest.mark.parametrize("status", [408, 429], ids=lambda status: f"{status}-proves-the-sink-is-up")
def test_slow_down_answers_keep_the_sink_alive(rsps: responses.RequestsMock, status: int) -> None:
    """408 and 429 are retried but prove the sink reads requests, so they never mark it down."""
    answer(rsps, status)
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    sender = make_sender([], health=health, sleep=lambda _: clock.advance(30))

    outcome = sender.deliver(DELIVERY)

    assert not health.down
    assert outcome.verdict is Verdict.FAILED
    assert outcome.attempts == MAX_ATTEMPTS


def test_a_down_sink_gets_no_more_attempts(rsps: responses.RequestsMock) -> None:
    """Once the sink is down, a new row is ABORTED without a POST and without waiting."""
    rsps.add(responses.POST, URL, body=requests.ConnectionError("Connection refused"))
    clock = FakeClock()
    health = SinkHealth(after=10, clock=clock)
    health.down = True
    sleeps: list[float] = []

    outcome = make_sender(sleeps, health=health).deliver(DELIVERY)

    assert outcome.verdict is Verdict.ABORTED
    assert outcome.attempts == 0
    assert len(rsps.calls) == 0
    assert "the sink stopped answering" in outcome.reason
    assert sleeps == []


# --- reachability and session ------------------------------------------------------------------


def test_check_reachable_raises_for_a_closed_port() -> None:
    """Nothing listening at URL_OUT's port is SinkUnreachable, with a message naming host and port."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sender = Sender(
        sender_settings(url_out=f"http://127.0.0.1:{port}/movies", connect_timeout=1), halt=threading.Event()
    )

    with pytest.raises(SinkUnreachable, match=rf"127\.0\.0\.1:{port}"):
        sender.check_reachable()


def test_check_reachable_passes_for_a_listening_socket() -> None:
    """A socket that accepts connections at URL_OUT's port passes the check."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        sender = Sender(
            sender_settings(url_out=f"http://127.0.0.1:{port}/movies", connect_timeout=1), halt=threading.Event()
        )

        sender.check_reachable()


def test_sender_builds_its_session_from_concurrency() -> None:
    """A Sender without an injected session pools as many connections as CONCURRENCY."""
    sender = Sender(sender_settings(concurrency=7), halt=threading.Event())

    assert sender.session.get_adapter(URL)._pool_maxsize == 7  # type: ignore[attr-defined]
    sender.close()


def test_sender_uses_the_injected_session(rsps: responses.RequestsMock) -> None:
    """An injected session is the one that sends, with its own headers."""
    session = make_session(2)
    session.headers["X-Test"] = "yes"
    answer(rsps, 201)
    sender = Sender(sender_settings(), halt=threading.Event(), session=session, sleep=lambda _: None)

    sender.deliver(DELIVERY)

    assert sender.session is session
    assert rsps.calls[0].request.headers["X-Test"] == "yes"


# --- credentials -------------------------------------------------------------------------------


def test_auth_token_is_sent_as_a_bearer_header(rsps: responses.RequestsMock) -> None:
    """AUTH_TOKEN becomes `Authorization: Bearer <token>` on every POST."""
    answer(rsps, 201)

    make_sender([], auth_token="s3cr3t").deliver(DELIVERY)

    assert rsps.calls[0].request.headers["Authorization"] == "Bearer s3cr3t"


def test_no_token_no_authorization_header(rsps: responses.RequestsMock) -> None:
    """Without AUTH_TOKEN no Authorization header is invented."""
    answer(rsps, 201)

    make_sender([]).deliver(DELIVERY)

    assert "Authorization" not in rsps.calls[0].request.headers


@pytest.mark.parametrize(
    ("url", "gets_token"),
    [
        pytest.param("http://sink.test/metrics", True, id="same-origin-metrics-get-the-token"),
        pytest.param("http://metrics.test/metrics", False, id="other-host-never-sees-the-token"),
        pytest.param("https://sink.test/metrics", False, id="other-scheme-never-sees-the-token"),
    ],
)
def test_the_token_only_goes_to_url_outs_origin(url: str, gets_token: bool) -> None:
    """A METRICS_URL elsewhere must not receive the sink's credentials."""
    sender = make_sender([], auth_token="s3cr3t")
    assert ("Authorization" in sender.auth_headers_for(url)) is gets_token


def test_ca_bundle_is_used_to_verify_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CA_BUNDLE, else requests' own REQUESTS_CA_BUNDLE, else its default CAs: verification itself stays on."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    assert make_sender([], ca_bundle=bundle).verify == str(bundle)
    assert make_sender([]).verify == "/elsewhere/ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert make_sender([]).verify is True


def test_proxies_from_the_environment_are_read_once_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY still applies (and NO_PROXY still exempts), though requests no longer reads them per request."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert make_sender([]).proxies.get("http") == "http://proxy.test:3128"
    monkeypatch.setenv("NO_PROXY", "sink.test")
    assert "http" not in make_sender([]).proxies


def test_ca_bundle_wins_over_requests_ca_bundle_in_the_environment(
    https_sink: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests would let REQUESTS_CA_BUNDLE override a session's CA bundle; CA_BUNDLE must still apply."""
    url, cert = https_sink
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    outcome = Sender(sender_settings(url_out=url, ca_bundle=cert), halt=threading.Event()).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED


# --- TLS against a real HTTPS server ---------------------------------------------------------


class _Created(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a self-signed certificate: (URL, the certificate to trust)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Created)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/movies", cert
    server.shutdown()
    server.server_close()


def test_an_unverifiable_certificate_stops_at_once_as_configuration(https_sink: tuple[str, Path]) -> None:
    """TLS verification stays on: a certificate nobody vouches for is REFUSED after one attempt, naming CA_BUNDLE."""
    url, _ = https_sink
    sleeps: list[float] = []

    outcome = Sender(sender_settings(url_out=url), halt=threading.Event(), sleep=sleeps.append).deliver(DELIVERY)

    assert outcome.verdict is Verdict.REFUSED
    assert outcome.attempts == 1
    assert sleeps == []
    assert "certificate verify failed" in outcome.reason
    assert "CA_BUNDLE" in outcome.reason


def test_ca_bundle_makes_a_private_certificate_trusted(https_sink: tuple[str, Path]) -> None:
    """With CA_BUNDLE naming the certificate that signed the sink's, the POST goes through."""
    url, cert = https_sink

    outcome = Sender(sender_settings(url_out=url, ca_bundle=cert), halt=threading.Event()).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED


def test_no_more_requests_in_flight_than_concurrency(rsps: responses.RequestsMock) -> None:
    """CONCURRENCY bounds requests, not rows: many threads share that many slots."""
    active = 0
    most = 0
    lock = threading.Condition()

    def slow_201(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        """Answer once 3 requests have been in flight together, so the most seen does not depend on scheduling."""
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
            lock.notify_all()
            assert lock.wait_for(lambda: most >= 3, GIVE_UP_S), "3 requests were never in flight together"
            active -= 1
        return 201, {}, ""

    rsps.add_callback(responses.POST, URL, callback=slow_201)
    sender = make_sender([], concurrency=3)
    threads = [threading.Thread(target=sender.deliver, args=(DELIVERY,)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert most == 3


def test_a_tls_handshake_cut_short_is_retried_like_a_dropped_connection(rsps: responses.RequestsMock) -> None:
    """Only certificate problems are configuration; an interrupted handshake is a passing network fault."""
    rsps.add(responses.POST, URL, body=requests.exceptions.SSLError("EOF occurred in violation of protocol"))
    answer(rsps, 201)

    outcome = make_sender([]).deliver(DELIVERY)

    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.attempts == 2


def test_no_direct_probe_when_a_proxy_carries_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy the sink's port may be unreachable directly; the proxy decides, not the probe."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "")
    sender = Sender(sender_settings(url_out=f"http://127.0.0.1:{port}/movies"), halt=threading.Event())

    sender.check_reachable()

    assert sender.proxies["http"] == "http://proxy.test:3128"


# --- adaptive concurrency ------------------------------------------------------------------------


class FillingSink:
    """A fake sink (a `responses` callback) answering `status`, that holds each request until the requests in
    flight fill the sender's limit of the moment, or no row is left to send. An adaptive limit grows only
    once it has been filled; this way each round trip fills it, however the threads get scheduled."""

    def __init__(self, sender: Sender) -> None:
        self.status = 201
        self._slots = sender.slots
        self._sender = sender
        self._changed = threading.Condition()
        self._rows_left = 0

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        slots = self._slots
        with self._changed:
            self._changed.notify_all()  # one more request in flight
            filled = self._changed.wait_for(lambda: slots.in_flight >= slots.limit or not self._rows_left, GIVE_UP_S)
        assert filled, f"{slots.in_flight} requests in flight never filled a limit of {slots.limit}"
        return self.status, {}, ""

    def deliver(self, rows: int, threads: int = 8) -> None:
        """Deliver `rows` rows from `threads` threads at once, as the run's workers do."""
        self._rows_left = rows

        def work() -> None:
            while True:
                with self._changed:
                    if not self._rows_left:
                        return
                    self._rows_left -= 1
                    self._changed.notify_all()
                self._sender.deliver(DELIVERY)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()


def test_an_adaptive_sender_lowers_its_limit_on_a_429_storm_and_raises_it_on_successes(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ADAPTIVE, successes grow the limit from 4 to CONCURRENCY, a 429 storm cuts it to 1, successes regrow it."""
    sender = make_sender([], concurrency=8, adaptive=True, max_attempts=3)
    record = sender.slots.record
    # The statuses are the subject here: every answer takes as long, whatever the machine's load.
    monkeypatch.setattr(sender.slots, "record", lambda status, _, **options: record(status, 0.001, **options))
    sink = FillingSink(sender)
    rsps.add_callback(responses.POST, URL, callback=sink.answer)
    start = sender.slots.limit

    sink.deliver(400)
    grown = sender.slots.limit
    sink.status = 429
    sink.deliver(40)
    cut = sender.slots.limit
    sink.status = 201
    sink.deliver(400)

    assert (start, grown, cut, sender.slots.limit) == (4, 8, 1, 8)
    summary = sender.slots.describe()
    assert (summary["min"], summary["max"], summary["lowered"]["slow_down"]) == (1, 8, 3)


@pytest.mark.slow
def test_an_adaptive_import_delivers_every_valid_row_exactly_once(
    flaky_sink: RunningSink, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """ADAPTIVE against a sink with 20 % random 503s: every valid film is stored once, as the sink's counters agree."""
    path = tmp_path / "films.csv"
    expected = write(path, 600, seed=11)
    settings = make_settings(csv_in=path, url_out=flaky_sink.movies_url, adaptive=True, workers=1)

    summary = pipeline.run(settings).summary

    fields = ("year", "title", "subject", "actor", "actress", "director")
    films = [tuple(film[name] for name in fields) for film in flaky_sink.stored()]
    assert len(films) == len(set(films)) == summary["delivered"] == len(expected.films)
    assert set(films) == expected.films
    assert flaky_sink.post_counts()["201"] == summary["delivered"]
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["responses"]["503"] > 0
