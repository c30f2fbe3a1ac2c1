"""Scrape the sink's Prometheus /metrics before and after a run, and reconcile the deltas.

The exposition format is parsed by prometheus_client's own parser rather than
by regular expressions: label escaping, exemplars and HELP/TYPE lines are its
problem, not ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

POST_COUNTER = "sink_post_total"
CHECKED_STATUSES = ("201", "400", "503")
"""Always shown, even at zero: delivered rows, rows the sink refused, 503s seen."""


class MetricsUnavailable(Exception):
    """The metrics endpoint could not be read or parsed; the check is skipped with a warning."""


@dataclass(frozen=True)
class Snapshot:
    """sink_post_total by status label at one moment."""

    post: dict[str, float]


@dataclass(frozen=True)
class Line:
    status: str
    sink_delta: int
    importer_saw: int

    @property
    def matches(self) -> bool:
        return self.sink_delta == self.importer_saw


@dataclass(frozen=True)
class Reconciliation:
    state: str
    """ok, mismatch, unavailable or skipped."""
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "statuses": {
                line.status: {"sink_delta": line.sink_delta, "importer_saw": line.importer_saw, "match": line.matches}
                for line in self.lines
            },
            "notes": self.notes,
        }


def parse(text: str) -> Snapshot:
    post: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == POST_COUNTER:
                    if not math.isfinite(sample.value):
                        raise MetricsUnavailable(f"{POST_COUNTER} has the value {sample.value}")
                    status = sample.labels.get("status", "")
                    post[status] = post.get(status, 0.0) + sample.value
    except ValueError as error:
        raise MetricsUnavailable(f"not Prometheus text: {error}") from None
    return Snapshot(post)


def scrape(
    session: requests.Session,
    url: str,
    timeout: float,
    headers: dict[str, str] | None = None,
    verify: str | bool = True,
    proxies: dict[str, str] | None = None,
) -> Snapshot:
    try:
        response = session.get(url, timeout=timeout, headers=headers, verify=verify, proxies=proxies)
    except requests.RequestException as error:
        raise MetricsUnavailable(f"{url}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise MetricsUnavailable(f"{url} answered {response.status_code}")
    return parse(response.text)


def reconcile(before: Snapshot, after: Snapshot, seen: dict[int, int], unanswered: int) -> Reconciliation:
    """Compare what the sink counted during the run with the answers the importer received."""
    statuses = sorted(set(CHECKED_STATUSES) | set(before.post) | set(after.post) | {str(status) for status in seen})
    lines = [
        Line(status, round(after.post.get(status, 0.0) - before.post.get(status, 0.0)), seen.get(int(status), 0))
        for status in statuses
        if status.isdigit()
    ]
    notes: list[str] = []
    if any(line.sink_delta < 0 for line in lines):
        notes.append("a counter went down: the sink restarted during the run, so its deltas are incomplete")
    mismatched = [line for line in lines if not line.matches]
    if mismatched:
        notes.append("someone else may be posting to the sink, or it restarted during the run")
        if unanswered:
            notes.append(f"{unanswered} attempts got no answer (timeouts, resets); the sink may have counted them")
    return Reconciliation("mismatch" if mismatched else "ok", lines, notes)
