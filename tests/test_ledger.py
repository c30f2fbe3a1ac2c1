"""The ledger: where every row of a run went, what the reports and the resume state are told, and when it stops.

Real reports in a temporary directory and a real resume state on disk; the collaborators the ledger is given
(`sink_down`, the observers) are plain functions.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from movymporter.delivery.outcome import Delivery, Outcome, Verdict
from movymporter.ledger import Ledger, Tally
from movymporter.problems import ReadProblem
from movymporter.report import DUPLICATES, REJECTED, Reports
from movymporter.schema import Contract, Problem
from movymporter.state import DELIVERED, FAILED, SINK_REJECTED, ResumeState
from movymporter.status import ExitStatus
from tests.conftest import read_csv

HEADER = ["year", "title"]
CELLS = ["1990", "Heat"]
CONTRACT = Contract(max_year=2026)
MISSING = ReadProblem("missing-cell", "the row has 1 field, the header has 2")
EXTRA = ReadProblem("extra-cell", "the row has 3 fields, the header has 2")

WATERMARK = 50
"""The earlier run settled every record before this line."""
REFUSED_BEFORE = 5
"""A line the sink refused in the earlier run."""
REFUSED_BEFORE_REASON = "sink 422: year is outside 1888..2026"
FAILED_BEFORE = 6
"""A line whose delivery failed in the earlier run."""
LINE = 60
"""A line of this run's own, above the watermark."""
CONFIGURATION = "; this is a configuration problem (URL_OUT, credentials), not a data problem"
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def problems_of(**values: str) -> list[Problem]:
    """Every problem the model finds in a row."""
    problems = CONTRACT.validate(values)
    assert isinstance(problems, list), problems
    return problems


def delivery(line: int = LINE) -> Delivery:
    return Delivery(line, CELLS, b'{"year":1990,"title":"Heat"}', f"key-{line}")


def outcome(verdict: Verdict, line: int = LINE, reason: str = "", **answers: Any) -> Outcome:
    return Outcome(delivery(line), verdict, reason, **answers)


@pytest.fixture
def reports(tmp_path: Path) -> Iterator[Reports]:
    """The run's reports in tmp_path/reports, dropped at the end unless `written` put them in place."""
    with contextlib.closing(Reports(tmp_path / "reports", delimiter=",", encoding="utf-8", header=HEADER)) as opened:
        yield opened


def written(reports: Reports) -> tuple[list[list[str]], list[list[str]]]:
    """The rows of rejected.csv and duplicates.csv, without their headers, once the run's reports are finished."""
    reports.finish({})
    rejected, duplicates = read_csv(reports.directory / REJECTED), read_csv(reports.directory / DUPLICATES)
    assert rejected[0] == ["line", "stage", "reason", *HEADER]
    assert duplicates[0] == ["line", "duplicate_of"]
    return rejected[1:], duplicates[1:]


@pytest.fixture
def open_state(tmp_path: Path) -> Iterator[Callable[[], ResumeState]]:
    """open_state(): the resume state of one input in tmp_path/state.sqlite, as a new run opens it."""
    opened: list[ResumeState] = []

    def open_() -> ResumeState:
        opened.append(
            ResumeState(
                tmp_path / "state.sqlite", "input", path=tmp_path / "films.csv", url="http://sink/movies", fresh=False
            )
        )
        return opened[-1]

    yield open_
    for state in opened:
        state.close()


@pytest.fixture
def earlier_run(open_state: Callable[[], ResumeState]) -> ResumeState:
    """The state a re-run finds: an earlier run read up to WATERMARK, the sink refused REFUSED_BEFORE, and
    FAILED_BEFORE failed; every other line before WATERMARK was delivered."""
    first = open_state()
    first.finished(REFUSED_BEFORE, SINK_REJECTED, REFUSED_BEFORE_REASON)
    first.finished(FAILED_BEFORE, FAILED, "gave up after 15 attempts")
    first.read_past(WATERMARK)
    first.save(force=True)
    first.close()
    state = open_state()
    assert state.watermark == WATERMARK
    return state


