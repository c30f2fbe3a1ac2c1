"""How many requests may be in flight: CONCURRENCY, or with ADAPTIVE an AIMD limit below it.

A shared production sink must not be overloaded by one import, yet the sink fails about one POST in five with a
503 at random, whatever the load. So the limit reacts to signs of *congestion*, never to the random failures
themselves. After each attempt (`AdaptiveLimit.record`), the first rule that holds applies:

1. **Slow down**, x0.5: a 429, or any answer carrying Retry-After. The sink says so itself.
2. **Errors rising**, x0.7: the recent share of failed attempts (408, 502, 503, 504, or no answer at all; a
   moving average over about max(32, limit) attempts, a round trip's worth) exceeds the usual share by more than
   max(0.1, 4 standard deviations of the recent average's random wobble, were failures independent at the usual
   share). At a usual 20 % and a limit up to 32 that bound is 40 %; larger limits average more answers, wobble
   less, and the bound tends to 30 %.
3. **Latency rising**, x0.7: the fastest of the last 16 good answers took more than twice the fastest of any
   such window so far, plus 5 ms. A minimum, not a mean: congestion (a queue at the sink) slows every request,
   while the client's own hiccups (a thread not scheduled on a busy machine, a garbage collection) slow only
   some. Only good answers are timed: the sink answers its random 503s without doing the work.
4. **Additive increase**, +1: after as many good answers (answered, below 500, neither 408 nor 429) as the
   limit, provided the requests in flight filled the limit since the last increase (an unused limit proves
   nothing about the sink) and a latency window has filled since the last cut (a cut is given time to show
   whether it helped).

Random 503s at their usual share neither grow nor cut the limit. In seeded simulations at 20 % (ten runs of
300,000 attempts, CONCURRENCY 16), the limit spent about 99 % of the time at 16 and rare false cuts never took
it below 9 (at CONCURRENCY 64, never below 36); a sudden rise to 60 % cut it within 50 attempts, a rise to 40 %
within 200.

A cut happens at most once per window: the answers to the requests sent under the old limit (as many as that
limit) still arrive after it and say nothing about the new one, so the next `old limit` answers cannot cut
again. One burst of 429s therefore halves the limit once rather than collapsing it to 1. A cut spends the
evidence behind it: the recent error share restarts from the usual one, the latency window from new answers.

The baselines must describe the sink at rest, not the load the importer puts on it:

- The limit stays at its modest start, min(4, CONCURRENCY), for the first 128 attempts; their plain mean is the
  first usual error share.
- After that, the usual share is a slow moving average (about 1,000 attempts) that learns only at a *calm limit*
  (one that has had a full window of good answers with the recent share at most halfway to the bound; an error
  cut lowers it to the new limit), and only while the recent share is itself at most halfway. Errors that grow
  with the load thus never become the norm: the limit settles where they start.
- A signal that persists even at a limit of 1 cannot be the importer's doing: it becomes the new baseline (usual
  share or latency floor), and the limit grows again.

The limit stays within [1, CONCURRENCY]. Without ADAPTIVE it is CONCURRENCY, fixed, and the slots behave exactly
like a `threading.BoundedSemaphore(CONCURRENCY)`; record() returns at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("movymporter")

INITIAL_LIMIT = 4
"""A modest start: a shared sink sees the import ramp up instead of arriving all at once."""
SLOW_DOWN_FACTOR = 0.5
"""Cut on an explicit request to slow down (429, Retry-After)."""
BACKOFF_FACTOR = 0.7
"""Cut on inferred congestion (a rising error share or latency): gentler, as the inference may be wrong."""
SLOW_DOWN_STATUSES = frozenset({429})
ERROR_STATUSES = frozenset({408, 502, 503, 504})
"""Answers that count as failed attempts in the error share, like an attempt without an answer."""

WARMUP = 128
"""Answers at the initial limit before it may grow and before the error share is judged."""
ERROR_RECENT_WINDOW = 32
"""The recent error share averages about max(this, limit) attempts."""
ERROR_USUAL_ALPHA = 1 / 1024
"""The usual error share averages about 1,000 attempts (where it may learn at all)."""
ERROR_MARGIN = 0.1
"""Least rise of the error share that counts, so a few failures from a near-perfect sink do not."""
ERROR_Z = 4.0
"""Standard deviations of the recent average's random wobble that a rise must exceed."""

LATENCY_WINDOW = 16
"""Good answers per latency window; the fastest of each window is what is compared."""
LATENCY_FACTOR = 2.0
LATENCY_SLACK_S = 0.005
"""Latency rises this far above twice the floor before it counts: on a sink that answers in a millisecond
or two, the rest is the client's own scheduling, not a sink in trouble."""

LOG_INTERVAL_S = 10.0
"""At most one INFO line per this many seconds; every change is logged at DEBUG."""

SLOW_DOWN = "slow_down"
ERRORS = "errors"
LATENCY = "latency"

_LogLine = tuple[int, str, tuple[object, ...]]
"""A log record to write once the lock is released: level, format, arguments."""


