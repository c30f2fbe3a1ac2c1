"""Settings: .env < environment < flags, defaults, normalised values, and errors that name the setting."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pydantic
import pytest

from movymporter.errors import ConfigError
from movymporter.settings import ACCEPTED, FLAGS, Settings, exposed_secrets, load_settings, unknown_env_file_keys


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the developer's environment and no .env of the checkout leaks into these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.env"
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_file", "in_environment", "override", "expected"),
    [
        pytest.param(None, None, None, 16, id="default-when-set-nowhere"),
        pytest.param("4", None, None, 4, id="env-file-beats-default"),
        pytest.param("4", "8", None, 8, id="environment-beats-env-file"),
        pytest.param("4", "8", 12, 12, id="flag-beats-environment"),
        pytest.param("4", None, 12, 12, id="flag-beats-env-file"),
        pytest.param(None, "8", None, 8, id="environment-alone"),
    ],
)
def test_precedence_is_env_file_then_environment_then_flags(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_file: str | None,
    in_environment: str | None,
    override: int | None,
    expected: int,
) -> None:
    """A value set in several places comes from the flag, else the environment, else .env, else the default."""
    env_file = write_env(tmp_path, f"CONCURRENCY={in_file}\n" if in_file else "")
    if in_environment is not None:
        monkeypatch.setenv("CONCURRENCY", in_environment)
    overrides = {"concurrency": override} if override is not None else {}

    assert load_settings(overrides, env_file).concurrency == expected


def test_each_source_can_set_a_different_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources merge setting by setting: each one only wins for what it sets."""
    env_file = write_env(
        tmp_path,
        "URL_OUT=http://from-dotenv:9009/movies\nLOG_LEVEL=debug\nREPORT_DIR=from-dotenv\nSTOP_ON_ERRORS=3\n",
    )
    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.setenv("STOP_ON_ERRORS", "5")

    settings = load_settings({"stop_on_errors": 9}, env_file)

    assert settings.url_out == "http://from-dotenv:9009/movies"
    assert settings.report_dir == Path("from-dotenv")
    assert settings.log_level == "WARNING"
    assert settings.stop_on_errors == 9


def test_environment_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """log_level in the environment sets LOG_LEVEL too."""
    monkeypatch.setenv("log_level", "ERROR")

    assert load_settings({}, None).log_level == "ERROR"


def test_load_settings_reads_dot_env_in_the_working_directory_by_default(tmp_path: Path) -> None:
    """Without an explicit env_file, ./.env is read."""
    (tmp_path / ".env").write_text("MAX_ATTEMPTS=7\n", encoding="utf-8")

    assert load_settings().max_attempts == 7


def test_env_file_none_reads_no_file(tmp_path: Path) -> None:
    """env_file=None ignores any .env, even one in the working directory."""
    (tmp_path / ".env").write_text("MAX_ATTEMPTS=7\n", encoding="utf-8")

    assert load_settings({}, None).max_attempts == 15


def test_sink_keys_in_the_env_file_are_ignored(tmp_path: Path) -> None:
    """The shared .env also configures the sink; its SINK_* keys are not an error for the importer."""
    env_file = write_env(tmp_path, "SINK_PORT=9009\nSINK_FAILURE_RATE=0.2\nURL_OUT=http://127.0.0.1:9009/movies\n")

    assert load_settings({}, env_file).url_out == "http://127.0.0.1:9009/movies"


def test_the_example_env_file_is_valid(tmp_path: Path) -> None:
    """.env.example, copied as is, gives valid settings."""
    example = Path(__file__).resolve().parent.parent / ".env.example"

    settings = load_settings({}, example)

    assert settings.url_out == "http://localhost:9009/movies"
    assert settings.metrics_endpoint == "http://localhost:9009/metrics"
    assert settings.delimiter is None
    assert settings.encoding is None
    assert unknown_env_file_keys(example) == []


# --- defaults -------------------------------------------------------------------------------------------


def test_defaults() -> None:
    """With nothing set, the defaults are those of the spec."""
    settings = load_settings({}, None)

    assert settings.url_out == "http://localhost:9009/movies"
    assert settings.log_level == "INFO"
    assert settings.report_dir == Path("reports")
    assert settings.stop_on_errors == 0
    assert settings.metrics_endpoint == "http://localhost:9009/metrics"
    assert settings.csv_in is None
    assert settings.delimiter is None
    assert settings.encoding is None
    assert (settings.dry_run, settings.keep_duplicates, settings.fresh) == (False, False, False)
    # At a 20 % 503 rate, 10 attempts or more lose practically no row (spec section 3).
    assert settings.max_attempts >= 10
    assert settings.concurrency > 1


def test_settings_are_frozen() -> None:
    """Settings cannot change once built."""
    settings = load_settings({}, None)

    with pytest.raises(pydantic.ValidationError):
        settings.concurrency = 3  # type: ignore[misc]