@pytest.fixture
def make_ledger(reports: Reports) -> Callable[..., Ledger]:
    """make_ledger(state=None, stop_on_errors=0, ...): a ledger writing to `reports`, with a halt of its own."""

    def make(
        state: ResumeState | None = None,
        *,
        stop_on_errors: int = 0,
        keep_duplicates: bool = False,
        sink_down: Callable[[], str | None] = lambda: None,
        observers: tuple[Callable[[Outcome], None], ...] = (),
    ) -> Ledger:
        return Ledger(
            reports,
            state,
            halt=threading.Event(),
            stop_on_errors=stop_on_errors,
            keep_duplicates=keep_duplicates,
            sink_down=sink_down,
            observers=observers,
        )

    return make


# --- the tally ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tally", "rejected"),
    [
        pytest.param(Tally(), 0, id="nothing-rejected"),
        pytest.param(Tally(invalid=2, sink_rejected=3, failed=4), 9, id="invalid-refused-by-the-sink-and-failed"),
        pytest.param(
            Tally(rows=9, blank=1, duplicates=2, duplicates_sent=1, valid=3, delivered=3, already_delivered=2),
            0,
            id="delivered-valid-and-skipped-rows-are-not-rejected",
        ),
        pytest.param(Tally(not_attempted=5, retries=7, unanswered=2), 0, id="rows-not-attempted-are-not-rejected"),
    ],
)
def test_rejected_counts_the_rows_refused_for_their_data_or_their_delivery(tally: Tally, rejected: int) -> None:
    """`rejected` is invalid + sink_rejected + failed, and counts() gives every bucket and it."""
    assert tally.rejected == rejected
    counts = tally.counts()
    assert set(counts) == {field.name for field in fields(Tally)} | {"rejected"}
    assert counts == {**{field.name: getattr(tally, field.name) for field in fields(Tally)}, "rejected": rejected}


def _row(line: int, stage: str, reason: str, cells: list[str] = CELLS) -> list[str]:
    return [str(line), stage, reason, *cells]


BUCKETS = [
    pytest.param(
        {},
        lambda ledger: ledger.invalid(LINE, "read", (MISSING,), ["1990"]),
        {"invalid": 1},
        None,
        [_row(LINE, "read", str(MISSING), ["1990"])],
        [],
        id="a-row-that-could-not-be-read-is-invalid",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.invalid(LINE, "validate", problems_of(year="3000", title=""), ["3000", ""]),
        {"invalid": 1},
        None,
        [
            _row(
                LINE,
                "validate",
                "constraint-error: year must be from 1888 to 2026, got '3000'; constraint-error: title is required",
                ["3000", ""],
            )
        ],
        [],
        id="a-row-the-model-refused-is-invalid-with-every-problem",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.invalid(3, "read", (MISSING,), ["1990"]),
        {"invalid": 1},
        None,
        [_row(3, "read", str(MISSING), ["1990"])],
        [],
        id="a-row-below-an-earlier-runs-watermark-is-invalid-again",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.repeated(LINE + 1, LINE),
        {"duplicates": 1},
        True,
        [],
        [[str(LINE + 1), str(LINE)]],
        id="a-repeat-is-skipped-and-listed",
    ),
    pytest.param(
        {"keep_duplicates": True},
        lambda ledger: ledger.repeated(LINE + 1, LINE),
        {"duplicates_sent": 1},
        False,
        [],
        [],
        id="a-repeat-kept-is-sent-and-not-listed",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settled_before(2, CELLS),
        {"delivered": 1, "already_delivered": 1},
        True,
        [],
        [],
        id="a-row-delivered-before-counts-as-delivered-and-is-not-sent",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settled_before(REFUSED_BEFORE, CELLS),
        {"sink_rejected": 1},
        True,
        [_row(REFUSED_BEFORE, "sink", REFUSED_BEFORE_REASON)],
        [],
        id="a-row-the-sink-refused-before-is-reported-again-and-not-sent",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settled_before(FAILED_BEFORE, CELLS),
        {},
        False,
        [],
        [],
        id="a-row-that-failed-before-is-sent-again",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settled_before(LINE, CELLS),
        {},
        False,
        [],
        [],
        id="a-row-above-the-watermark-is-sent",
    ),
    pytest.param(
        {"state": None},
        lambda ledger: ledger.settled_before(2, CELLS),
        {},
        False,
        [],
        [],
        id="without-a-resume-state-every-row-is-sent",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(outcome(Verdict.DELIVERED, status=201, attempts=1, statuses=[201])),
        {"delivered": 1},
        None,
        [],
        [],
        id="a-delivered-row-counts-as-delivered",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(
            outcome(Verdict.DELIVERED, status=201, attempts=3, statuses=[503, 201], unanswered=1)
        ),
        {"delivered": 1, "retries": 2, "unanswered": 1},
        None,
        [],
        [],
        id="attempts-after-the-first-count-as-retries-and-unanswered-ones-as-unanswered",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(
            outcome(Verdict.REJECTED, reason="sink 422: title is required", status=422, attempts=1)
        ),
        {"sink_rejected": 1},
        None,
        [_row(LINE, "sink", "sink 422: title is required")],
        [],
        id="a-row-the-sink-refused-is-sink-rejected",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(outcome(Verdict.FAILED, reason="gave up after 15 attempts", attempts=15)),
        {"failed": 1, "retries": 14},
        None,
        [_row(LINE, "delivery", "gave up after 15 attempts")],
        [],
        id="a-row-whose-retries-ran-out-is-failed",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(outcome(Verdict.ABORTED, reason="the run stopped before an answer")),
        {"not_attempted": 1},
        None,
        [_row(LINE, "delivery", "the run stopped before an answer")],
        [],
        id="a-row-cut-short-by-a-stop-is-not-attempted",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.settle(outcome(Verdict.REFUSED, reason="sink 401: unauthorized", status=401)),
        {"not_attempted": 1},
        None,
        [_row(LINE, "delivery", "sink 401: unauthorized")],
        [],
        id="a-row-refused-for-the-configuration-is-not-attempted",
    ),
    pytest.param(
        {},
        lambda ledger: ledger.unanswered(delivery(), "no answer before the run stopped; the sink may have it"),
        {"not_attempted": 1},
        None,
        [_row(LINE, "delivery", "no answer before the run stopped; the sink may have it")],
        [],
        id="a-row-still-in-flight-when-the-run-gave-up-is-not-attempted",
    ),
]


