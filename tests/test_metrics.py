"""The metrics check: parse the sink's Prometheus text, scrape it, reconcile its deltas with what the importer saw."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import responses

from movymporter.metrics import MetricsUnavailable, Reconciliation, Snapshot, parse, reconcile, scrape

METRICS_URL = "http://sink.test/metrics"

# What prometheus_client (the Python sink) exposes, _created series included.
PYTHON_SINK_TEXT = """\
# HELP sink_post_total POST requests by response status
# TYPE sink_post_total counter
sink_post_total{status="201"} 812.0
sink_post_total{status="503"} 188.0
sink_post_total{status="400"} 3.0
# HELP sink_post_created POST requests by response status
# TYPE sink_post_created gauge
sink_post_created{status="201"} 1.795444306424522e+09
sink_post_created{status="503"} 1.7954443064245348e+09
sink_post_created{status="400"} 1.7954443064245431e+09
# HELP sink_get_total GET requests by response status
# TYPE sink_get_total counter
sink_get_total{status="200"} 2.0
# HELP sink_stored_total films stored
# TYPE sink_stored_total counter
sink_stored_total 812.0
"""

# What the original Go sink exposes: integer values, runtime metrics, a histogram, escaped help text.
GO_SINK_TEXT = """\
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP http_request_duration_seconds Latency \\\\ of "requests".
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 5
http_request_duration_seconds_bucket{le="+Inf"} 6
http_request_duration_seconds_sum 0.4
http_request_duration_seconds_count 6
# HELP sink_post_total Number of POST requests by status.
# TYPE sink_post_total counter
sink_post_total{status="201"} 40
sink_post_total{status="400"} 2
sink_post_total{status="503"} 11
# HELP sink_get_total Number of GET requests by status.
# TYPE sink_get_total counter
sink_get_total{status="200"} 1
"""


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


# --- parse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(PYTHON_SINK_TEXT, {"201": 812.0, "503": 188.0, "400": 3.0}, id="prometheus-client-with-created"),
        pytest.param(GO_SINK_TEXT, {"201": 40.0, "400": 2.0, "503": 11.0}, id="go-sink-among-other-metrics"),
        pytest.param('sink_post_total{status="201"} 5\n', {"201": 5.0}, id="untyped-sample"),
        pytest.param(
            'sink_post_total{method="POST",status="201"} 5\nsink_post_total{status="201",method="PUT"} 2\n',
            {"201": 7.0},
            id="other-labels-are-summed",
        ),
        pytest.param("# HELP sink_post_total posts\n# TYPE sink_post_total counter\n", {}, id="no-post-yet"),
        pytest.param("", {}, id="empty"),
    ],
)
def test_parse_returns_post_counts_by_status(text: str, expected: dict[str, float]) -> None:
    """parse() keeps sink_post_total by status label and ignores every other series."""
    assert parse(text) == Snapshot(expected)


@pytest.mark.parametrize(
    "text",
    [
        "this is not prometheus",
        "<html><head><title>502 Bad Gateway</title></head></html>",
        '{"status": "ok"}',
        'sink_post_total{status="201"} many\n',
        "sink_post_total{status=201} 1\n",
        "sink_post_total{\n",
    ],
    ids=["prose", "html-error-page", "json", "value-not-a-number", "unquoted-label", "truncated"],
)
def test_parse_of_garbage_is_metrics_unavailable(text: str) -> None:
    """Text that is not the exposition format raises MetricsUnavailable, never a parser error."""
    with pytest.raises(MetricsUnavailable, match="not Prometheus text"):
        parse(text)


# --- scrape ---------------------------------------------------------------------------------------


def test_scrape_reads_the_endpoint(rsps: responses.RequestsMock) -> None:
    """A 200 with exposition text gives the snapshot, fetched with the given timeout."""
    rsps.add(responses.GET, METRICS_URL, body=PYTHON_SINK_TEXT, content_type="text/plain; version=0.0.4")

    snapshot = scrape(requests.Session(), METRICS_URL, timeout=2.5)

    assert snapshot.post == {"201": 812.0, "503": 188.0, "400": 3.0}
    assert rsps.calls[0].request.req_kwargs["timeout"] == 2.5


@pytest.mark.parametrize("status", [404, 500, 503], ids=lambda status: f"{status}-is-unavailable")
def test_scrape_of_an_error_status_is_metrics_unavailable(rsps: responses.RequestsMock, status: int) -> None:
    """An answer other than 200 raises MetricsUnavailable naming the URL and the status."""
    rsps.add(responses.GET, METRICS_URL, status=status, body=PYTHON_SINK_TEXT)

    with pytest.raises(MetricsUnavailable, match=rf"{METRICS_URL} answered {status}"):
        scrape(requests.Session(), METRICS_URL, timeout=1)


@pytest.mark.parametrize(
    "error",
    [requests.ConnectionError("Connection refused"), requests.exceptions.ReadTimeout("read timed out")],
    ids=["connection-error", "timeout"],
)
def test_scrape_without_an_answer_is_metrics_unavailable(rsps: responses.RequestsMock, error: Exception) -> None:
    """No answer from the endpoint raises MetricsUnavailable naming the URL and the kind of error."""
    rsps.add(responses.GET, METRICS_URL, body=error)

    with pytest.raises(MetricsUnavailable, match=rf"{METRICS_URL}: {type(error).__name__}"):
        scrape(requests.Session(), METRICS_URL, timeout=1)


def test_scrape_of_a_page_that_is_not_metrics_is_metrics_unavailable(rsps: responses.RequestsMock) -> None:
    """A 200 that is not exposition text (a proxy's page, the wrong service) raises MetricsUnavailable."""
    rsps.add(responses.GET, METRICS_URL, body="<html><body>Welcome to nginx!</body></html>")

    with pytest.raises(MetricsUnavailable):
        scrape(requests.Session(), METRICS_URL, timeout=1)


# --- reconcile --------------------------------------------------------------------------------------


def lines_of(check: Reconciliation) -> dict[str, tuple[int, int]]:
    return {line.status: (line.sink_delta, line.importer_saw) for line in check.lines}


def test_exact_match_is_ok_and_always_shows_201_400_503() -> None:
    """When the sink's deltas equal the answers seen, the check is ok and 201, 400 and 503 are listed even at 0."""
    before = Snapshot({"201": 100.0})
    after = Snapshot({"201": 110.0})

    check = reconcile(before, after, {201: 10}, unanswered=0)

    assert check.state == "ok"
    assert lines_of(check) == {"201": (10, 10), "400": (0, 0), "503": (0, 0)}
    assert all(line.matches for line in check.lines)
    assert check.notes == []


def test_realistic_run_with_retries_matches() -> None:
    """A run with 503s and sink refusals matches status by status."""
    before = Snapshot({"201": 812.0, "400": 3.0, "503": 188.0})
    after = Snapshot({"201": 1812.0, "400": 10.0, "503": 437.0})

    check = reconcile(before, after, {201: 1000, 400: 7, 503: 249}, unanswered=0)

    assert check.state == "ok"
    assert lines_of(check) == {"201": (1000, 1000), "400": (7, 7), "503": (249, 249)}


def test_mismatch_is_reported_with_a_note() -> None:
    """A delta that differs from what the importer saw makes the check a mismatch, with a note why it may be."""
    before = Snapshot({"201": 0.0, "503": 0.0})
    after = Snapshot({"201": 12.0, "503": 2.0})

    check = reconcile(before, after, {201: 10, 503: 2}, unanswered=0)

    assert check.state == "mismatch"
    mismatched = [line.status for line in check.lines if not line.matches]
    assert mismatched == ["201"]
    assert any("someone else" in note for note in check.notes)
    assert not any("restarted during the run, so" in note for note in check.notes)


def test_counter_that_went_down_is_noted_as_a_restart() -> None:
    """A sink counter lower after the run than before means the sink restarted; the notes say so."""
    before = Snapshot({"201": 500.0, "503": 90.0})
    after = Snapshot({"201": 20.0, "503": 4.0})

    check = reconcile(before, after, {201: 60, 503: 15}, unanswered=0)

    assert check.state == "mismatch"
    assert lines_of(check)["201"] == (-480, 60)
    assert any("went down" in note and "restarted" in note for note in check.notes)


@pytest.mark.parametrize(
    ("after_201", "expect_note"),
    [pytest.param(13.0, True, id="mentioned-on-mismatch"), pytest.param(10.0, False, id="not-mentioned-when-ok")],
)
def test_unanswered_attempts_are_mentioned_on_mismatch(after_201: float, expect_note: bool) -> None:
    """Attempts that got no answer may explain a mismatch, so their number is in the notes then."""
    check = reconcile(Snapshot({}), Snapshot({"201": after_201}), {201: 10}, unanswered=3)

    noted = any("3 attempts got no answer" in note for note in check.notes)
    assert noted is expect_note
    assert check.state == ("mismatch" if expect_note else "ok")


def test_statuses_seen_by_one_side_only_are_listed() -> None:
    """A status only the sink counted, or only the importer received, gets its own line and is a mismatch."""
    before = Snapshot({"201": 5.0})
    after = Snapshot({"201": 15.0, "500": 2.0})

    check = reconcile(before, after, {201: 10, 429: 4}, unanswered=0)

    lines = lines_of(check)
    assert lines["500"] == (2, 0)
    assert lines["429"] == (0, 4)
    assert set(lines) == {"201", "400", "429", "500", "503"}
    assert [line.status for line in check.lines] == sorted(lines)
    assert check.state == "mismatch"


def test_labels_that_are_not_statuses_are_ignored() -> None:
    """A sink_post_total series without a numeric status label does not become a line."""
    check = reconcile(Snapshot({"": 1.0}), Snapshot({"": 9.0, "201": 1.0}), {201: 1}, unanswered=0)

    assert set(lines_of(check)) == {"201", "400", "503"}
    assert check.state == "ok"


def test_float_counters_become_whole_deltas() -> None:
    """Prometheus values are floats; deltas are reported as whole numbers."""
    check = reconcile(Snapshot({"201": 3.0}), Snapshot({"201": 10.0}), {201: 7}, unanswered=0)

    delta = check.lines[0].sink_delta
    assert delta == 7
    assert isinstance(delta, int)


def test_as_dict_is_what_summary_json_holds() -> None:
    """as_dict() gives the state, each status with sink delta, importer count and match, and the notes."""
    check = reconcile(Snapshot({}), Snapshot({"201": 2.0, "503": 1.0}), {201: 2, 503: 2}, unanswered=0)

    assert check.as_dict() == {
        "state": "mismatch",
        "statuses": {
            "201": {"sink_delta": 2, "importer_saw": 2, "match": True},
            "400": {"sink_delta": 0, "importer_saw": 0, "match": True},
            "503": {"sink_delta": 1, "importer_saw": 2, "match": False},
        },
        "notes": check.notes,
    }
    assert check.notes


def test_a_check_that_did_not_run_has_no_lines() -> None:
    """A skipped or unavailable check is just a state and notes."""
    check = Reconciliation("unavailable", notes=["the metrics endpoint could not be read before the run"])

    assert check.as_dict() == {
        "state": "unavailable",
        "statuses": {},
        "notes": ["the metrics endpoint could not be read before the run"],
    }