# --- derived and normalised values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_out", "metrics_url", "expected"),
    [
        pytest.param("http://localhost:9009/movies", None, "http://localhost:9009/metrics", id="default-origin"),
        pytest.param(
            "https://sink.example.org:8443/api/v1/movies?x=1",
            None,
            "https://sink.example.org:8443/metrics",
            id="origin",
        ),
        pytest.param("http://127.0.0.1:9009/movies", "", "http://127.0.0.1:9009/metrics", id="empty-means-derived"),
        pytest.param(
            "http://127.0.0.1:9009/movies", "http://127.0.0.1:9100/prom", "http://127.0.0.1:9100/prom", id="overridden"
        ),
    ],
)
def test_metrics_endpoint_is_url_out_origin_unless_set(url_out: str, metrics_url: str | None, expected: str) -> None:
    """metrics_endpoint is METRICS_URL when set, else URL_OUT's scheme and host with the path /metrics."""
    overrides: dict[str, Any] = {"url_out": url_out}
    if metrics_url is not None:
        overrides["metrics_url"] = metrics_url

    assert load_settings(overrides, None).metrics_endpoint == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(",", ",", id="comma"),
        pytest.param("comma", ",", id="comma-by-name"),
        pytest.param(";", ";", id="semicolon"),
        pytest.param("semicolon", ";", id="semicolon-by-name"),
        pytest.param("\t", "\t", id="tab-character"),
        pytest.param("tab", "\t", id="tab-by-name"),
        pytest.param("TAB", "\t", id="tab-upper-case"),
        pytest.param("\\t", "\t", id="tab-escaped"),
        pytest.param("|", "|", id="pipe"),
        pytest.param("pipe", "|", id="pipe-by-name"),
        pytest.param(" ; ", ";", id="spaces-trimmed"),
        pytest.param("", None, id="empty-means-detect"),
    ],
)
def test_delimiter_names_are_normalised(given: str, expected: str | None) -> None:
    """A delimiter given by character or name becomes the character; empty means detect."""
    assert load_settings({"delimiter": given}, None).delimiter == expected


def test_delimiter_tab_from_the_env_file(tmp_path: Path) -> None:
    """DELIMITER=tab in .env is a tab."""
    assert load_settings({}, write_env(tmp_path, "DELIMITER=tab\n")).delimiter == "\t"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("utf-8", "utf-8", id="utf-8"),
        pytest.param("UTF8", "utf-8", id="alias-upper-case"),
        pytest.param("utf-8-sig", "utf-8-sig", id="utf-8-sig"),
        pytest.param("CP1252", "cp1252", id="cp1252"),
        pytest.param("windows-1252", "cp1252", id="windows-1252"),
        pytest.param("latin-1", "iso8859-1", id="latin-1"),
        pytest.param(" utf-8 ", "utf-8", id="spaces-trimmed"),
        pytest.param("", None, id="empty-means-detect"),
    ],
)
def test_encoding_is_validated_and_normalised_by_codecs(given: str, expected: str | None) -> None:
    """An encoding is looked up in codecs and stored under its canonical name; empty means detect."""
    assert load_settings({"encoding": given}, None).encoding == expected


@pytest.mark.parametrize("codec", ["base64", "hex", "zlib", "rot13"])
def test_encoding_that_is_not_a_text_encoding_is_a_config_error(codec: str) -> None:
    """A codec that cannot decode a file into text (base64, rot13, ...) is refused like an unknown name."""
    with pytest.raises(ConfigError, match=r"^ENCODING \(--encoding\)"):
        load_settings({"encoding": codec}, None)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("debug", "DEBUG"), ("Info", "INFO"), (" warning ", "WARNING"), ("ERROR", "ERROR"), ("critical", "CRITICAL")],
)
def test_log_level_is_case_insensitive(given: str, expected: str) -> None:
    """LOG_LEVEL accepts any case and surrounding spaces."""
    assert load_settings({"log_level": given}, None).log_level == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("no", False)],
)
def test_booleans_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, given: str, expected: bool) -> None:
    """DRY_RUN, KEEP_DUPLICATES and FRESH accept true/false, 1/0 and yes/no."""
    for name in ("DRY_RUN", "KEEP_DUPLICATES", "FRESH"):
        monkeypatch.setenv(name, given)

    settings = load_settings({}, None)

    assert (settings.dry_run, settings.keep_duplicates, settings.fresh) == (expected, expected, expected)


