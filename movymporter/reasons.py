"""Why rows were not delivered, counted for the summary's list of top reasons.

Rows refused for the same rule should count together, so the values in a
reason are blanked (`the row has N fields, the header has N`). But a blanked
reason hides what a user needs when the values are few: ten thousand rows of
`9 fields, the header has 10` say "one column missing". So each blanked reason
also remembers its first few exact spellings, and is shown as those when they
were all there was.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

VARIANTS_SHOWN = 3
"""A blanked reason with at most this many different spellings is shown as those spellings."""
_NUMBER = re.compile(r"\b\d+(\.\d+)?\b")
_QUOTED = re.compile(r'"[^"]*"')


@lru_cache(maxsize=1024)
def generalise(reason: str) -> str:
    """A reason with its values blanked, so rows refused for the same rule count together."""
    return _NUMBER.sub("N", _QUOTED.sub('"…"', reason))


class Reasons:
    """Rows by reason; `add` takes a reason as it was given, `count` one that is general already."""

    def __init__(self) -> None:
        self._rows: Counter[str] = Counter()
        self._spellings: dict[str, Counter[str]] = {}
        """The exact reasons behind a blanked one, while there are no more than VARIANTS_SHOWN of them."""
        self._too_many: set[str] = set()

    def add(self, stage: str, reason: str) -> None:
        general = f"{stage}: {generalise(reason)}"
        self._rows[general] += 1
        if general in self._too_many:
            return
        spellings = self._spellings.setdefault(general, Counter())
        exact = f"{stage}: {reason}"
        if exact in spellings or len(spellings) < VARIANTS_SHOWN:
            spellings[exact] += 1
        else:
            self._too_many.add(general)
            del self._spellings[general]

    def count(self, reason: str) -> None:
        self._rows[reason] += 1

    def top(self, limit: int) -> list[dict[str, object]]:
        """The most frequent reasons, each blanked one replaced by its few exact spellings when it had few."""
        shown: Counter[str] = Counter()
        for general, rows in self._rows.items():
            shown.update(self._spellings.get(general) or {general: rows})
        return [{"reason": reason, "rows": rows} for reason, rows in shown.most_common(limit)]
