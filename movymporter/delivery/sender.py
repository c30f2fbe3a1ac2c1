"""One POST per record through a pooled `requests` session (http.py), retried by `tenacity`.

Here are the retry policy of SPEC section 3 (tenacity strategies: Retry-After or jittered backoff, a stop on
the attempts that count and one when the run gives up), the sink's health across threads, and the Sender.
The session, the sleep and the sink's health are injected (tenacity's own habit),
so tests drive every branch of the retry policy with `responses` and a
recording sleep, without waiting.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from movymporter.delivery.http import Watchdog, make_session, retry_after_seconds
from movymporter.delivery.limits import AdaptiveLimit, Admission
from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.delivery.verdicts import ALIVE_STATUSES, RETRY_STATUSES, verdict_for
from movymporter.errors import SinkUnreachable
from movymporter.settings import Settings

_REASON_LIMIT = 500


class RetryableAnswer(Exception):
    """The sink answered with a status worth another attempt."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


NO_ANSWER_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
TRANSIENT_ERRORS = (*NO_ANSWER_ERRORS, RetryableAnswer)


class SinkHealth:
    """Whether the sink answers at all, across every thread.

    `answers` counts usable answers (a lost increment between threads is harmless:
    it is only ever compared for change). The sink is down once attempts have kept
    failing, with no usable answer in between, for `after` seconds; the run then stops.
    """

    def __init__(self, after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._after = after
        self._clock = clock
        self._failing_since: float | None = None
        self.answers = 0
        self.last_error = ""
        self.down = False

    def answered(self) -> None:
        self.answers += 1
        self._failing_since = None

    def found_down(self, last_error: str) -> None:
        """A sending process or cluster worker found the sink down: so it is for the whole run (the first error
        reported stays)."""
        if not self.down:
            self.down = True
            self.last_error = last_error

    def failed(self, error: str) -> None:
        self.last_error = error
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self._after:
            self.down = True


class Halted(Exception):
    """The run is stopping (or the sink is down): this attempt is not made."""


TLS_CONFIGURATION_ERRORS = frozenset({"certificate verify failed", "hostname mismatch"})
"""TLS failures that retrying cannot mend; a reset handshake is retried like any dropped connection."""


class TlsRefused(Exception):
    """The sink's TLS certificate did not verify: configuration, not a passing network fault."""


class wait_retry_after_or(wait_base):  # lower case, like tenacity's own strategies
    """Wait what a 429/503 Retry-After asks for (capped), else fall back to the given strategy."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self._fallback = fallback
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RetryableAnswer) and error.retry_after is not None:
            return min(error.retry_after, self._cap)
        return self._fallback(retry_state)


class stop_after_counted_attempts(stop_base):  # lower case, like tenacity's own strategies
    """Like tenacity's stop_after_attempt, on the attempts the Outcome (second argument) counts."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome: Outcome = retry_state.args[1]
        return outcome.counted >= self._limit


class stop_when(stop_base):  # lower case, like tenacity's own strategies
    """Stop retrying as soon as the condition holds (the run is stopping, or the sink is down)."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self._condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._condition()


def make_retrying(settings: Settings, give_up: Callable[[], bool], sleep: Callable[[float], object]) -> Retrying:
    """The retry policy of SPEC section 3: transient errors only, exponential backoff with full jitter."""
    return Retrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),  # Halted is not retried: it ends the call
        stop=stop_after_counted_attempts(settings.max_attempts) | stop_when(give_up),
        wait=wait_retry_after_or(
            wait_random_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max),
            cap=settings.retry_after_max,
        ),
        sleep=sleep,
        reraise=True,
    )


class Sender:
    """Delivers one record per call; safe to call from many threads at once."""

    def __init__(
        self,
        settings: Settings,
        *,
        halt: threading.Event,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] | None = None,
        health: SinkHealth | None = None,
    ) -> None:
        self._url = settings.url_out
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._connect_timeout = settings.connect_timeout
        self.session = session or make_session(settings.concurrency)
        # requests reads proxies and CA bundles from the environment on every request, a quarter
        # of its CPU per POST; its own logic runs here once instead. TLS is always verified, and
        # CA_BUNDLE wins over a REQUESTS_CA_BUNDLE in the environment.
        environment = self.session.merge_environment_settings(self._url, {}, None, True, None)
        self.session.trust_env = False
        self.proxies: dict[str, str] = environment["proxies"]
        self.verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle is not None else environment["verify"]
        self._headers: dict[str, str] = {}
        if settings.auth_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.auth_token.get_secret_value()}"
        # Each row copies this prepared POST and sets the body and key: requests' documented
        # prepared-request path, which skips re-preparing the same URL and headers every time.
        self._template = self.session.prepare_request(
            requests.Request("POST", self._url, data=b"", headers=self._headers)
        )
        # Each attempt goes straight to the session's transport adapter, requests' documented lower layer:
        # Session.send adds only hooks, cookies and redirects, which a POST of JSON to one URL does not use,
        # at 20 us a request. A certificate setting means nothing to plain http, where requests would
        # still stat its path on every request.
        self._adapter = self.session.get_adapter(self._url)
        self._post_verify = self.verify if self._url.lower().startswith("https:") else True
        self._halt = halt
        self._max_attempts = settings.max_attempts
        # At most CONCURRENCY requests in flight (fewer while ADAPTIVE holds back); a row waiting out its
        # backoff holds no slot. Public so that the run can report what the limit did.
        self.slots = AdaptiveLimit(settings.concurrency, adaptive=settings.adaptive)
        self.health = health or SinkHealth(settings.unreachable_after)
        self.admission = Admission(settings.concurrency)
        """Threads working on rows; the executor running `deliver` on many threads enters and leaves it."""
        self._retrying = make_retrying(settings, self._giving_up, self.admission.backing_off(sleep or halt.wait))
        self._deadline = Watchdog(settings.connect_timeout + settings.read_timeout)
        """READ_TIMEOUT bounds the whole answer (urllib3 bounds each read), connecting included."""

    def _giving_up(self) -> bool:
        return self._halt.is_set() or self.health.down

    def check_reachable(self) -> None:
        """Fail fast, before reading the file, when nothing listens at URL_OUT (not checked through a proxy)."""
        parts = urlsplit(self._url)
        if requests.utils.select_proxy(self._url, self.proxies):
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=self._connect_timeout).close()
        except OSError as error:
            raise SinkUnreachable(
                f"cannot connect to {parts.hostname}:{port} for {self._url} ({error.strerror or error}); "
                "is the sink running? (bin/setup starts the local one)"
            ) from None

    def deliver(self, delivery: Delivery, *, on_delivered: Callable[[int], None] | None = None) -> Outcome:
        """POST the row, retrying as the policy says. `on_delivered` (the journal) gets the row's line as soon as
        a 2xx is in, while the attempt still holds its request slot: rows answered but not yet journaled are then
        never more than CONCURRENCY."""
        outcome = Outcome(delivery, Verdict.FAILED)
        request = self._template.copy()
        request.body = delivery.body
        request.headers["Content-Length"] = str(len(delivery.body))
        request.headers["Idempotency-Key"] = delivery.key
        try:
            response = self._retrying(self._attempt, request, outcome, on_delivered)
        except TlsRefused as error:
            outcome.verdict = Verdict.REFUSED
            outcome.reason = (
                f"TLS verification failed for {self._url} ({error}); set CA_BUNDLE to the CA that signed it"
            )
            return outcome
        except Halted:
            return self._cut_short(outcome)
        except TRANSIENT_ERRORS as error:
            if self._giving_up() and outcome.counted < self._max_attempts:
                return self._cut_short(outcome)
            outcome.reason = f"gave up after {outcome.attempts} attempts (last: {_describe(error)})"
            outcome.status = error.status if isinstance(error, RetryableAnswer) else None
            return outcome
        outcome.status = response.status_code
        outcome.verdict = verdict_for(response.status_code)
        outcome.reason = self._reason(outcome.verdict, response)
        return outcome

    def _reason(self, verdict: Verdict, response: requests.Response) -> str:
        """What the report says of a row the sink gave a final answer (none for a delivered one)."""
        status = response.status_code
        if verdict is Verdict.DELIVERED:
            return ""
        if verdict is Verdict.REJECTED:
            return f"sink {status}: {_first_line(response.text) or '(no reason given)'}"
        if verdict is Verdict.REFUSED:
            where = f" to {response.headers.get('Location')}" if 300 <= status < 400 else ""
            return f"the sink answered {status} {response.reason}{where} for POST {self._url}"
        return f"sink {status}: {_first_line(response.text) or response.reason}"

    def _attempt(
        self, request: requests.PreparedRequest, outcome: Outcome, on_delivered: Callable[[int], None] | None
    ) -> requests.Response:
        """One POST of the row's prepared request. An attempt that got no answer counts against MAX_ATTEMPTS
        only if the sink answered someone else meanwhile: when nothing answers, the rows in flight wait (up
        to UNREACHABLE_AFTER) for the sink to come back instead of failing one by one."""
        while True:
            if self._giving_up():
                raise Halted
            if self.slots.acquire(timeout=0.1):
                break
        outcome.attempts += 1
        answers_before = self.health.answers
        started = time.monotonic()
        response: requests.Response | None = None
        cut = False
        try:
            try:
                self._deadline.arm()
                try:
                    answer = self._adapter.send(
                        request, timeout=self._timeout, verify=self._post_verify, proxies=self.proxies
                    )
                    answer.content  # noqa: B018 - reads the body, which hands the connection back to the pool
                finally:
                    cut = self._deadline.disarm()
                if cut:
                    # The end of a cut stream can pass for the end of the headers, or of a body without a length.
                    raise requests.exceptions.ReadTimeout("cut at the deadline")
                response = answer
                if on_delivered is not None and 200 <= answer.status_code < 300:
                    try:
                        on_delivered(outcome.delivery.line)
                    except BaseException:
                        self._halt.set()  # no more deliveries that could not be journaled: stop at once
                        raise
            finally:
                self.slots.release()
                self._record(response, time.monotonic() - started)
        except requests.exceptions.SSLError as error:
            if _ssl_reason(error) in TLS_CONFIGURATION_ERRORS:
                raise TlsRefused(_ssl_reason(error)) from None
            self._no_answer(outcome, error, answers_before)
            raise
        except NO_ANSWER_ERRORS as error:
            if cut:
                late = requests.exceptions.ReadTimeout(f"no complete answer within {self._deadline.seconds:g} s")
                self._no_answer(outcome, late, answers_before)
                raise late from None
            self._no_answer(outcome, error, answers_before)
            raise
        outcome.counted += 1
        status = response.status_code
        outcome.statuses.append(status)
        if status in RETRY_STATUSES:
            outcome.last_error = f"HTTP {status}"
            if status in ALIVE_STATUSES:
                self.health.answered()
            else:
                self.health.failed(outcome.last_error)
            raise RetryableAnswer(status, retry_after_seconds(response))
        self.health.answered()
        return response

    def _record(self, response: requests.Response | None, latency_s: float) -> None:
        """Tell the slots how the attempt went (None: no answer), so an adaptive limit can follow the sink."""
        if response is None:
            self.slots.record(None, latency_s)
            return
        status = response.status_code
        retry_after = status in RETRY_STATUSES and "Retry-After" in response.headers
        self.slots.record(status, latency_s, retry_after=retry_after)

    def _cut_short(self, outcome: Outcome) -> Outcome:
        """A row the run stopped retrying (halt, or the sink is down) before the sink gave a final answer."""
        outcome.verdict = Verdict.ABORTED
        why = "the sink stopped answering" if self.health.down else "the run was stopped"
        last = f" (last: {outcome.last_error})" if outcome.last_error else ""
        outcome.reason = f"not delivered: {why}{last}"
        outcome.status = outcome.statuses[-1] if outcome.statuses else None
        return outcome

    def _no_answer(self, outcome: Outcome, error: Exception, answers_before: int) -> None:
        outcome.unanswered += 1
        if self.health.answers != answers_before:
            outcome.counted += 1
        outcome.last_error = _describe(error)
        self.health.failed(outcome.last_error)

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header, but only for URL_OUT's own origin (never leak the token elsewhere)."""
        same_origin = urlsplit(url)[:2] == urlsplit(self._url)[:2]
        return dict(self._headers) if same_origin else {}

    def close(self) -> None:
        self._deadline.close()
        self.session.close()


def _ssl_reason(error: requests.exceptions.SSLError) -> str:
    text = str(error)
    for marker in ("certificate verify failed", "hostname mismatch", "wrong version number"):
        if marker in text:
            return marker
    return "SSL error"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:_REASON_LIMIT]


def _describe(error: BaseException) -> str:
    if isinstance(error, RetryableAnswer):
        return str(error)
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.ConnectionError):
        text = str(error)
        for marker in ("Connection refused", "Connection reset", "Remote end closed", "Name or service not known"):
            if marker in text:
                return marker.lower()
        return "connection error"
    return type(error).__name__