class AdaptiveLimit:
    """Request slots for many sender threads: acquire() before a POST, release() after, record() its outcome.

    Thread-safe: one lock guards the slots and the controller, whose work per answer is a few
    arithmetic operations. The clock only paces the log lines; tests inject one.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        adaptive: bool = True,
        initial: int = INITIAL_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1 or initial < 1:
            raise ValueError("the limit needs at least one slot")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self._clock = clock
        self._ready = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._waiting = 0
        self._limit = min(initial, ceiling) if adaptive else ceiling
        self._lowest = self._highest = self._limit
        self._lowered = {SLOW_DOWN: 0, ERRORS: 0, LATENCY: 0}
        self._raised = 0
        self._answers = 0
        # Additive increase: good answers since the last change, and whether the limit was filled.
        self._good = 0
        self._filled = False
        # Answers still to come from before the last cut; no further cut until they are in.
        self._hold = 0
        # Error share: moving averages of 1 (failed attempt) or 0, recent and usual; the highest calm limit.
        self._errors_recent = 0.0
        self._errors_usual = 0.0
        self._calm_limit = self._limit
        # Latency: the fastest answer of the window being filled and of the last full one (None after
        # a cut, until a new window is full), and the floor: the lowest of those.
        self._window_size = 0
        self._window_fastest = math.inf
        self._fastest: float | None = None
        self._floor = math.inf
        # Logging: when the last INFO line was written, and which way it said the limit went.
        self._logged_at = -math.inf
        self._logged_direction = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held now (more than `limit` right after a cut, until enough requests end)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """acquire() calls waiting for a slot now (what a test checks before it releases one)."""
        with self._ready:
            return self._waiting

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting up to `timeout` seconds (None: as long as it takes); False if none came free."""
        with self._ready:
            if not self._has_room():
                self._waiting += 1
                try:
                    if not self._ready.wait_for(self._has_room, timeout):
                        return False
                finally:
                    self._waiting -= 1
            self._in_flight += 1
            if self._in_flight >= self._limit:
                self._filled = True
            return True

    def release(self) -> None:
        """Give a slot back; like BoundedSemaphore, releasing more than was acquired is a bug (ValueError)."""
        with self._ready:
            if self._in_flight == 0:
                raise ValueError("AdaptiveLimit released more often than acquired")
            self._in_flight -= 1
            if self._in_flight < self._limit:
                self._ready.notify()

    def record(self, status: int | None, latency_s: float, *, retry_after: bool = False) -> None:
        """Learn from one attempt: its status (None: no answer), how long it took, whether it had Retry-After."""
        if not self.adaptive:
            return
        with self._ready:
            line = self._learn(status, latency_s, retry_after)
        if line is not None:
            level, text, args = line
            log.log(level, text, *args)

    def describe(self) -> dict[str, Any]:
        """What the limit did during the run, for the summary: where it ended, its range, and why it moved."""
        with self._ready:
            return {
                "adaptive": self.adaptive,
                "ceiling": self.ceiling,
                "final": self._limit,
                "min": self._lowest,
                "max": self._highest,
                "lowered": dict(self._lowered),
                "raised": self._raised,
            }

    def _has_room(self) -> bool:
        return self._in_flight < self._limit

    def _learn(self, status: int | None, latency_s: float, retry_after: bool) -> _LogLine | None:
        """The rules of the module docstring, in order, for one attempt; returns the log line to write, if any."""
        self._answers += 1
        if self._hold:
            self._hold -= 1
        failed = status is None or status in ERROR_STATUSES
        good = status is not None and status < 500 and not failed and status not in SLOW_DOWN_STATUSES
        self._average_errors(failed)
        if good:
            self._time(latency_s)
        if status in SLOW_DOWN_STATUSES or retry_after:
            return self._cut(SLOW_DOWN_FACTOR, SLOW_DOWN)
        if self._errors_recent > self._errors_bound():
            return self._cut(BACKOFF_FACTOR, ERRORS)
        if self._latency_rising():
            return self._cut(BACKOFF_FACTOR, LATENCY)
        return self._grow() if good else None

    def _average_errors(self, failed: bool) -> None:
        """Move both averages; the usual share only as the module docstring's baselines allow."""
        value = 1.0 if failed else 0.0
        self._errors_recent += (value - self._errors_recent) * max(self._recent_alpha(), 1 / self._answers)
        if self._answers <= WARMUP:
            self._errors_usual += (value - self._errors_usual) / self._answers
        elif self._limit <= self._calm_limit and self._errors_calm():
            self._errors_usual += (value - self._errors_usual) * ERROR_USUAL_ALPHA

    def _recent_alpha(self) -> float:
        return 1 / max(ERROR_RECENT_WINDOW, self._limit)

    def _errors_calm(self) -> bool:
        """Whether the recent error share is at most halfway from the usual share to the bound."""
        return self._errors_recent <= (self._errors_usual + self._errors_bound()) / 2

    def _errors_bound(self) -> float:
        """The recent error share above which errors are rising (never reached during the warm-up)."""
        if self._answers < WARMUP:
            return math.inf
        usual = self._errors_usual
        # The standard deviation of a moving average (weight alpha) of independent 0/1 draws.
        alpha = self._recent_alpha()
        wobble = math.sqrt(usual * (1 - usual) * alpha / (2 - alpha))
        return usual + max(ERROR_MARGIN, ERROR_Z * wobble)

    def _time(self, latency_s: float) -> None:
        self._window_fastest = min(self._window_fastest, latency_s)
        self._window_size += 1
        if self._window_size == LATENCY_WINDOW:
            self._fastest = self._window_fastest
            self._floor = min(self._floor, self._fastest)
            self._window_size = 0
            self._window_fastest = math.inf

    def _latency_rising(self) -> bool:
        return self._fastest is not None and self._fastest > LATENCY_FACTOR * self._floor + LATENCY_SLACK_S

    def _cut(self, factor: float, cause: str) -> _LogLine | None:
        if self._hold:
            return None
        before = self._limit
        if before == 1 and cause == ERRORS:
            # Nothing left to take back: what the sink does at one request in flight is its own doing.
            self._errors_usual = self._errors_recent
        elif before == 1 and cause == LATENCY and self._fastest is not None:
            self._floor = self._fastest
        why = self._why(cause)
        self._limit = max(1, int(before * factor))
        self._hold = before
        self._good = 0
        self._filled = False
        self._errors_recent = self._errors_usual
        self._window_size = 0
        self._window_fastest = math.inf
        self._fastest = None
        if self._limit == before:
            return None
        self._lowered[cause] += 1
        if cause == ERRORS:
            self._calm_limit = min(self._calm_limit, self._limit)
        self._lowest = min(self._lowest, self._limit)
        return self._changed(-1, before, why)

    def _why(self, cause: str) -> str:
        if cause == SLOW_DOWN:
            return "the sink asked to slow down: 429 or Retry-After"
        if cause == ERRORS:
            return f"failed attempts rose to {self._errors_recent:.0%} from a usual {self._errors_usual:.0%}"
        fastest = self._fastest or 0.0
        return f"the fastest answers took {fastest * 1000:.0f} ms, up from {self._floor * 1000:.0f} ms"

    def _grow(self) -> _LogLine | None:
        self._good = min(self._good + 1, self._limit)
        if self._answers < WARMUP or self._fastest is None or self._good < self._limit:
            return None
        if self._errors_calm():
            self._calm_limit = max(self._calm_limit, self._limit)
        if not self._filled or self._limit >= self.ceiling:
            return None
        before = self._limit
        self._limit += 1
        self._good = 0
        self._filled = False
        self._raised += 1
        self._highest = max(self._highest, self._limit)
        self._ready.notify()
        return self._changed(+1, before, "the sink keeps up")

    def _changed(self, direction: int, before: int, why: str) -> _LogLine:
        """INFO when the limit turns (or reaches a bound), at most once per LOG_INTERVAL_S; else DEBUG."""
        now = self._clock()
        turned = direction != self._logged_direction or self._limit in (1, self.ceiling)
        level = logging.DEBUG
        if turned and now - self._logged_at >= LOG_INTERVAL_S:
            level = logging.INFO
            self._logged_at = now
            self._logged_direction = direction
        return level, "adaptive concurrency: %d -> %d requests in flight (%s)", (before, self._limit, why)


