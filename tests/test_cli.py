"""The command line as a user runs it: exit statuses, messages, .env, signals, help."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from movymporter.cli import build_parser, main
from movymporter.settings import Settings
from movymporter.status import ExitStatus
from tests.conftest import ROOT, Relay, RunningSink, child_pids, is_running, wait_for_log, wait_until, write_films

GOOD = "title,year\nA,2000\nB,2001\n"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m movymporter ...` in a folder of the test's own, as a user would type it."""
    base = {key: value for key, value in os.environ.items() if key.isupper() and not key.startswith(("CSV", "URL"))}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "movymporter", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(
            ["--concurrency", "lots"],
            ["CONCURRENCY (--concurrency)", "whole number from 1 to 512"],
            id="concurrency-not-a-number",
        ),
        pytest.param(
            ["--concurrency", "0"], ["CONCURRENCY (--concurrency)", "whole number from 1 to 512"], id="concurrency-zero"
        ),
        pytest.param(["--url", "ftp://x/y"], ["URL_OUT (--url)", "http:// or https://"], id="url-not-http"),
        pytest.param(["--log-level", "LOUD"], ["LOG_LEVEL (--log-level)", "DEBUG, INFO"], id="unknown-log-level"),
        pytest.param(["--delimiter", "#"], ["DELIMITER (--delimiter)", "tab"], id="unsupported-delimiter"),
        pytest.param(["--encoding", "klingon"], ["ENCODING (--encoding)", "codec"], id="unknown-encoding"),
        pytest.param(["--stop-on-errors", "-1"], ["STOP_ON_ERRORS (--stop-on-errors)"], id="negative-stop-on-errors"),
        pytest.param([], ["CSV_IN (--csv) is not set"], id="no-input-file"),
        pytest.param(["--csv", "missing.csv"], ["no such file: missing.csv"], id="missing-file"),
        pytest.param(["--csv", "."], ["is a directory"], id="directory-as-input"),
    ],
)
def test_bad_settings_and_inputs_exit_2_with_a_clear_message(
    args: list[str],
    fragments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Usage problems are one message on stderr naming what to fix, exit 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "films.csv").write_text(GOOD)
    if args and args[0] != "--csv":
        args = ["--csv", "films.csv", *args]

    status = main(args)

    err = capsys.readouterr().err
    assert status == ExitStatus.USAGE
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_missing_required_column_stops_before_anything_is_sent(reliable_sink: RunningSink, tmp_path: Path) -> None:
    """A file without a title column is refused up front: exit 2, the columns found are listed, no POST."""
    (tmp_path / "films.csv").write_text("name,year\nA,2000\n")

    result = run_cli("--csv", "films.csv", "--url", reliable_sink.movies_url, cwd=tmp_path)

    assert result.returncode == ExitStatus.USAGE
    assert "required column title not found" in result.stderr
    assert "'name'" in result.stderr
    assert "Traceback" not in result.stderr
    assert reliable_sink.post_counts() == {}


def test_sink_not_running_exits_3_with_a_hint(tmp_path: Path) -> None:
    """Nothing listening at URL_OUT stops at once (exit 3) and says how to start the local sink."""
    (tmp_path / "films.csv").write_text(GOOD)

    result = run_cli("--csv", "films.csv", "--url", "http://127.0.0.1:9/movies", cwd=tmp_path)

    assert result.returncode == ExitStatus.STOPPED
    assert "cannot connect to 127.0.0.1:9" in result.stderr
    assert "bin/setup" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dotenv_then_environment_then_flags(reliable_sink: RunningSink, tmp_path: Path) -> None:
    """.env is read from the working directory; the environment overrides it and a flag overrides both."""
    (tmp_path / "films.csv").write_text(GOOD)
    (tmp_path / ".env").write_text(
        f"CSV_IN=films.csv\nURL_OUT={reliable_sink.movies_url}\nREPORT_DIR=from-dotenv\nCONCURRENCY=3\n"
    )

    result = run_cli("--report-dir", "from-flag", cwd=tmp_path, env={"REPORT_DIR": "from-env", "CONCURRENCY": "2"})

    assert result.returncode == ExitStatus.OK, result.stderr
    assert (tmp_path / "from-flag" / "summary.json").exists()
    assert not (tmp_path / "from-env").exists()
    assert not (tmp_path / "from-dotenv").exists()
    assert "2 requests in flight at most" in result.stderr
    assert len(reliable_sink.stored()) == 2


@pytest.mark.slow
def test_a_typo_in_dotenv_is_warned_about(reliable_sink: RunningSink, tmp_path: Path) -> None:
    """An unknown key in .env is almost always a typo; it is named in a warning."""
    (tmp_path / "films.csv").write_text(GOOD)
    (tmp_path / ".env").write_text(f"CSV_IN=films.csv\nURL_OUT={reliable_sink.movies_url}\nCONCURENCY=4\n")

    result = run_cli(cwd=tmp_path)

    assert result.returncode == ExitStatus.OK
    assert "CONCURENCY is not a setting" in result.stderr