@pytest.mark.parametrize(("options", "action", "moved", "returned", "rejected", "duplicates"), BUCKETS)
def test_each_row_moves_one_bucket_and_is_reported_where_it_belongs(
    make_ledger: Callable[..., Ledger],
    earlier_run: ResumeState,
    reports: Reports,
    options: dict[str, Any],
    action: Callable[[Ledger], object],
    moved: dict[str, int],
    returned: bool | None,
    rejected: list[list[str]],
    duplicates: list[list[str]],
) -> None:
    """Each method moves the buckets it names (rejected moving with invalid, sink_rejected and failed), says
    whether the row is done with, and writes the row to rejected.csv or duplicates.csv."""
    ledger = make_ledger(**{"state": earlier_run, **options})
    before = ledger.tally.counts()

    assert action(ledger) is returned

    after = ledger.tally.counts()
    changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    rejected_now = sum(moved.get(name, 0) for name in ("invalid", "sink_rejected", "failed"))
    assert changed == {**moved, **({"rejected": rejected_now} if rejected_now else {})}
    assert written(reports) == (rejected, duplicates)


def test_the_answers_are_counted_by_status(make_ledger: Callable[..., Ledger]) -> None:
    """Every answered attempt of every settled row is counted by its status, for the metrics check."""
    ledger = make_ledger()
    ledger.settle(outcome(Verdict.DELIVERED, LINE, status=201, attempts=3, statuses=[503, 503, 201]))
    ledger.settle(outcome(Verdict.REJECTED, LINE + 1, "sink 400: bad", status=400, attempts=1, statuses=[400]))
    ledger.settle(outcome(Verdict.FAILED, LINE + 2, "gave up", attempts=2, statuses=[503], unanswered=1))
    assert dict(ledger.responses) == {201: 1, 400: 1, 503: 3}
    assert ledger.figures()["responses"] == {"201": 1, "400": 1, "503": 3}
    assert (ledger.tally.retries, ledger.tally.unanswered) == (3, 1)