class Admission:
    """How many threads work at once: as many as requests may be in flight, plus one for each thread
    waiting out a backoff (it holds a row but no request slot, which another row can use meanwhile).

    The threads beyond that wait here rather than on the request slots. Waiting on the slots, a spare
    thread would be woken by every request that ends, only to see the slot taken by the thread that
    ended it: a thread switch per row for nothing. Here spare threads sleep until a backoff starts.
    """

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._ready = threading.Condition()
        self._working = 0
        self._backing_off = 0
        self._waiting = 0
        self._closed = False

    @property
    def working(self) -> int:
        """Threads working on a row now."""
        with self._ready:
            return self._working

    @property
    def waiting(self) -> int:
        """Threads waiting in enter() for room to work now."""
        with self._ready:
            return self._waiting

    def enter(self) -> bool:
        """Wait for room to work on a row; False once closed (no rows left, or the run is stopping)."""
        with self._ready:
            self._waiting += 1
            try:
                while not self._closed and self._working >= self._slots + self._backing_off:
                    self._ready.wait()
            finally:
                self._waiting -= 1
            if self._closed:
                return False
            self._working += 1
            return True

    def leave(self) -> None:
        """Done with a row. No thread is woken: the one leaving takes the next row itself, if any."""
        with self._ready:
            self._working -= 1

    def backing_off(self, sleep: Callable[[float], object]) -> Callable[[float], object]:
        """`sleep`, letting one more thread work while it lasts."""

        def sleep_aside(seconds: float) -> object:
            with self._ready:
                self._backing_off += 1
                self._ready.notify()
            try:
                return sleep(seconds)
            finally:
                with self._ready:
                    self._backing_off -= 1

        return sleep_aside

    def close(self) -> None:
        """Let every waiting thread go (enter() answers False from now on)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
