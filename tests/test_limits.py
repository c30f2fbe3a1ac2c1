"""The request slots: a fixed CONCURRENCY, or an AIMD limit that follows the sink's congestion signals.

Most tests drive the limit as a saturated sender would: each round trip fills every slot,
records one answer per slot and releases them, and a fake clock moves by the latency. A
seeded random generator plays the sink's random 503s, so every run is the same.
"""

from __future__ import annotations

import itertools
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from movymporter.delivery.limits import INITIAL_LIMIT, WARMUP, AdaptiveLimit, Admission
from tests.conftest import GIVE_UP_S, wait_until

LATENCY_S = 0.05

Load = Callable[[int], float]
"""A property of the sink as a function of the current limit: a 503 share, or a latency in seconds."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def constant(value: float) -> Load:
    return lambda _limit: value


NO_FAILURES = constant(0.0)
STEADY_LATENCY = constant(LATENCY_S)


def make(ceiling: int = 16, *, adaptive: bool = True) -> tuple[AdaptiveLimit, FakeClock]:
    clock = FakeClock()
    return AdaptiveLimit(ceiling, adaptive=adaptive, clock=clock), clock


def round_trip(
    slots: AdaptiveLimit,
    clock: FakeClock,
    answers: Sequence[int | None],
    *,
    latency_s: float = LATENCY_S,
    retry_after: bool = False,
) -> int:
    """Send as many requests as the answers (all slots must be free), then record and release each."""
    for _ in answers:
        assert slots.acquire(timeout=0)
    for status in answers:
        slots.record(status, latency_s, retry_after=retry_after)
        slots.release()
    clock.now += latency_s
    return slots.limit


def run(
    slots: AdaptiveLimit,
    clock: FakeClock,
    rounds: int,
    *,
    failures: Load = NO_FAILURES,
    latency: Load = STEADY_LATENCY,
    rng: random.Random | None = None,
    jitter: float = 0.3,
) -> list[int]:
    """`rounds` round trips of a saturated sender against a sink that fails `failures(limit)` of its POSTs
    with a random 503 and answers the others in `latency(limit)` (times up to 1 + jitter); the limit after each."""
    rng = rng or random.Random(0)
    limits = []
    for _ in range(rounds):
        limit = slots.limit
        share, seconds = failures(limit), latency(limit)
        for _ in range(limit):
            assert slots.acquire(timeout=0)
        for _ in range(limit):
            status = 503 if rng.random() < share else 201
            slots.record(status, seconds * (1 + jitter * rng.random()))
            slots.release()
        clock.now += seconds
        limits.append(slots.limit)
    return limits


def at_ceiling(slots: AdaptiveLimit, clock: FakeClock, failures: float = 0.0, seed: int = 0) -> None:
    """Warm up and grow to the ceiling, as a run does first."""
    limits = run(slots, clock, 200, failures=constant(failures), rng=random.Random(seed))
    assert limits[-1] == slots.ceiling, limits


# --- a fixed limit ------------------------------------------------------------------------------


def _script(slots: threading.BoundedSemaphore | AdaptiveLimit) -> list[object]:
    """The same calls on a semaphore of 3 and on a fixed limit of 3, and what each returned."""
    seen: list[object] = [slots.acquire(timeout=0) for _ in range(4)]
    slots.release()
    seen.append(slots.acquire(timeout=0))
    seen.append(slots.acquire(timeout=0.01))
    for _ in range(3):
        slots.release()
    try:
        slots.release()
    except ValueError:
        seen.append("ValueError")
    return seen


@pytest.mark.parametrize(
    "make_slots",
    [
        pytest.param(lambda: threading.BoundedSemaphore(3), id="bounded-semaphore"),
        pytest.param(lambda: AdaptiveLimit(3, adaptive=False), id="fixed-adaptive-limit"),
    ],
)
def test_a_fixed_limit_behaves_like_a_bounded_semaphore(
    make_slots: Callable[[], threading.BoundedSemaphore | AdaptiveLimit],
) -> None:
    """Without adaptation the slots answer every call exactly as BoundedSemaphore(CONCURRENCY) does."""
    assert _script(make_slots()) == [True, True, True, False, True, False, "ValueError"]


@pytest.mark.parametrize(
    ("status", "retry_after", "latency_s"),
    [
        pytest.param(429, False, LATENCY_S, id="429-storm"),
        pytest.param(503, True, LATENCY_S, id="retry-after-storm"),
        pytest.param(503, False, LATENCY_S, id="all-503"),
        pytest.param(None, False, LATENCY_S, id="no-answers"),
        pytest.param(201, False, 10.0, id="latency-200-fold"),
        pytest.param(201, False, LATENCY_S, id="all-201"),
    ],
)
def test_a_fixed_limit_never_changes(status: int | None, retry_after: bool, latency_s: float) -> None:
    """Without ADAPTIVE the limit is CONCURRENCY from the start, whatever the sink answers."""
    slots, clock = make(8, adaptive=False)
    run(slots, clock, 5)
    for _ in range(100):
        round_trip(slots, clock, [status] * 8, latency_s=latency_s, retry_after=retry_after)

    assert slots.limit == 8
    assert slots.describe() == {
        "adaptive": False,
        "ceiling": 8,
        "final": 8,
        "min": 8,
        "max": 8,
        "lowered": {"slow_down": 0, "errors": 0, "latency": 0},
        "raised": 0,
    }


# --- bounds and growth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ceiling", "start"),
    [
        pytest.param(1, 1, id="ceiling-1-starts-at-1"),
        pytest.param(3, 3, id="ceiling-3-starts-at-3"),
        pytest.param(4, 4, id="ceiling-4-starts-at-4"),
        pytest.param(16, 4, id="ceiling-16-starts-at-4"),
        pytest.param(512, 4, id="ceiling-512-starts-at-4"),
    ],
)
def test_the_adaptive_limit_starts_modest(ceiling: int, start: int) -> None:
    """The limit starts at min(4, CONCURRENCY), so a shared sink sees the import ramp up."""
    assert AdaptiveLimit(ceiling).limit == start


def test_a_limit_needs_a_slot() -> None:
    """A ceiling of 0 would block every request forever: it is a bug, refused at once."""
    with pytest.raises(ValueError, match="at least one slot"):
        AdaptiveLimit(0)


def test_growth_is_one_per_clean_window_after_the_warmup() -> None:
    """After WARMUP answers at the start limit, each window of `limit` good answers adds exactly one slot."""
    slots, clock = make(16)

    limits = run(slots, clock, 50)

    warmup_rounds = WARMUP // INITIAL_LIMIT
    assert limits[: warmup_rounds - 1] == [INITIAL_LIMIT] * (warmup_rounds - 1)
    growing = limits[warmup_rounds - 1 : warmup_rounds - 1 + 12]
    assert growing == list(range(5, 17))
    assert set(limits[warmup_rounds + 11 :]) == {16}
    assert slots.describe()["raised"] == 12


def test_an_unused_limit_does_not_grow() -> None:
    """Good answers from one request at a time prove nothing about four: the limit stays where it is."""
    slots, clock = make(16)

    for _ in range(1000):
        round_trip(slots, clock, [201])

    assert slots.limit == INITIAL_LIMIT


@pytest.mark.parametrize("ceiling", [1, 3, 16], ids=lambda ceiling: f"ceiling-{ceiling}")
def test_the_limit_stays_within_one_and_concurrency(ceiling: int) -> None:
    """Endless 429s take the limit down to 1 and no further; endless successes up to CONCURRENCY and no further."""
    slots, clock = make(ceiling)
    seen = run(slots, clock, 300)
    for _ in range(100):
        seen.append(round_trip(slots, clock, [429] * slots.limit))
    bottom = slots.limit
    seen += run(slots, clock, 1000)

    assert bottom == 1
    assert min(seen) == 1
    assert max(seen) == ceiling == slots.limit
    assert (slots.describe()["min"], slots.describe()["max"]) == (1, ceiling)


# --- explicit slow-down: 429 and Retry-After -----------------------------------------------------


@pytest.mark.parametrize(
    ("bursts", "retry_after", "expected"),
    [
        pytest.param([[429] * 16], False, [8], id="a-burst-of-429s-halves-once"),
        pytest.param([[503] * 16], True, [8], id="a-burst-with-retry-after-halves-once"),
        pytest.param([[429] + [201] * 15], False, [8], id="a-single-429-halves"),
        pytest.param([[429] * 16, [429] * 8], False, [8, 4], id="a-second-window-halves-again"),
        pytest.param([[429] * 16, [429] * 8, [429] * 4, [429] * 2], False, [8, 4, 2, 1], id="a-storm-ends-at-1"),
    ],
)
def test_a_slow_down_halves_the_limit_at_most_once_per_window(
    bursts: list[list[int]], retry_after: bool, expected: list[int]
) -> None:
    """Answers to requests sent under the old limit cannot cut again: a burst halves the limit once, not to 1."""
    slots, clock = make(16)
    at_ceiling(slots, clock)

    limits = [round_trip(slots, clock, burst, retry_after=retry_after) for burst in bursts]

    assert limits == expected
    assert slots.describe()["lowered"]["slow_down"] == len(expected)


def test_a_cut_admits_no_new_request_until_enough_have_ended() -> None:
    """Right after a cut the requests in flight exceed the limit; new ones wait until they are below it."""
    slots, clock = make(16)
    at_ceiling(slots, clock)
    for _ in range(16):
        assert slots.acquire(timeout=0)

    slots.record(429, LATENCY_S)
    for _ in range(8):
        slots.release()

    assert (slots.limit, slots.in_flight) == (8, 8)
    assert not slots.acquire(timeout=0)
    slots.release()
    assert slots.acquire(timeout=0)


# --- random 503s versus rising errors and latency --------------------------------------------------


@pytest.mark.parametrize(
    ("ceiling", "seed"),
    [
        pytest.param(16, 1, id="concurrency-16-seed-1"),
        pytest.param(16, 2, id="concurrency-16-seed-2"),
        pytest.param(16, 3, id="concurrency-16-seed-3"),
        pytest.param(64, 4, id="concurrency-64-seed-4"),
    ],
)
def test_random_503s_at_a_steady_share_do_not_shrink_the_limit(ceiling: int, seed: int) -> None:
    """The sink's load-independent 20 % of 503s is its baseline: over 50,000 answers the limit stays near the top."""
    slots, clock = make(ceiling)
    rng = random.Random(seed)

    limits = run(slots, clock, 50_000 // ceiling, failures=constant(0.2), rng=rng)

    after_ramp = limits[limits.index(ceiling) :]
    assert min(after_ramp) >= ceiling // 2
    assert statistics.mean(after_ramp) > 0.97 * ceiling


@pytest.mark.parametrize(
    ("failures", "latency", "cause"),
    [
        pytest.param(constant(0.6), STEADY_LATENCY, "errors", id="503-share-rises-to-60-percent"),
        pytest.param(constant(1.0), STEADY_LATENCY, "errors", id="every-attempt-fails"),
        pytest.param(constant(0.2), constant(3 * LATENCY_S), "latency", id="latency-triples"),
    ],
)
def test_a_sustained_rise_shrinks_the_limit(failures: Load, latency: Load, cause: str) -> None:
    """A 503 share well above its baseline, or latency above twice its floor, cuts the limit within a few windows."""
    slots, clock = make(16)
    at_ceiling(slots, clock, failures=0.2)

    limits = run(slots, clock, 5, failures=failures, latency=latency, rng=random.Random(5))

    assert min(limits) <= 11
    assert slots.describe()["lowered"][cause] >= 1


@pytest.mark.parametrize(
    ("failures", "latency", "highest"),
    [
        pytest.param(lambda limit: 0.2 if limit <= 8 else 0.6, STEADY_LATENCY, 10, id="503s-beyond-8-in-flight"),
        pytest.param(constant(0.2), lambda limit: LATENCY_S * max(1, limit / 6), 12, id="sink-saturated-at-6"),
    ],
)
def test_congestion_that_grows_with_the_load_holds_the_limit_down(
    failures: Load, latency: Load, highest: float
) -> None:
    """When the sink's errors or latency grow with the load, the limit settles near where they start, for good."""
    slots, clock = make(32)

    limits = run(slots, clock, 6000, failures=failures, latency=latency, rng=random.Random(6))

    assert statistics.mean(limits[3000:]) < highest
    assert max(limits[3000:]) <= 16


@pytest.mark.parametrize(
    ("failures", "latency"),
    [
        pytest.param(constant(0.6), STEADY_LATENCY, id="lasting-60-percent-503s-become-the-norm"),
        pytest.param(constant(0.2), constant(3 * LATENCY_S), id="lasting-slowness-becomes-the-floor"),
    ],
)
def test_a_lasting_change_the_load_does_not_cause_is_learnt(failures: Load, latency: Load) -> None:
    """A signal that persists even at one request in flight becomes the baseline, and the limit grows back."""
    slots, clock = make(16)
    at_ceiling(slots, clock, failures=0.2)

    limits = run(slots, clock, 1000, failures=failures, latency=latency, rng=random.Random(7))

    assert min(limits) == 1
    assert set(limits[-200:]) == {16}


def test_after_a_429_storm_the_limit_grows_back() -> None:
    """Once the sink answers normally again, additive increase takes the limit from 1 back to CONCURRENCY."""
    slots, clock = make(16)
    at_ceiling(slots, clock)
    while slots.limit > 1:
        round_trip(slots, clock, [429] * slots.limit)

    limits = run(slots, clock, 200)

    assert limits[-1] == 16
    assert all(later - earlier <= 1 for earlier, later in itertools.pairwise(limits))


# --- threads, logging and the summary ------------------------------------------------------------


def test_a_waiting_request_gets_the_slot_another_releases() -> None:
    """acquire() waits for a release instead of failing, and gives up after its timeout."""
    slots = AdaptiveLimit(1, adaptive=False)
    assert slots.acquire(timeout=0)
    started = time.monotonic()
    assert not slots.acquire(timeout=0.02)
    assert time.monotonic() - started >= 0.02  # a lower bound: a busy machine only makes it longer
    assert slots.waiting == 0
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire()))  # no timeout: only a release wakes it
    waiter.start()
    wait_until(lambda: slots.waiting == 1, "the second acquire() never waited")

    slots.release()

    waiter.join(GIVE_UP_S)
    assert not waiter.is_alive(), "the release did not wake the waiting request"
    assert got == [True]
    assert (slots.in_flight, slots.waiting) == (1, 0)


