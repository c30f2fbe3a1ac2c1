"""Progress while a run goes on: a tqdm bar on a terminal, a stats line in the log otherwise.

On a terminal the counts come first and the bar takes what is left of the line:
rows/s, delivered, rejected and retries must stay readable in 80 columns, so a
narrow terminal gets the counts in short form (12.3k) and no time estimate.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

log = logging.getLogger("movymporter")

_BAR_MIN = 10
"""Columns kept for the bar itself."""
_ESTIMATE = " [{elapsed}<{remaining}]"


def terminal_columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, io.UnsupportedOperation):
        return 80


def short(value: float) -> str:
    """A count in at most five characters: 999, 12.3k, 4.56M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{scaled:.3g}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


class Progress:
    """Call `update` as often as you like; it redraws at most a few times a second."""

    def __init__(
        self,
        total_bytes: int,
        *,
        stream: IO[str],
        bar: bool,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._interval = 0.25 if bar else interval_s
        self._next = self._started + self._interval
        self._total = total_bytes
        self._columns = columns or (lambda: terminal_columns(stream))
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=stream) if bar else None

    def due(self) -> bool:
        """Whether `update` would redraw now: callers can skip building the counts when it would not."""
        return self._clock() >= self._next

    def update(self, bytes_read: int, counts: dict[str, int], *, force: bool = False) -> None:
        now = self._clock()
        if now < self._next and not force:
            return
        self._next = now + self._interval
        rate = counts["rows"] / max(now - self._started, 1e-9)
        if self._bar is None:
            share = f"{bytes_read / self._total:.0%} of the file, " if self._total else ""
            log.info("progress: %s%s", share, _long_stats(counts, rate))
            return
        width = self._columns()
        stats = _long_stats(counts, rate)
        estimate = _ESTIMATE
        if len(stats) + len("100%||") + len(" [00:00:00<00:00:00]") + _BAR_MIN > width:
            stats, estimate = _short_stats(counts, rate), ""
        self._bar.ncols = width
        self._bar.bar_format = "{percentage:3.0f}%|{bar}| {desc}" + estimate
        self._bar.update(bytes_read - self._bar.n)
        self._bar.set_description_str(stats, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _long_stats(counts: dict[str, int], rate: float) -> str:
    sent = f"valid {counts['valid']:,}" if counts["valid"] else f"delivered {counts['delivered']:,}"
    return (
        f"{counts['rows']:,} rows, {rate:,.0f} rows/s, {sent}, rejected {counts['rejected']:,}, "
        f"duplicates {counts['duplicates']:,}, retries {counts['retries']:,}"
    )


def _short_stats(counts: dict[str, int], rate: float) -> str:
    sent = f"valid {short(counts['valid'])}" if counts["valid"] else f"delivered {short(counts['delivered'])}"
    return (
        f"{short(counts['rows'])} rows {short(rate)}/s {sent} rejected {short(counts['rejected'])} "
        f"retries {short(counts['retries'])}"
    )
