"""Progress: when a redraw is due, and that `update` redraws exactly then."""

from __future__ import annotations

import io
import logging

import pytest

from movymporter.progress import Progress, short

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


BIG = {"rows": 1_234_567, "valid": 0, "delivered": 1_200_000, "rejected": 30_000, "duplicates": 400, "retries": 204_321}


def drawn(columns: int, counts: dict[str, int]) -> str:
    """The last line the bar drew on a terminal `columns` wide."""
    stream = io.StringIO()
    times = iter([0.0, 10.0, 10.0])
    progress = Progress(
        10**9, stream=stream, bar=True, interval_s=1, clock=lambda: next(times), columns=lambda: columns
    )
    progress.update(3 * 10**8, counts)
    progress.close()
    return [line for line in stream.getvalue().replace("\n", "\r").split("\r") if line.strip()][-1]


@pytest.mark.parametrize(
    ("columns", "shown"),
    [
        pytest.param(
            80, ["1.23M rows", "123k/s", "delivered 1.2M", "rejected 30k", "retries 204k"], id="80-short-form"
        ),
        pytest.param(
            200,
            [
                "1,234,567 rows",
                "123,457 rows/s",
                "delivered 1,200,000",
                "rejected 30,000",
                "retries 204,321",
                "duplicates 400",
                "[00:",
            ],
            id="200-every-count-and-the-estimate",
        ),
    ],
)
def test_the_bar_keeps_its_counts_in_view(columns: int, shown: list[str]) -> None:
    """At 80 columns nothing is cut off: rows/s, delivered, rejected and retries fit beside a bar."""
    line = drawn(columns, BIG)

    assert len(line) <= columns
    for text in shown:
        assert text in line, line
    assert "|" in line, "a bar is still drawn"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (999, "999"), (1_000, "1k"), (12_345, "12.3k"), (123_456, "123k"), (4_560_000, "4.56M"), (7e9, "7G")],
)
def test_short_counts_take_five_characters_at_most(value: float, text: str) -> None:
    assert short(value) == text