@pytest.mark.parametrize(
    "statuses", [[201], [201, 201, 201, 429], [503, 201, None, 429, 201]], ids=["growing", "cut-often", "mixed"]
)
def test_many_threads_share_the_slots_safely(statuses: list[int | None]) -> None:
    """Thread-safety: 24 threads sharing 8 slots while answers move the limit never hold more than 8, never
    deadlock, and leave the slots consistent (the strict bound under a growing limit is the next test)."""
    slots = AdaptiveLimit(8)
    guard = threading.Lock()
    held = 0
    excess: list[tuple[int, int]] = []
    done = 0

    def work(number: int) -> None:
        nonlocal held, done
        for turn in range(300):
            assert slots.acquire(timeout=GIVE_UP_S)
            with guard:
                held += 1
                if held > slots.ceiling:
                    excess.append((held, slots.limit))
            status = statuses[(number + turn) % len(statuses)]
            with guard:
                held -= 1
            slots.record(status, 0.001)
            slots.release()
        with guard:
            done += 1

    threads = [threading.Thread(target=work, args=(number,)) for number in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=GIVE_UP_S)

    assert done == 24
    assert excess == []
    assert slots.in_flight == 0
    assert 1 <= slots.limit <= 8
    for _ in range(slots.limit):
        assert slots.acquire(timeout=0)
    assert not slots.acquire(timeout=0)


