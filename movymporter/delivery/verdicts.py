"""What each HTTP status means for a row (SPEC section 3): worth another attempt, or final, and which verdict.

One table, so that the sender's retries, the sink's health and the verdicts read the same statuses.
"""

from __future__ import annotations

from movymporter.delivery.outcome import Verdict

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REJECT_STATUSES = frozenset({400, 422})
REFUSE_STATUSES = frozenset({401, 403, 404, 405})
ALIVE_STATUSES = frozenset({408, 429})
"""Retryable answers that still prove the sink is up and reading (it asks us to slow down)."""


def verdict_for(status: int) -> Verdict:
    """The verdict of a row whose last attempt the sink answered with `status` (a status worth retrying is
    FAILED here: it is the last only once the retries are spent)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in REJECT_STATUSES:
        return Verdict.REJECTED
    if status in REFUSE_STATUSES or 300 <= status < 400:
        return Verdict.REFUSED
    return Verdict.FAILED
