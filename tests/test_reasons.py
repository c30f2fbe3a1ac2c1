"""The summary's top reasons: rows refused for one rule count together, with the real values when they are few."""

from __future__ import annotations

import pytest

from movymporter.reasons import VARIANTS_SHOWN, Reasons, generalise


@pytest.mark.parametrize(
    ("reason", "general"),
    [
        pytest.param("the row has 9 fields, the header has 10", "the row has N fields, the header has N", id="counts"),
        pytest.param('sink 400: title "Heat" is taken', 'sink N: title "…" is taken', id="quoted-values"),
        pytest.param("gave up after 15 tries (last: HTTP 503)", "gave up after N tries (last: HTTP N)", id="http"),
        pytest.param("a field is longer than 131072.5 characters", "a field is longer than N characters", id="decimal"),
    ],
)
def test_generalise_blanks_values(reason: str, general: str) -> None:
    """Numbers and quoted values become N and "…"; the words stay."""
    assert generalise(reason) == general


def rows_of(reasons: Reasons) -> dict[str, object]:
    return {item["reason"]: item["rows"] for item in reasons.top(10)}  # type: ignore[misc]


def test_few_spellings_are_shown_as_they_are() -> None:
    """Wrong field counts that are always 9 or 11 are shown with those counts, each with its rows."""
    reasons = Reasons()
    for found, times in ((9, 5), (11, 2)):
        for _ in range(times):
            reasons.add("missing-cell", f"the row has {found} fields, the header has 10")

    assert reasons.top(10) == [
        {"reason": "missing-cell: the row has 9 fields, the header has 10", "rows": 5},
        {"reason": "missing-cell: the row has 11 fields, the header has 10", "rows": 2},
    ]


def test_many_spellings_count_together() -> None:
    """Past VARIANTS_SHOWN different values, the blanked reason stands for them all, with every row counted."""
    reasons = Reasons()
    for found in range(VARIANTS_SHOWN + 2):
        reasons.add("extra-cell", f"the row has {11 + found} fields, the header has 10")
        reasons.add("extra-cell", f"the row has {11 + found} fields, the header has 10")

    assert rows_of(reasons) == {"extra-cell: the row has N fields, the header has N": 2 * (VARIANTS_SHOWN + 2)}


def test_general_reasons_and_limits() -> None:
    """Reasons given general (validation rules) are counted as they are; top() keeps the most frequent."""
    reasons = Reasons()
    for _ in range(3):
        reasons.count("constraint-error: title is required")
    reasons.add("sink", "sink 400: year 2050 is outside 1888..2026")

    assert reasons.top(1) == [{"reason": "constraint-error: title is required", "rows": 3}]
    assert rows_of(reasons)["sink: sink 400: year 2050 is outside 1888..2026"] == 1
