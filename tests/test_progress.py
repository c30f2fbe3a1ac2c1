"""Progress: when a redraw is due, and that `update` redraws exactly then."""

from __future__ import annotations

import io
import logging

import pytest

from movymporter.progress import Progress

COUNTS = {"rows": 10, "valid": 8, "delivered": 0, "rejected": 1, "duplicates": 1, "retries": 0}


@pytest.mark.parametrize(
    ("bar", "now", "due"),
    [
        pytest.param(False, 0.0, False, id="log-at-the-start"),
        pytest.param(False, 4.9, False, id="log-before-the-interval"),
        pytest.param(False, 5.0, True, id="log-at-the-interval"),
        pytest.param(True, 0.2, False, id="bar-before-a-quarter-second"),
        pytest.param(True, 0.25, True, id="bar-at-a-quarter-second"),
    ],
)
def test_due_says_whether_update_would_redraw(
    caplog: pytest.LogCaptureFixture, bar: bool, now: float, due: bool
) -> None:
    """due() is true from one interval after the last redraw (the start), and update() redraws just then."""
    times = iter([0.0, now, now])
    progress = Progress(1000, stream=io.StringIO(), bar=bar, interval_s=5.0, clock=lambda: next(times))
    assert progress.due() is due
    with caplog.at_level(logging.INFO, logger="movymporter"):
        progress.update(500, COUNTS)
    progress.close()
    if not bar:
        assert len(caplog.records) == int(due)