def test_threads_hold_no_more_than_a_growing_limit() -> None:
    """While the limit only grows, the slots held never exceed the limit of the moment."""
    slots = AdaptiveLimit(8)
    guard = threading.Lock()
    held = 0
    worst = 0

    def work() -> None:
        nonlocal held, worst
        for _ in range(200):
            assert slots.acquire(timeout=GIVE_UP_S)
            with guard:
                held += 1
                worst = max(worst, held - slots.limit)
            time.sleep(0)
            with guard:
                held -= 1
            slots.record(201, 0.001)
            slots.release()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=GIVE_UP_S)

    assert not any(thread.is_alive() for thread in threads)
    assert worst <= 0
    assert slots.limit == 8


def test_changes_of_direction_are_logged_at_info_at_most_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """INFO says when the limit turns (not per request, at most once per 10 s); every step is at DEBUG."""
    slots, clock = make(16)
    with caplog.at_level(logging.DEBUG, logger="movymporter"):
        at_ceiling(slots, clock)
        clock.now += 11
        round_trip(slots, clock, [429] * 16)
        round_trip(slots, clock, [429] * 8)
        run(slots, clock, 30)

    info = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    debug = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert info == [
        "adaptive concurrency: 4 -> 5 requests in flight (the sink keeps up)",
        "adaptive concurrency: 16 -> 8 requests in flight (the sink asked to slow down: 429 or Retry-After)",
    ]
    # 11 more steps up to 16, the second cut (same direction, within 10 s), 12 steps back up (within 10 s).
    assert len(debug) == 11 + 1 + 12
    assert debug[11].startswith("adaptive concurrency: 8 -> 4 requests in flight")