# --- reasons --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "top"),
    [
        pytest.param(
            [("read", (MISSING,)), ("read", (EXTRA,)), ("read", (MISSING,))],
            [(f"missing-cell: {MISSING.message}", 2), (f"extra-cell: {EXTRA.message}", 1)],
            id="read-problems-count-by-code-and-message",
        ),
        pytest.param(
            [
                ("validate", problems_of(year="3000", title="Heat")),
                ("validate", problems_of(year="1700", title="Heat")),
            ],
            [("constraint-error: year must be from 1888 to 2026", 2)],
            id="validate-problems-count-by-rule-without-the-values",
        ),
        pytest.param(
            [("validate", problems_of(year="x", title="")), ("validate", problems_of(year="1990", title=" "))],
            [("constraint-error: title is required", 2), ("type-error: year must be a whole number", 1)],
            id="a-row-counts-for-each-of-its-problems",
        ),
        pytest.param(
            [("read", (MISSING,)), ("validate", problems_of(year="1990", title=""))],
            [(f"missing-cell: {MISSING.message}", 1), ("constraint-error: title is required", 1)],
            id="read-and-validate-problems-side-by-side",
        ),
    ],
)
def test_invalid_rows_are_counted_by_reason(
    make_ledger: Callable[..., Ledger], rows: list[tuple[str, tuple[object, ...]]], top: list[tuple[str, int]]
) -> None:
    """A read problem counts as its code and message, a problem of the model's as its code and rule."""
    ledger = make_ledger()
    for line, (stage, problems) in enumerate(rows, start=2):
        ledger.invalid(line, stage, problems, CELLS)
    assert [(item["reason"], item["rows"]) for item in ledger.reasons.top(10)] == top


def test_rows_not_delivered_are_counted_by_stage_and_reason(make_ledger: Callable[..., Ledger]) -> None:
    """The sink's refusals count under "sink", failed and unattempted deliveries under "delivery"."""
    ledger = make_ledger()
    ledger.settle(outcome(Verdict.REJECTED, LINE, "sink 422: title is required", status=422))
    ledger.settle(outcome(Verdict.REJECTED, LINE + 1, "sink 422: title is required", status=422))
    ledger.settle(outcome(Verdict.FAILED, LINE + 2, "gave up after 15 attempts"))
    ledger.settle(outcome(Verdict.ABORTED, LINE + 3, "stopped before an answer"))
    assert [(item["reason"], item["rows"]) for item in ledger.reasons.top(10)] == [
        ("sink: sink 422: title is required", 2),
        ("delivery: gave up after 15 attempts", 1),
        ("delivery: stopped before an answer", 1),
    ]


# --- STOP_ON_ERRORS -------------------------------------------------------------------------------------------------

STEPS: dict[str, Callable[[Ledger, int], object]] = {
    "invalid": lambda ledger, n: ledger.invalid(LINE + n, "read", (MISSING,), CELLS),
    "invalid-on-an-early-line": lambda ledger, n: ledger.invalid(10 + n, "read", (MISSING,), CELLS),
    "refused-before": lambda ledger, n: ledger.settled_before(REFUSED_BEFORE, CELLS),
    "delivered-before": lambda ledger, n: ledger.settled_before(2, CELLS),
    "sink-rejected": lambda ledger, n: ledger.settle(outcome(Verdict.REJECTED, LINE + n, "sink 400: bad")),
    "failed": lambda ledger, n: ledger.settle(outcome(Verdict.FAILED, LINE + n, "gave up")),
    "delivered": lambda ledger, n: ledger.settle(outcome(Verdict.DELIVERED, LINE + n)),
    "repeated": lambda ledger, n: ledger.repeated(LINE + n, LINE),
}
"""What can happen to a row, by name; `n` tells the rows apart."""


