"""Progress while a run goes on: a tqdm bar on a terminal, a stats line in the log otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

log = logging.getLogger("movymporter")


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
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._interval = 0.25 if bar else interval_s
        self._next = self._started + self._interval
        self._total = total_bytes
        self._bar = (
            tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=stream, dynamic_ncols=True)
            if bar
            else None
        )

    def due(self) -> bool:
        """Whether `update` would redraw now: callers can skip building the counts when it would not."""
        return self._clock() >= self._next

    def update(self, bytes_read: int, counts: dict[str, int], *, force: bool = False) -> None:
        now = self._clock()
        if now < self._next and not force:
            return
        self._next = now + self._interval
        rate = counts["rows"] / max(now - self._started, 1e-9)
        sent = f"valid {counts['valid']:,}" if counts["valid"] else f"delivered {counts['delivered']:,}"
        stats = (
            f"{counts['rows']:,} rows, {rate:,.0f} rows/s, {sent}, "
            f"rejected {counts['rejected']:,}, "
            f"duplicates {counts['duplicates']:,}, retries {counts['retries']:,}"
        )
        if self._bar is not None:
            self._bar.update(bytes_read - self._bar.n)
            self._bar.set_postfix_str(stats, refresh=True)
        else:
            share = f"{bytes_read / self._total:.0%} of the file, " if self._total else ""
            log.info("progress: %s%s", share, stats)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