@pytest.mark.slow
def test_full_run_prints_the_summary_and_exits_1_when_rows_were_rejected(
    flaky_sink: RunningSink, tmp_path: Path
) -> None:
    """Against a 20 % 503 sink: summary on stdout, progress lines in the log, exit 1 for the rejected rows."""
    rows = "".join(f"Film {n},{1800 if n % 10 == 0 else 2000}\n" for n in range(300))
    (tmp_path / "films.csv").write_text("title,year\n" + rows)

    result = run_cli("--csv", "films.csv", "--url", flaky_sink.movies_url, cwd=tmp_path)

    assert result.returncode == ExitStatus.ROWS_NOT_DELIVERED, result.stderr
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert summary["delivered"] == 270 == len(flaky_sink.stored())
    assert summary["invalid"] == 30
    assert re.search(r"delivered\s+270", result.stdout)
    assert "metrics check: ok" in result.stdout
    assert "constraint-error: year must be from 1888 to" in result.stdout
    assert "progress:" in result.stderr


def start_importer(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m movymporter ARGS` in tmp_path, its stderr to tmp_path/importer.log (which a test can watch)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "importer.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "movymporter", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )


@pytest.mark.slow
def test_sigint_drains_writes_reports_and_exits_130(
    start_sink: Callable[..., RunningSink], relay_to: Callable[[RunningSink], Relay], tmp_path: Path
) -> None:
    """Ctrl-C: stop reading, finish what is in flight, write every report, exit 130."""
    sink = start_sink(failure_rate=0)
    relay = relay_to(sink)
    relay.hold_after(50)
    write_films(tmp_path, 2000)
    process = start_importer(tmp_path, "--csv", "films.csv", "--url", relay.movies_url, "--concurrency", "4")
    wait_until(lambda: relay.held > 0 or process.poll() is not None, "the importer never sent 50 rows")
    process.send_signal(signal.SIGINT)  # with requests in flight, held at the relay
    wait_for_log(tmp_path / "importer.log", "SIGINT: finishing the requests in flight", process)
    relay.release()
    out, _ = process.communicate(timeout=120)
    err = (tmp_path / "importer.log").read_text()

    assert process.returncode == ExitStatus.INTERRUPTED, err
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert summary["stopped"].startswith("interrupted")
    assert summary["delivered"] == len(sink.stored()) > 50, "the requests in flight at the Ctrl-C were not drained"
    assert "Traceback" not in err
    assert "stopped: interrupted" in out.decode()


def test_version() -> None:
    """--version prints the package version."""
    result = subprocess.run(
        [sys.executable, "-m", "movymporter", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert re.fullmatch(r"movymporter \d+\.\d+\.\d+\n", result.stdout)


def test_every_option_has_help_and_is_in_the_readme() -> None:
    """The --help text and the README agree: each flag is documented in both, and the README names every setting."""
    readme = (ROOT / "README.md").read_text()
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                assert action.help, flag
                assert f"`{flag}" in readme, f"{flag} is missing from README.md"
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in readme, f"the setting {name.upper()} is missing from README.md"


@pytest.mark.slow
def test_the_token_never_appears_in_any_output(reliable_sink: RunningSink, tmp_path: Path) -> None:
    """Even at DEBUG, AUTH_TOKEN is not in stdout, stderr or any report; a readable .env gets a warning."""
    token = "s3cr3t-t0ken-value"
    (tmp_path / "films.csv").write_text("title,year\nA,2000\nB,1800\n")
    env_file = tmp_path / ".env"
    env_file.write_text(f"CSV_IN=films.csv\nURL_OUT={reliable_sink.movies_url}\nAUTH_TOKEN={token}\nLOG_LEVEL=DEBUG\n")
    env_file.chmod(0o644)

    result = run_cli(cwd=tmp_path)

    assert result.returncode == ExitStatus.ROWS_NOT_DELIVERED, result.stderr
    assert "holds AUTH_TOKEN and other users can read it: chmod 600" in result.stderr
    assert token not in result.stdout + result.stderr
    for report in (tmp_path / "reports").iterdir():
        assert token not in report.read_text(errors="replace"), report.name
    assert token not in reliable_sink.log_path.read_text()


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_and_the_rerun_completes_exactly_once(
    start_sink: Callable[..., RunningSink], relay_to: Callable[[RunningSink], Relay], tmp_path: Path
) -> None:
    """Two Ctrl-C: exit 130 without waiting for slow answers; the saved state is consistent, so a re-run finishes."""
    sink = start_sink(failure_rate=0)
    relay = relay_to(sink)
    relay.hold_after(20)  # the answers after the 20th never come while the first run lives
    write_films(tmp_path, 60)
    args = ["--csv", "films.csv", "--url", relay.movies_url, "--concurrency", "20", "--timeout", "30"]
    process = start_importer(tmp_path, *args)
    wait_until(lambda: relay.held > 0 or process.poll() is not None, "the importer never sent 20 rows")
    workers = child_pids(process.pid)
    process.send_signal(signal.SIGINT)
    wait_for_log(tmp_path / "importer.log", "SIGINT: finishing the requests in flight", process)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    still_held = relay.held
    err = (tmp_path / "importer.log").read_text()

    assert process.returncode == ExitStatus.INTERRUPTED, err
    assert still_held > 0, "the second Ctrl-C waited for the answers in flight"
    assert "interrupted at once" in err
    assert "Traceback" not in err
    relay.release()  # the held requests reach the sink now, as if their answers had only been slow
    wait_until(lambda: not any(map(is_running, workers)), "a worker outlived the importer")
    wait_until(relay.settled, "the sink did not answer the requests of the first run")
    rerun = run_cli(*args, cwd=tmp_path, timeout=120)
    assert rerun.returncode == ExitStatus.OK, rerun.stderr
    titles = [film["title"] for film in sink.stored()]
    assert sorted(titles) == sorted(f"Film {n}" for n in range(60))