@pytest.mark.parametrize(
    ("limit", "resuming", "steps", "stop_at"),
    [
        pytest.param(1, False, ["invalid"], 0, id="the-first-rejection-stops-at-one"),
        pytest.param(
            3,
            False,
            ["invalid", "delivered", "sink-rejected", "repeated", "delivered", "failed"],
            5,
            id="rejections-of-every-kind-count-and-nothing-else-does",
        ),
        pytest.param(
            2,
            True,
            ["invalid-on-an-early-line", "refused-before", "invalid-on-an-early-line", "invalid", "failed"],
            4,
            id="rows-an-earlier-run-rejected-do-not-count",
        ),
        pytest.param(
            2,
            True,
            ["delivered-before", "invalid", "refused-before", "delivered-before", "sink-rejected"],
            4,
            id="this-runs-rejections-count-among-those-of-the-earlier-run",
        ),
        pytest.param(
            2,
            False,
            ["invalid-on-an-early-line", "invalid-on-an-early-line"],
            1,
            id="without-an-earlier-run-every-rejection-is-this-runs",
        ),
        pytest.param(0, False, ["invalid"] * 20 + ["failed"] * 5, None, id="zero-never-stops"),
    ],
)
def test_stop_on_errors_stops_at_exactly_the_nth_rejection_of_this_run(
    make_ledger: Callable[..., Ledger],
    open_state: Callable[[], ResumeState],
    request: pytest.FixtureRequest,
    limit: int,
    resuming: bool,
    steps: list[str],
    stop_at: int | None,
) -> None:
    """rejected_enough() is False after every row until this run's N-th rejection, True then; the run stops
    reading, with the count in its reason, but retries in flight are not cut short (no halt)."""
    state = request.getfixturevalue("earlier_run") if resuming else open_state()
    ledger = make_ledger(state, stop_on_errors=limit)

    answers = []
    for n, step in enumerate(steps):
        STEPS[step](ledger, n)
        answers.append(ledger.rejected_enough())

    assert answers == [n == stop_at for n in range(len(steps))]
    if stop_at is None:
        assert ledger.stopped is None
    else:
        assert ledger.stopped == f"STOP_ON_ERRORS={limit} reached ({limit} rows rejected)"
    assert not ledger.halt.is_set()


@pytest.mark.parametrize(
    ("stop", "stopped", "halted"),
    [
        pytest.param(
            lambda ledger: ledger.invalid(LINE, "read", (MISSING,), CELLS) or ledger.rejected_enough(),
            "STOP_ON_ERRORS=1 reached (1 rows rejected)",
            False,
            id="enough-rejections-stop-reading-without-halting",
        ),
        pytest.param(lambda ledger: ledger.stop("the sink is down"), "the sink is down", True, id="a-stop-halts-too"),
        pytest.param(
            lambda ledger: ledger.stop("enough", halt=False), "enough", False, id="a-stop-without-halt-only-stops"
        ),
    ],
)
def test_a_stop_gives_its_reason_and_halts_only_when_asked(
    make_ledger: Callable[..., Ledger], stop: Callable[[Ledger], object], stopped: str, halted: bool
) -> None:
    """`stopped` is the reason; `halt`, which cuts retries short, is set by stop() unless told not to."""
    ledger = make_ledger(stop_on_errors=1)
    assert not ledger.stopped_early
    stop(ledger)
    assert ledger.stopped == stopped
    assert ledger.halt.is_set() is halted
    assert ledger.stopped_early


# --- stops while settling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "stops"),
    [
        pytest.param(Verdict.REFUSED, True, id="a-refused-configuration-stops"),
        pytest.param(Verdict.DELIVERED, False, id="a-delivery-does-not-stop"),
        pytest.param(Verdict.REJECTED, False, id="a-row-the-sink-refused-does-not-stop"),
        pytest.param(Verdict.FAILED, False, id="a-failed-row-does-not-stop"),
        pytest.param(Verdict.ABORTED, False, id="a-row-cut-short-does-not-stop"),
    ],
)
def test_a_refused_outcome_stops_the_run_as_a_configuration_problem(
    make_ledger: Callable[..., Ledger], verdict: Verdict, stops: bool
) -> None:
    """A 401/403/404/405 or a redirect says the configuration is wrong: the run stops and halts, and says so."""
    ledger = make_ledger()
    ledger.settle(outcome(verdict, reason="sink 401: unauthorized", status=401))
    assert ledger.stopped == ("sink 401: unauthorized" + CONFIGURATION if stops else None)
    assert ledger.halt.is_set() is stops
    if stops:
        assert ledger.exit_status() is ExitStatus.STOPPED


