"""The sink as a plain ASGI application.

Plain ASGI rather than a framework: the service has five routes and one hot
path, and the benchmarks need the sink to cost as little CPU per request as
possible (see README, "The sink").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from movymporter.sink.contract import Rejected, accept
from movymporter.sink.settings import SinkSettings
from movymporter.sink.store import MovieStore

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXTRAS_PREFIX = "/_sink/"
RESET = 0
"""Status recorded for an answer the sink cut off on purpose (SINK_RESET_RATE)."""


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class SinkMetrics:
    """Prometheus counters in a registry of this app's own (no process-wide state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.post = Counter("sink_post", "POST requests by response status", ["status"], registry=self.registry)
        self.get = Counter("sink_get", "GET requests by response status", ["status"], registry=self.registry)
        self.stored = Counter("sink_stored", "films stored", registry=self.registry)
        self.repeats = Counter(
            "sink_idempotent_repeats", "POSTs answered 201 without storing: key seen before", registry=self.registry
        )
        self._post_children: dict[int | str, Any] = {}

    def count_post(self, status: int | str) -> None:
        child = self._post_children.get(status)
        if child is None:
            child = self._post_children[status] = self.post.labels(status=str(status))
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SinkApp:
    """Routes: POST anything, GET anything, GET /metrics, GET /_sink/{stats,movies}."""

    def __init__(
        self,
        settings: SinkSettings,
        store: MovieStore,
        *,
        log: TextIO = sys.stdout,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = SinkMetrics()
        self._log = log
        self._rng = rng or random.Random(settings.seed)
        self._clock = clock
        self._latency_s = settings.latency_ms / 1000.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        record: dict[str, Any] = {"method": method, "path": path}
        if method == "POST":
            status = await self._post(scope, receive, send, record)
        elif method == "GET":
            status = await self._get(scope, send)
        else:
            status = await _respond(send, 405, b"method not allowed\n", headers=[(b"allow", b"GET, POST")])
        record["status"] = status if status != RESET else "reset"
        record["ms"] = round((time.perf_counter() - started) * 1000, 3)
        self._write_log(record)

    async def _post(self, scope: Scope, receive: Receive, send: Send, record: dict[str, Any]) -> int:
        settings = self.settings
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        slow = bool(settings.slow_rate) and self._rng.random() < settings.slow_rate
        if self._rng.random() < settings.failure_rate:
            extra = [(b"retry-after", settings.retry_after.encode())] if settings.retry_after else []
            return await self._answer(send, settings.failure_status, b"", headers=extra)
        key = _header(scope, b"idempotency-key")
        if key is not None:
            record["key"] = key
        try:
            body = await self._read_body(scope, receive)
        except _BodyTooLarge:
            return await self._answer(send, 413, b"request body too large\n", close=True)
        except TimeoutError:
            return await self._answer(send, 408, b"request body not received in time\n", close=True)
        except _ClientGone:
            self.metrics.count_post(499)
            return 499
        record["bytes"] = len(body)
        if slow:
            # Held after the body is in: the film is still processed and stored when the client
            # has given up meanwhile, which is what makes a timed-out POST dangerous to retry.
            record["slow"] = True
            await asyncio.sleep(settings.slow_ms / 1000.0)
        try:
            film = accept(body, self._clock().year)
        except Rejected as rejected:
            reason = str(rejected)
            record["reason"] = reason
            return await self._answer(send, 400, reason.encode("utf-8", errors="replace") + b"\n")
        if self.store.add(film, key):
            self.metrics.stored.inc()
        else:
            self.metrics.repeats.inc()
            record["repeat"] = True
        if settings.reset_rate and self._rng.random() < settings.reset_rate:
            # Stored, but the answer is cut off: the client sees a broken connection, as when a
            # proxy or the network drops it, and must not store the film twice by retrying.
            self.metrics.count_post("reset")
            await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"64")]})
            await send({"type": "http.response.body", "body": b"cut", "more_body": True})
            return RESET
        return await self._answer(send, 201, b"")

    async def _answer(self, send: Send, status: int, body: bytes, **options: Any) -> int:
        """Answer a POST, counted first: a scrape right after the answer already sees it."""
        self.metrics.count_post(status)
        return await _respond(send, status, body, **options)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.settings.read_timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

    async def _get(self, scope: Scope, send: Send) -> int:
        path = scope["path"]
        if path == "/metrics":
            return await _respond(send, 200, self.metrics.exposition(), content_type=CONTENT_TYPE_LATEST.encode())
        if path.startswith(EXTRAS_PREFIX):
            return await self._extras(scope, send, path[len(EXTRAS_PREFIX) :])
        self.metrics.get.labels(status="200").inc()
        return await _respond(send, 200, b"[]", content_type=b"application/json")

    async def _extras(self, scope: Scope, send: Send, name: str) -> int:
        if name == "stats":
            payload: object = {"stored": self.store.count()}
        elif name == "movies":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            try:
                after = int(query.get("after", ["0"])[0])
                limit = min(int(query.get("limit", ["1000"])[0]), 10_000)
            except ValueError:
                return await _respond(send, 400, b"after and limit must be integers\n")
            payload = self.store.page(after, limit)
        else:
            return await _respond(send, 404, b"unknown sink endpoint\n")
        return await _respond(send, 200, json.dumps(payload).encode(), content_type=b"application/json")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _write_log(self, record: dict[str, Any]) -> None:
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), **record}
        self._log.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._log.flush()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> int:
    response_headers = [(b"content-length", str(len(body)).encode())]
    if body:
        response_headers.append((b"content-type", content_type))
    if close:
        response_headers.append((b"connection", b"close"))
    response_headers.extend(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
    return status
