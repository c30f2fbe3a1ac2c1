"""A deadline for each POST's whole answer, not only for each read of it.

urllib3 applies the read timeout to every read from the socket, so a sink (or a
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

from urllib3.connection import HTTPConnection, HTTPSConnection

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