@pytest.mark.parametrize(
    ("down", "verdicts", "stopped"),
    [
        pytest.param([None, None], [Verdict.FAILED, Verdict.DELIVERED], None, id="a-sink-that-answers-goes-on"),
        pytest.param(
            [None, "no usable answer for 30 s"],
            [Verdict.FAILED, Verdict.FAILED],
            "no usable answer for 30 s",
            id="a-sink-found-down-stops-the-run",
        ),
        pytest.param(
            ["no usable answer for 30 s", "no usable answer for 60 s"],
            [Verdict.FAILED, Verdict.FAILED],
            "no usable answer for 30 s",
            id="the-first-reason-stays",
        ),
        pytest.param(
            ["no usable answer for 30 s"],
            [Verdict.REFUSED],
            "sink 401: unauthorized" + CONFIGURATION,
            id="a-refused-configuration-outranks-a-sink-down",
        ),
    ],
)
def test_a_sink_found_down_stops_the_run_with_its_reason(
    make_ledger: Callable[..., Ledger], down: list[str | None], verdicts: list[Verdict], stopped: str | None
) -> None:
    """After each settled row the ledger asks whether the sink is down; a reason stops (and halts) the run."""
    answers = iter(down)
    ledger = make_ledger(sink_down=lambda: next(answers, None))
    for n, verdict in enumerate(verdicts):
        ledger.settle(outcome(verdict, LINE + n, "sink 401: unauthorized"))
    assert ledger.stopped == stopped
    assert ledger.halt.is_set() is (stopped is not None)


BUCKETS_SEEN = ("delivered", "sink_rejected", "failed", "not_attempted")


def test_observers_hear_each_outcome_once_it_is_counted(make_ledger: Callable[..., Ledger]) -> None:
    """Each observer hears every outcome, in order, after the tally already includes it, even once stopped."""
    heard: list[Outcome] = []
    tallies: list[tuple[Verdict, dict[str, int]]] = []

    def counted(outcome: Outcome) -> None:
        tallies.append((outcome.verdict, {name: ledger.tally.counts()[name] for name in BUCKETS_SEEN}))

    ledger = make_ledger(observers=(heard.append, counted))
    outcomes = [
        outcome(Verdict.DELIVERED, LINE),
        outcome(Verdict.REJECTED, LINE + 1, "sink 400: bad"),
        outcome(Verdict.FAILED, LINE + 2, "gave up"),
        outcome(Verdict.REFUSED, LINE + 3, "sink 403: forbidden"),
        outcome(Verdict.ABORTED, LINE + 4, "stopped before an answer"),
    ]
    for each in outcomes:
        ledger.settle(each)

    assert heard == outcomes
    assert tallies == [
        (Verdict.DELIVERED, {"delivered": 1, "sink_rejected": 0, "failed": 0, "not_attempted": 0}),
        (Verdict.REJECTED, {"delivered": 1, "sink_rejected": 1, "failed": 0, "not_attempted": 0}),
        (Verdict.FAILED, {"delivered": 1, "sink_rejected": 1, "failed": 1, "not_attempted": 0}),
        (Verdict.REFUSED, {"delivered": 1, "sink_rejected": 1, "failed": 1, "not_attempted": 1}),
        (Verdict.ABORTED, {"delivered": 1, "sink_rejected": 1, "failed": 1, "not_attempted": 2}),
    ]


