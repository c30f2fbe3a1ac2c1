"""Run the sink: settings from SINK_* variables, one JSON log line per request on stdout."""

from __future__ import annotations

import json
import logging
import socket
import sys

import uvicorn
from prometheus_client import disable_created_metrics
from pydantic import ValidationError

from movymporter.sink.app import SinkApp
from movymporter.sink.settings import SinkSettings
from movymporter.sink.store import MovieStore, StoreError


def main() -> int:
    try:
        settings = SinkSettings()
    except ValidationError as error:
        for problem in error.errors():
            name = "SINK_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"sink: {name}: {problem['msg']} (got {problem['input']!r})", file=sys.stderr)
        return 2
    # The original service exposes plain counters; the *_created series would only add noise.
    disable_created_metrics()
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as error:
        print(f"sink: cannot listen on {settings.host}:{settings.port}: {error.strerror}", file=sys.stderr)
        return 2
    listener.listen(1024)
    port = listener.getsockname()[1]
    try:
        store = MovieStore(settings.db, unique_keys=settings.idempotency)
    except StoreError as error:
        print(f"sink: SINK_DB: {error}", file=sys.stderr)
        return 2
    app = SinkApp(settings, store)
    announcement = {"event": "listening", **settings.model_dump(), "port": port}
    print(json.dumps(announcement), flush=True)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=5,
    )
    if settings.reset_rate:
        # An answer cut off on purpose is not a server error worth a traceback in the log.
        logging.getLogger("uvicorn.error").addFilter(
            lambda record: "without completing response" not in record.getMessage()
        )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
