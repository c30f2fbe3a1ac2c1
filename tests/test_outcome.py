"""An Outcome on the wire: an Answer carries every field across a process boundary and back, unchanged."""

from __future__ import annotations

import pickle

import pytest

from movymporter.delivery.outcome import Answer, Delivery, Outcome, Verdict

DELIVERY = Delivery(line=7, cells=["Alien", "1979"], body=b'{"title":"Alien","year":1979}', key="k7")


@pytest.mark.parametrize("verdict", list(Verdict), ids=lambda verdict: verdict.name.lower())
@pytest.mark.parametrize(
    ("status", "statuses"),
    [
        pytest.param(None, [], id="never-answered"),
        pytest.param(None, [503, 503], id="answered-then-cut-short"),
        pytest.param(201, [503, 201], id="answered"),
    ],
)
@pytest.mark.parametrize("sink_down", [False, True], ids=["sink-up", "sink-down"])
def test_an_outcome_survives_the_trip_through_an_answer(
    verdict: Verdict, status: int | None, statuses: list[int], sink_down: bool
) -> None:
    """Outcome -> Answer -> pickle -> Answer -> Outcome gives back an equal outcome, and the sink's state."""
    outcome = Outcome(
        DELIVERY,
        verdict,
        reason="sink 422: year is not a number",
        status=status,
        attempts=3,
        counted=2,
        statuses=statuses,
        unanswered=1,
        last_error="timeout",
    )

    answer = pickle.loads(pickle.dumps(outcome.answer(sink_down)))

    assert type(answer) is Answer
    assert (answer.line, answer.verdict, answer.sink_down) == (DELIVERY.line, verdict.value, sink_down)
    assert Outcome.from_answer(DELIVERY, answer) == outcome


def test_an_answer_leaves_the_delivery_behind() -> None:
    """The sending side returns no cells, body or key: the run holds the delivery, by line."""
    answer = Outcome(DELIVERY, Verdict.DELIVERED, status=201, attempts=1, counted=1, statuses=[201]).answer(False)

    assert answer == (7, "delivered", "", 201, 1, 1, [201], 0, "", False)
    assert DELIVERY.body not in pickle.dumps(answer)