# --- the exit status ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "status", "stopped"),
    [
        pytest.param(lambda ledger: None, ExitStatus.OK, None, id="an-empty-run-is-ok"),
        pytest.param(
            lambda ledger: (
                ledger.settle(outcome(Verdict.DELIVERED)),
                ledger.repeated(LINE + 1, LINE),
                ledger.settle(outcome(Verdict.DELIVERED, LINE + 2, attempts=4, statuses=[503, 503, 503, 201])),
            ),
            ExitStatus.OK,
            None,
            id="rows-delivered-or-skipped-are-ok-retries-or-not",
        ),
        pytest.param(
            lambda ledger: ledger.invalid(LINE, "read", (MISSING,), CELLS),
            ExitStatus.ROWS_NOT_DELIVERED,
            None,
            id="an-invalid-row-is-not-delivered",
        ),
        pytest.param(
            lambda ledger: ledger.settle(outcome(Verdict.REJECTED, reason="sink 422: bad")),
            ExitStatus.ROWS_NOT_DELIVERED,
            None,
            id="a-row-the-sink-refused-is-not-delivered",
        ),
        pytest.param(
            lambda ledger: ledger.settle(outcome(Verdict.FAILED, reason="gave up")),
            ExitStatus.ROWS_NOT_DELIVERED,
            None,
            id="a-failed-row-is-not-delivered",
        ),
        pytest.param(
            lambda ledger: ledger.unanswered(delivery(), "no answer"),
            ExitStatus.ROWS_NOT_DELIVERED,
            None,
            id="a-row-not-attempted-is-not-delivered",
        ),
        pytest.param(
            lambda ledger: ledger.invalid(LINE, "read", (MISSING,), CELLS) or ledger.rejected_enough(),
            ExitStatus.STOPPED,
            "STOP_ON_ERRORS=1 reached (1 rows rejected)",
            id="stop-on-errors-reached-is-stopped",
        ),
        pytest.param(
            lambda ledger: ledger.stop("the sink is down"),
            ExitStatus.STOPPED,
            "the sink is down",
            id="a-stop-is-stopped",
        ),
        pytest.param(
            lambda ledger: ledger.halt.set(),
            ExitStatus.INTERRUPTED,
            INTERRUPTED,
            id="a-halt-nobody-asked-for-interrupts",
        ),
        pytest.param(
            lambda ledger: (ledger.invalid(LINE, "read", (MISSING,), CELLS), ledger.halt.set()),
            ExitStatus.INTERRUPTED,
            INTERRUPTED,
            id="an-interruption-outranks-rows-not-delivered",
        ),
        pytest.param(
            lambda ledger: (
                ledger.invalid(LINE, "read", (MISSING,), CELLS),
                ledger.rejected_enough(),
                ledger.halt.set(),
            ),
            ExitStatus.STOPPED,
            "STOP_ON_ERRORS=1 reached (1 rows rejected)",
            id="a-halt-after-a-stop-is-the-stop",
        ),
    ],
)
def test_the_exit_status_says_how_the_run_ended(
    make_ledger: Callable[..., Ledger], run: Callable[[Ledger], object], status: ExitStatus, stopped: str | None
) -> None:
    """OK, rows not delivered, stopped (with the stop's reason), or interrupted (then `why_stopped` says so)."""
    ledger = make_ledger(stop_on_errors=1)
    run(ledger)
    assert ledger.exit_status() is status
    assert ledger.why_stopped == stopped


def test_the_exit_status_of_an_interrupted_run_is_the_same_when_asked_again(make_ledger: Callable[..., Ledger]) -> None:
    """Asking how the run ended does not change the answer."""
    ledger = make_ledger()
    ledger.halt.set()
    assert [ledger.exit_status(), ledger.exit_status()] == [ExitStatus.INTERRUPTED, ExitStatus.INTERRUPTED]


# --- the resume state -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "settled"),
    [
        pytest.param(Verdict.DELIVERED, DELIVERED, id="a-delivered-row-is-settled-as-delivered"),
        pytest.param(Verdict.REJECTED, SINK_REJECTED, id="a-row-the-sink-refused-is-settled-with-its-reason"),
        pytest.param(Verdict.FAILED, FAILED, id="a-failed-row-is-recorded-to-be-sent-again"),
        pytest.param(Verdict.ABORTED, None, id="a-row-cut-short-is-not-settled"),
        pytest.param(Verdict.REFUSED, None, id="a-row-refused-for-the-configuration-is-not-settled"),
    ],
)
def test_the_resume_state_is_told_how_each_row_sent_ended(
    make_ledger: Callable[..., Ledger], open_state: Callable[[], ResumeState], verdict: Verdict, settled: str | None
) -> None:
    """The next run finds each row as this one settled it: delivered, refused by the sink (with the sink's
    reason), failed; a row cut short is not settled at all, so the next run sends it."""
    state = open_state()
    ledger = make_ledger(state)
    state.sending(LINE)
    ledger.settle(outcome(verdict, reason="the reason of this row's end"))
    state.read_past(LINE + 1)
    state.save(force=True)
    state.close()

    again = open_state()
    assert again.settled_before(LINE) == settled
    if settled in (SINK_REJECTED, FAILED):
        assert again.reason(LINE) == "the reason of this row's end"