@pytest.mark.parametrize("name", ["CSV_IN", "DASK_SCHEDULER"])
def test_empty_means_not_set(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """CSV_IN= or DASK_SCHEDULER= (empty, as a copied .env.example leaves them) means not set: no file, not the
    current directory; a LocalCluster, not a scheduler at ''."""
    monkeypatch.setenv(name, "")

    assert getattr(load_settings({}, None), name.lower()) is None


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "named", "accepted"),
    [
        pytest.param("concurrency", "0", "CONCURRENCY (--concurrency)", "1 to 512", id="concurrency-zero"),
        pytest.param("concurrency", "many", "CONCURRENCY (--concurrency)", "1 to 512", id="concurrency-not-a-number"),
        pytest.param("concurrency", "513", "CONCURRENCY (--concurrency)", "1 to 512", id="concurrency-too-high"),
        pytest.param("max_attempts", "0", "MAX_ATTEMPTS (--max-attempts)", "1 to 100", id="max-attempts-zero"),
        pytest.param("read_timeout", "-1", "READ_TIMEOUT (--timeout)", "greater than 0", id="read-timeout-negative"),
        pytest.param(
            "connect_timeout", "0", "CONNECT_TIMEOUT (--connect-timeout)", "greater than 0", id="connect-timeout-zero"
        ),
        pytest.param("url_out", "ftp://sink/movies", "URL_OUT (--url)", "http:// or https://", id="url-ftp"),
        pytest.param("url_out", "localhost:9009/movies", "URL_OUT (--url)", "http:// or https://", id="url-no-scheme"),
        pytest.param("metrics_url", "metrics", "METRICS_URL (--metrics-url)", "http:// or https://", id="metrics-url"),
        pytest.param("log_level", "verbose", "LOG_LEVEL (--log-level)", "DEBUG, INFO, WARNING", id="log-level"),
        pytest.param("stop_on_errors", "-1", "STOP_ON_ERRORS (--stop-on-errors)", "0 (import", id="stop-negative"),
        pytest.param("stop_on_errors", "1.5", "STOP_ON_ERRORS (--stop-on-errors)", "0 (import", id="stop-fraction"),
        pytest.param("delimiter", "#", "DELIMITER (--delimiter)", ", ; | tab", id="delimiter"),
        pytest.param("encoding", "klingon", "ENCODING (--encoding)", "utf-8, utf-8-sig, cp1252", id="encoding"),
        pytest.param("dry_run", "maybe", "DRY_RUN (--dry-run)", "true or false", id="dry-run"),
        pytest.param("keep_duplicates", "perhaps", "KEEP_DUPLICATES (--keep-duplicates)", "true or false", id="keep"),
        pytest.param("backoff_initial", "-0.5", "BACKOFF_INITIAL", "0 or more", id="backoff-negative-no-flag"),
        pytest.param("unreachable_after", "0", "UNREACHABLE_AFTER", "greater than 0", id="unreachable-no-flag"),
        pytest.param("engine", "spark", "ENGINE (--engine)", "local or dask", id="engine-unknown"),
        pytest.param("fast_path", "sometimes", "FAST_PATH", "true or false", id="fast-path-no-flag"),
    ],
)
@pytest.mark.parametrize("source", ["flag", "environment"])
def test_bad_value_is_a_config_error_naming_setting_flag_and_accepted_values(
    monkeypatch: pytest.MonkeyPatch, source: str, field: str, value: str, named: str, accepted: str
) -> None:
    """A bad value from a flag or the environment is a ConfigError naming variable, flag, value and what is accepted."""
    overrides = {}
    if source == "flag":
        overrides[field] = value
    else:
        monkeypatch.setenv(field.upper(), value)

    with pytest.raises(ConfigError) as caught:
        load_settings(overrides, None)

    message = str(caught.value)
    assert message.startswith(named + " is ")
    assert repr(value) in message or value.upper() in message
    assert f"Accepted: {ACCEPTED[field]}" in message
    assert accepted in message
    assert "\n" not in message
    assert "pydantic" not in message


def test_every_bad_value_gets_its_own_paragraph() -> None:
    """Several bad values give one paragraph each, so the user fixes them all in one go."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"concurrency": "0", "delimiter": "#", "url_out": "nope"}, None)

    paragraphs = str(caught.value).splitlines()
    assert len(paragraphs) == 3
    assert sorted(paragraph.split(" ")[0] for paragraph in paragraphs) == ["CONCURRENCY", "DELIMITER", "URL_OUT"]


def test_bad_value_in_the_env_file_is_a_config_error(tmp_path: Path) -> None:
    """A bad value in .env is reported like any other, naming the setting."""
    with pytest.raises(ConfigError, match=r"^MAX_ATTEMPTS \(--max-attempts\) is '0'"):
        load_settings({}, write_env(tmp_path, "MAX_ATTEMPTS=0\n"))


@pytest.mark.parametrize("source", ["flag", "environment"])
def test_empty_url_out_is_a_config_error(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """URL_OUT set to nothing is a bad setting named in a ConfigError, not a None URL."""
    overrides = {"url_out": ""} if source == "flag" else {}
    if source == "environment":
        monkeypatch.setenv("URL_OUT", "")

    with pytest.raises(ConfigError, match=r"^URL_OUT \(--url\)"):
        load_settings(overrides, None)


def test_env_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A .env file in another encoding is a ConfigError that names the file, not a traceback."""
    env_file = tmp_path / "settings.env"
    env_file.write_bytes("CSV_IN=données.csv\n".encode("cp1252"))

    with pytest.raises(ConfigError, match=r"settings\.env"):
        load_settings({}, env_file)


