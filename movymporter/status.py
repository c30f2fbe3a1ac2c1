"""Exit statuses of the importer, the single place that defines them (SPEC section 3)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    """Every row was delivered or deliberately skipped (blank, duplicate)."""
    ROWS_NOT_DELIVERED = 1
    """Some rows were rejected (by validation or by the sink) or failed delivery."""
    USAGE = 2
    """Bad setting, unreadable input, missing required column: nothing was sent."""
    STOPPED = 3
    """The run stopped early: STOP_ON_ERRORS reached, sink unreachable, or a configuration answer (401/403/404/405)."""
    INTERRUPTED = 130
    """Ctrl-C or SIGTERM, after in-flight requests were drained and reports written."""
