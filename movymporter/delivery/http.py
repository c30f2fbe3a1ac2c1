"""The HTTP side of a POST: a pooled `requests` session, and a deadline for each POST's whole answer.

The session keeps one keep-alive connection per request in flight and never retries by itself (the sender's
policy does); its adapter remembers what it works out per URL, since an import sends every row to one.

The deadline: urllib3 applies the read timeout to every read from the socket, so a sink (or a
proxy in front of it) that trickles a byte every few seconds keeps a request,
and the thread waiting on it, forever. Here each attempt is armed with a
deadline; the connection that carries it makes itself known when the request
starts (the pool's connection class, `Watched*Connection`), and a watchdog
thread shuts down the socket of an attempt still unanswered past its deadline.
The attempt then ends with a connection error, which the retry policy handles
like any other, and urllib3 drops that connection from its pool.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

from movymporter import __version__

_current = threading.local()
"""The watchdog of the attempt the current thread is making, if any."""


class Watchdog:
    """Cuts the attempts of one sender that run past their deadline; `close()` stops its thread.

    The clock says when a deadline has passed; a test injects one, and a tick too long to come, and calls
    `cut_overdue()` itself.
    """

    def __init__(
        self, seconds: float, *, clock: Callable[[], float] = time.monotonic, tick_s: float | None = None
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._tick_s = max(0.05, min(0.5, seconds / 20)) if tick_s is None else tick_s
        """How often the watchdog looks: a cut comes at most this late."""
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, HTTPConnection | None]] = {}
        """Attempts in progress, by thread: their deadline and, once the request started, its connection."""
        self._cut: set[int] = set()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        """An attempt of the current thread starts: its answer must be complete within `seconds`."""
        thread = threading.get_ident()
        with self._lock:
            self._armed[thread] = (self._clock() + self.seconds, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="movymporter-deadline", daemon=True)
                self._thread.start()
        _current.watchdog = self

    def disarm(self) -> bool:
        """The current thread's attempt is over (answered or failed); whether the deadline cut it."""
        _current.watchdog = None
        thread = threading.get_ident()
        with self._lock:
            del self._armed[thread]
            if thread in self._cut:
                self._cut.remove(thread)
                return True
        return False

    def close(self) -> None:
        self._closed.set()

    def _attach(self, connection: HTTPConnection) -> None:
        thread = threading.get_ident()
        with self._lock:
            if thread in self._armed:
                self._armed[thread] = (self._armed[thread][0], connection)

    def cut_overdue(self) -> int:
        """Shut down the socket of every attempt past its deadline (what the watchdog's thread does at each
        tick); how many it cut."""
        now = self._clock()
        cut = 0
        with self._lock:
            for thread, (deadline, connection) in self._armed.items():
                sock = connection.sock if connection is not None else None
                if deadline <= now and sock is not None and thread not in self._cut:
                    self._cut.add(thread)
                    cut += 1
                    with contextlib.suppress(OSError):  # closed meanwhile: nothing left to cut
                        sock.shutdown(socket.SHUT_RDWR)
        return cut

    def _watch(self) -> None:
        while not self._closed.wait(self._tick_s):
            self.cut_overdue()


class _Watched:
    """Makes a connection known to the watchdog of the attempt that sends a request on it."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog._attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class ReusingAdapter(HTTPAdapter):
    """requests' HTTP adapter, remembering which connection pool and request target serve a URL.

    The stock adapter parses the URL, looks for a proxy and rebuilds the pool key on every request
    (about 40 us of the 270 us a POST costs); an import sends every row to one URL. The answers are
    kept per URL, TLS setting and proxies (a pool the pool manager drops stays usable: urllib3 does not
    close it). These are the two methods requests documents as the ones to override in a subclass."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pools: dict[tuple[object, ...], Any] = {}
        self._targets: dict[tuple[object, ...], str] = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: dict[str, str] | None = None,
        cert: Any = None,
    ) -> Any:
        key = (request.url, verify, cert, tuple(proxies.items()) if proxies else ())
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, proxies, cert)
            # Connections that tell a Watchdog which socket an attempt uses (urllib3's documented attribute).
            https = pool.ConnectionCls is HTTPSConnection
            pool.ConnectionCls = WatchedHTTPSConnection if https else WatchedHTTPConnection
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: dict[str, str] | None) -> str:
        key = (request.url, tuple(proxies.items()) if proxies else ())
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = super().request_url(request, proxies)
        return target


def make_session(concurrency: int) -> requests.Session:
    """A session whose pool keeps one keep-alive connection per request in flight."""
    session = requests.Session()
    adapter = ReusingAdapter(pool_connections=2, pool_maxsize=concurrency, pool_block=True, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Content-Type": "application/json", "User-Agent": f"movymporter/{__version__}"})
    return session


def retry_after_seconds(response: requests.Response) -> float | None:
    """The wait a Retry-After header asks for (seconds or an HTTP date), or None when there is none to honour."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(Retry(0).parse_retry_after(value)))
    except (InvalidHeader, ValueError, OverflowError):
        return None