# --- unknown keys and documentation tables ---------------------------------------------------------------


def test_unknown_env_file_keys_reports_typos_but_not_sink_keys(tmp_path: Path) -> None:
    """Keys no setting uses are reported (likely typos); settings in any case and the sink's SINK_* keys are not."""
    env_file = write_env(
        tmp_path,
        "URL_OUTT=http://x/movies\n"
        "Log_Level=DEBUG\n"
        "concurrency=4\n"
        "SINK_PORT=9009\n"
        "sink_seed=7\n"
        "RETRIES=3\n"
        "# COMMENTED=1\n",
    )

    assert unknown_env_file_keys(env_file) == ["URL_OUTT", "RETRIES"]


@pytest.mark.parametrize("env_file", [None, Path("missing.env")], ids=["none", "missing-file"])
def test_unknown_env_file_keys_without_a_file_is_empty(env_file: Path | None) -> None:
    """No .env file means nothing to warn about."""
    assert unknown_env_file_keys(env_file) == []


def test_every_setting_says_what_it_accepts() -> None:
    """ACCEPTED has an entry for every field of Settings, and nothing else."""
    assert set(ACCEPTED) == set(Settings.model_fields)
    assert all(text.strip() for text in ACCEPTED.values())


def test_flags_belong_to_settings_and_include_the_spec_flags() -> None:
    """FLAGS names only real settings and includes every flag the spec requires."""
    assert set(FLAGS) <= set(Settings.model_fields)
    assert {"--csv", "--url", "--report-dir", "--concurrency", "--dry-run", "--stop-on-errors"} <= set(FLAGS.values())
    assert {"--keep-duplicates", "--fresh"} <= set(FLAGS.values())
    assert all(flag.startswith("--") for flag in FLAGS.values())


def test_every_setting_has_a_description() -> None:
    """Each field carries a description for --help and the README."""
    assert all(info.description for info in Settings.model_fields.values())


def test_the_token_never_shows_in_the_settings_repr() -> None:
    """AUTH_TOKEN is a secret: printing the settings does not reveal it."""
    settings = Settings(_env_file=None, auth_token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(settings)
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cr3t-token"


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    """A CA_BUNDLE that does not exist stops the run before anything is sent."""
    with pytest.raises(ConfigError, match=r"CA_BUNDLE is '.*nope.pem': no such file"):
        load_settings({"ca_bundle": str(tmp_path / "nope.pem")}, env_file=None)


@pytest.mark.parametrize(
    ("mode", "text", "exposed"),
    [
        pytest.param(0o644, "AUTH_TOKEN=abc\n", ["AUTH_TOKEN"], id="world-readable-token-is-flagged"),
        pytest.param(0o640, "AUTH_TOKEN=abc\n", ["AUTH_TOKEN"], id="group-readable-token-is-flagged"),
        pytest.param(0o600, "AUTH_TOKEN=abc\n", [], id="owner-only-is-fine"),
        pytest.param(0o644, "CSV_IN=a.csv\n", [], id="no-token-nothing-to-protect"),
        pytest.param(0o644, "AUTH_TOKEN=\n", [], id="empty-token-nothing-to-protect"),
    ],
)
def test_env_file_readable_by_others_with_a_token_is_reported(
    tmp_path: Path, mode: int, text: str, exposed: list[str]
) -> None:
    """A .env holding a token that other users can read is worth a warning."""
    env = write_env(tmp_path, text)
    env.chmod(mode)
    assert exposed_secrets(env) == exposed


@pytest.mark.parametrize("url", ["http://localhost:99999/movies", "http://localhost:port/movies"])
def test_a_bad_port_is_a_config_error(url: str) -> None:
    """A URL whose port is not a port is named as such, not met later as a traceback."""
    with pytest.raises(ConfigError, match=r"URL_OUT \(--url\) .*port is not a number from 0 to 65535"):
        load_settings({"url_out": url}, env_file=None)


def test_an_unreadable_settings_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A settings file that cannot be read is one clear paragraph (root reads any file, so open() refuses here)."""
    env = write_env(tmp_path, "CONCURRENCY=4\n")
    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(env):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)

    with pytest.raises(ConfigError, match=r"cannot read the settings file .*Permission denied"):
        load_settings({}, env_file=env)