def test_describe_tells_where_the_limit_ended_and_why_it_moved() -> None:
    """The summary gets the final, lowest and highest limit and how often each signal cut it."""
    slots, clock = make(16)
    at_ceiling(slots, clock)
    round_trip(slots, clock, [429] * 16)
    round_trip(slots, clock, [429] * 8)
    run(slots, clock, 6, latency=constant(4 * LATENCY_S))

    assert slots.describe() == {
        "adaptive": True,
        "ceiling": 16,
        "final": 2,
        "min": 2,
        "max": 16,
        "lowered": {"slow_down": 2, "errors": 0, "latency": 1},
        "raised": 12,
    }


def test_spare_threads_wait_until_a_backoff_starts_and_leave_when_closed() -> None:
    """Two slots: a third thread waits; a backoff lets it work; closing lets every waiting thread go."""
    admission = Admission(2)
    assert admission.enter()
    assert admission.enter()
    entered: list[bool] = []
    spare = threading.Thread(target=lambda: entered.append(admission.enter()))
    spare.start()
    wait_until(lambda: admission.waiting == 1, "the third thread never reached enter()")
    assert (entered, admission.working) == ([], 2), "a third thread worked with two slots and nobody backing off"

    release_sleep = threading.Event()
    sleeper = threading.Thread(
        target=admission.backing_off(lambda seconds: release_sleep.wait(seconds)), args=(GIVE_UP_S,)
    )
    sleeper.start()
    spare.join(GIVE_UP_S)
    assert entered == [True], "a backoff did not let the spare thread work"
    assert (admission.working, admission.waiting) == (3, 0)

    release_sleep.set()
    sleeper.join(GIVE_UP_S)
    late: list[bool] = []
    waiting = threading.Thread(target=lambda: late.append(admission.enter()))
    waiting.start()
    wait_until(lambda: admission.waiting == 1, "the fourth thread never reached enter()")
    assert (late, admission.working) == ([], 3), "three threads worked on two slots once the backoff had ended"
    admission.close()
    waiting.join(GIVE_UP_S)
    assert late == [False]
    assert admission.waiting == 0
