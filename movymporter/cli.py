"""The command line: argv -> Settings -> pipeline.run() -> exit status.

This is the one place where the project's exceptions become messages and exit
statuses; everything below it raises and returns.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from movymporter import __version__, pipeline
from movymporter.errors import ConfigError, InputError, MovymporterError, SinkUnreachable
from movymporter.report import render_summary
from movymporter.settings import Settings, exposed_secrets, load_settings, unknown_env_file_keys
from movymporter.status import ExitStatus

log = logging.getLogger("movymporter")

EXIT_STATUS_BY_ERROR: tuple[tuple[type[MovymporterError], ExitStatus], ...] = (
    (ConfigError, ExitStatus.USAGE),
    (InputError, ExitStatus.USAGE),
    (SinkUnreachable, ExitStatus.STOPPED),
)

DESCRIPTION = """\
Import a movie CSV export into a web service that takes one JSON film per POST.
Rows are validated, duplicates skipped, deliveries retried; what was not delivered
goes to REPORT_DIR/rejected.csv with the reason, and the sink's /metrics are
checked before and after to prove what arrived.

Every option can also be set in .env or the environment under the name in
brackets; a flag wins over the environment, which wins over .env."""

EPILOG = """\
exit status: 0 every row delivered or deliberately skipped; 1 some rows rejected
or failed; 2 bad setting or unusable input (nothing sent); 3 run stopped
(STOP_ON_ERRORS, sink unreachable, 401/403/404/405); 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    """Flags from the settings themselves (help, default, metavar), then the few that only the CLI has."""
    parser = argparse.ArgumentParser(
        prog="python -m movymporter",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        if not extra["flag"]:
            continue
        flag, *metavar = str(extra["flag"]).split()
        default = "" if field.default in (None, False) else f"; default {_shown(field.default)}"
        help_text = f"{field.description}{default} [{name.upper()}]"
        if metavar:
            parser.add_argument(flag, dest=name, metavar=metavar[0], help=help_text)
        else:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
    add = parser.add_argument
    add("--env-file", metavar="PATH", help="settings file to read; default .env when it exists")
    add("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    add("--traceback", action="store_true", help="show the Python traceback of an error")
    add("--version", action="version", version=f"movymporter {__version__}")
    return parser


def _shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    ignored = {"env_file", "no_progress", "traceback"}
    return {name: value for name, value in vars(args).items() if name not in ignored and value is not None}


class _Interrupts:
    """First Ctrl-C (or SIGTERM): stop reading, drain, report. Second: quit at once."""

    def __init__(self, halt: threading.Event) -> None:
        self.halt = halt
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.halt.set()
        log.warning(
            "%s: finishing the requests in flight and writing the reports (Ctrl-C again to quit at once)",
            signal.Signals(signum).name,
        )

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s", stream=sys.stderr, force=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env_file = Path(args.env_file or ".env")
    show_traceback = args.traceback
    try:
        if args.env_file and not env_file.is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        settings = load_settings(_overrides(args), env_file)
        _configure_logging(settings.log_level)
        show_traceback = show_traceback or settings.log_level == "DEBUG"
        for key in unknown_env_file_keys(env_file):
            log.warning("%s: %s is not a setting of movymporter (typo?); it is ignored", env_file, key)
        for key in exposed_secrets(env_file):
            log.warning("%s holds %s and other users can read it: chmod 600 %s", env_file, key, env_file)
        return _run(settings, progress_bar=sys.stderr.isatty() and not args.no_progress)
    except MovymporterError as error:
        if show_traceback:
            traceback.print_exc()
        print(f"movymporter: error: {error}", file=sys.stderr)
        for kind, status in EXIT_STATUS_BY_ERROR:
            if isinstance(error, kind):
                return status
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        # Second Ctrl-C: quit now, without waiting for the threads still in a request. The resume
        # state is consistent (SQLite commits are atomic) and every 2xx is in a journal; rows whose
        # answer had not come are sent again by the next run under the same idempotency keys.
        print("movymporter: interrupted at once; the next run resumes from the saved state", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ExitStatus.INTERRUPTED)


def _run(settings: Settings, *, progress_bar: bool) -> int:
    halt = threading.Event()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    _Interrupts(halt).install()
    try:
        # While a bar is drawn, log records go through tqdm so they print above it.
        with logging_redirect_tqdm() if progress_bar else contextlib.nullcontext():
            result = pipeline.run(settings, halt=halt, progress_bar=progress_bar)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(render_summary(result.summary))
    return result.exit_status
