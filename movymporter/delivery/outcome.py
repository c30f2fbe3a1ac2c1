"""What a delivery is and what becomes of it: Delivery in, Outcome out, and Answer, an Outcome on the wire.

An executor that sends from other processes (or other machines) hands them rows and gets back one Answer per
row: the Outcome without its Delivery, which the sending side has no need to return (the run holds it, by
line), and whether that side found the sink down. A NamedTuple of plain values: typed, and pickled as little
more than the values themselves (the class is named once per message, however many answers it holds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Delivery:
    """A validated row ready to send, with what the report needs if it is not delivered."""

    line: int
    cells: list[str]
    body: bytes
    key: str


class Verdict(Enum):
    """How a delivery ended; an Answer carries the value."""

    DELIVERED = "delivered"
    REJECTED = "sink_rejected"
    """400 or 422: the sink read the row and refused it; final."""
    FAILED = "failed"
    """Retries exhausted, or an answer that retrying cannot change."""
    REFUSED = "refused"
    """401/403/404/405 or a redirect: the configuration is wrong, the run stops."""
    ABORTED = "not_attempted"
    """Cut short by a stop before the sink gave a final answer."""


class Answer(NamedTuple):
    """An Outcome as it travels back from where the row was sent: by line, without its Delivery."""

    line: int
    verdict: str
    """The Verdict's value."""
    reason: str
    status: int | None
    attempts: int
    counted: int
    statuses: list[int]
    unanswered: int
    last_error: str
    sink_down: bool
    """Whether the sending side found the sink down (see sender.SinkHealth): the run then stops."""


@dataclass(slots=True)
class Outcome:
    """What became of one delivery, with what the report, the summary and the metrics check need of it."""

    delivery: Delivery
    verdict: Verdict
    reason: str = ""
    status: int | None = None
    attempts: int = 0
    counted: int = 0
    """Attempts that count against MAX_ATTEMPTS (see Sender._attempt)."""
    statuses: list[int] = field(default_factory=list)
    """Status of every answered attempt, for the metrics reconciliation."""
    unanswered: int = 0
    """Attempts that ended without an answer (timeouts, resets): the sink may have counted them."""
    last_error: str = ""

    def answer(self, sink_down: bool) -> Answer:
        """This outcome on the wire, with whether the sender found the sink down."""
        return Answer(
            self.delivery.line,
            self.verdict.value,
            self.reason,
            self.status,
            self.attempts,
            self.counted,
            self.statuses,
            self.unanswered,
            self.last_error,
            sink_down,
        )

    @classmethod
    def from_answer(cls, delivery: Delivery, answer: Answer) -> Outcome:
        """The outcome an Answer stands for, given back the Delivery it left behind."""
        return cls(
            delivery,
            Verdict(answer.verdict),
            answer.reason,
            answer.status,
            answer.attempts,
            answer.counted,
            answer.statuses,
            answer.unanswered,
            answer.last_error,
        )


def idempotency_key(body: bytes, copy_line: int | None = None) -> str:
    """The Idempotency-Key of a POST: the same for the same body, run after run, so a sink that honours it drops
    a repeat. A repeat sent on purpose (--keep-duplicates) gets its own, from its line, stable across re-runs."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    if copy_line is not None:
        digest = hashlib.blake2b(digest + copy_line.to_bytes(8, "little"), digest_size=16).digest()
    return digest.hex()
