"""One frozen settings object: .env, then the environment, then command-line flags.

pydantic-settings gives exactly that precedence (init arguments > environment >
dotenv file > defaults) and turns every value into its type once, at the
boundary; no other module reads os.environ.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from movymporter.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DELIMITER_NAMES = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "\t": "\t", "tab": "\t", "\\t": "\t"}
DELIMITER_NAMES |= {"|": "|", "pipe": "|"}
SECRET_FIELDS = frozenset({"auth_token"})
INPUT_ENCODING = "input"
"""REPORT_ENCODING's word for: write the reports in the input's own encoding."""


def setting(default: Any, *, help: str, accepted: str, flag: str | None = None, **constraints: Any) -> Any:
    """A field with all the CLI and error messages say about it: --help, the flag and the values it accepts.

    `flag` is "--name METAVAR" for a valued flag, "--name" for a switch."""
    return Field(default, description=help, json_schema_extra={"accepted": accepted, "flag": flag}, **constraints)


class Settings(BaseSettings):
    """Everything a run needs to know, validated once. The field order is the order of --help."""

    model_config = SettingsConfigDict(env_file_encoding="utf-8", frozen=True, extra="ignore", case_sensitive=False)

    csv_in: Path | None = setting(None, help="CSV file to import", accepted="the path of a CSV file", flag="--csv PATH")
    url_out: str = setting(
        "http://localhost:9009/movies",
        help="endpoint for one JSON film per POST",
        accepted="an http:// or https:// URL, e.g. http://localhost:9009/movies",
        flag="--url URL",
    )
    metrics_url: str | None = setting(
        None,
        help="the sink's Prometheus metrics; default: URL_OUT's origin + /metrics",
        accepted="an http:// or https:// URL; empty means the origin of URL_OUT plus /metrics",
        flag="--metrics-url URL",
    )
    report_dir: Path = setting(
        Path("reports"),
        help="where rejected.csv, duplicates.csv and summary.json go",
        accepted="a directory path",
        flag="--report-dir DIR",
    )
    concurrency: int = setting(
        16, help="POST requests in flight at once", accepted="a whole number from 1 to 512", flag="--concurrency N",
        ge=1, le=512,
    )  # fmt: skip
    workers: int = setting(
        2,
        help="processes that send, sharing CONCURRENCY; 1 = send from the importer's own process",
        accepted="a whole number from 1 to 32",
        flag="--workers N",
        ge=1,
        le=32,
    )
    engine: Literal["local", "dask"] = setting(
        "local",
        help="what sends: local = this machine (threads or WORKERS processes), dask = a Dask cluster",
        accepted="local or dask",
        flag="--engine NAME",
    )
    dask_scheduler: str | None = setting(
        None,
        help="with --engine dask: the scheduler of a running cluster; default: start a local one",
        accepted="a Dask scheduler address such as tcp://10.0.0.5:8786; empty means start a LocalCluster",
        flag="--scheduler ADDRESS",
    )
    adaptive: bool = setting(
        False,
        help=(
            "adapt requests in flight to the sink (AIMD): fewer on 429, Retry-After, a rising 503 rate "
            "or latency; CONCURRENCY is the ceiling"
        ),
        accepted="true or false",
        flag="--adaptive",
    )
    read_timeout: float = setting(
        10.0, help="seconds to wait for an answer", accepted="a number of seconds greater than 0", flag="--timeout S",
        gt=0,
    )  # fmt: skip
    connect_timeout: float = setting(
        3.0, help="seconds to connect", accepted="a number of seconds greater than 0", flag="--connect-timeout S", gt=0
    )
    max_attempts: int = setting(
        15, help="attempts per row, the first included", accepted="a whole number from 1 to 100",
        flag="--max-attempts N", ge=1, le=100,
    )  # fmt: skip
    stop_on_errors: int = setting(
        0,
        help="stop once this run has rejected N rows (rows an earlier run rejected do not count); 0 = never",
        accepted="0 (import everything possible) or a positive number of rejected rows",
        flag="--stop-on-errors N",
        ge=0,
    )
    delimiter: str | None = setting(
        None,
        help="one of , ; | tab; default: detected",
        accepted="one of , ; | tab (or comma, semicolon, pipe); empty means detect",
        flag="--delimiter D",
    )
    encoding: str | None = setting(
        None,
        help="e.g. utf-8, cp1252; default: detected",
        accepted="a Python text codec such as utf-8, utf-8-sig, cp1252, latin-1; empty means detect",
        flag="--encoding NAME",
    )
    report_encoding: str = setting(
        "utf-8-sig",
        help="encoding of rejected.csv and duplicates.csv; input = the input's own",
        accepted=(
            "input (the input file's encoding) or a Python text codec such as utf-8-sig (UTF-8 with a byte-order "
            "mark), utf-8, cp1252"
        ),
        flag="--report-encoding NAME",
    )
    log_level: LogLevel = setting(
        "INFO", help="logging threshold on stderr", accepted="one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        flag="--log-level LEVEL",
    )  # fmt: skip
    dry_run: bool = setting(
        False, help="validate and write the reports, send nothing", accepted="true or false", flag="--dry-run"
    )
    keep_duplicates: bool = setting(
        False, help="also send rows equal to an earlier row", accepted="true or false", flag="--keep-duplicates"
    )
    fresh: bool = setting(
        False, help="ignore what earlier runs of this file delivered; send every row", accepted="true or false",
        flag="--fresh",
    )  # fmt: skip
    fast_path: bool = setting(
        True,
        help="recognise plainly valid rows without the pydantic model (same results, faster); false = model only",
        accepted="true or false",
    )
    backoff_initial: float = setting(
        0.05, help="the first retry waits up to this many seconds", accepted="a number of seconds, 0 or more", ge=0
    )
    backoff_max: float = setting(
        5.0, help="the longest wait between two attempts", accepted="a number of seconds, 0 or more", ge=0
    )
    retry_after_max: float = setting(
        60.0, help="cap on a Retry-After the sink asks for", accepted="a number of seconds, 0 or more", ge=0
    )
    unreachable_after: float = setting(
        60.0, help="stop when the sink gave no usable answer for this long", accepted="a number of seconds above 0",
        gt=0,
    )  # fmt: skip
    progress_interval: float = setting(
        10.0, help="seconds between stats lines when not on a terminal", accepted="a number of seconds above 0", gt=0
    )
    state_dir: Path = setting(Path(".state"), help="where the resume state is kept", accepted="a directory path")
    sync: Literal["normal", "full"] = setting(
        "normal",
        help=(
            "how far each delivery is written before the next: normal = to the OS (outlives a killed importer), "
            "full = to the disk (outlives a power loss; a disk flush per row)"
        ),
        accepted="normal or full",
    )
    auth_token: SecretStr | None = setting(
        None,
        help="bearer token for the sink; never logged",
        accepted="a bearer token (sent as 'Authorization: Bearer <token>'); empty means none",
    )
    ca_bundle: Path | None = setting(
        None,
        help="CA certificates to verify the sink's TLS certificate",
        accepted="the path of a PEM file of CA certificates; empty means the system's",
    )

    @field_validator("url_out")
    @classmethod
    def _url_out(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty")
        cls._http_url(value)
        return value

    @field_validator("metrics_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise ValueError("its port is not a number from 0 to 65535") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("sync", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        name = value if value in DELIMITER_NAMES else str(value).strip().lower()
        if name not in DELIMITER_NAMES:
            raise ValueError("unsupported delimiter")
        return DELIMITER_NAMES[name]

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding(cls, value: Any) -> str | None:
        if value is None or str(value).strip() == "":
            return None
        name = str(value).strip()
        try:
            "".encode(name)  # LookupError for unknown names and for codecs such as base64 that are not text
            return codecs.lookup(name).name
        except LookupError:
            raise ValueError("unknown text encoding") from None

    @field_validator("report_encoding", mode="before")
    @classmethod
    def _report_encoding(cls, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() == INPUT_ENCODING:
            return INPUT_ENCODING
        return cls._encoding(value) or "utf-8-sig"

    @field_validator("csv_in", "ca_bundle", "auth_token", "dask_scheduler", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @property
    def durable(self) -> bool:
        """SYNC=full: each journal entry and state save is on the disk before the run goes on."""
        return self.sync == "full"

    @property
    def metrics_endpoint(self) -> str:
        """The sink's /metrics: METRICS_URL, or the origin of URL_OUT."""
        if self.metrics_url:
            return self.metrics_url
        parts = urlsplit(self.url_out)
        return f"{parts.scheme}://{parts.netloc}/metrics"


def _extra(field: str) -> dict[str, Any]:
    extra = Settings.model_fields[field].json_schema_extra
    assert isinstance(extra, dict)
    return extra


ACCEPTED: dict[str, str] = {name: _extra(name)["accepted"] for name in Settings.model_fields}
"""What each setting accepts, in words, for error messages."""
FLAGS: dict[str, str] = {
    name: _extra(name)["flag"].split()[0] for name in Settings.model_fields if _extra(name)["flag"]
}
"""The command-line flag of each setting that has one."""


def setting_name(field: str) -> str:
    """How a user names a setting: the variable, and the flag when there is one."""
    flag = FLAGS.get(field)
    return f"{field.upper()} ({flag})" if flag else field.upper()


def load_settings(overrides: dict[str, Any] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Build the settings or raise ConfigError with one paragraph per bad value."""
    try:
        settings = Settings(_env_file=env_file, **(overrides or {}))  # type: ignore[call-arg]
    except UnicodeDecodeError:
        raise ConfigError(
            f"{env_file} is not UTF-8 text; save it as UTF-8 (settings files are read as UTF-8)"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read the settings file {env_file}: {error.strerror or error}") from None
    except ValidationError as error:
        paragraphs = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            reason = problem["msg"].removeprefix("Value error, ")
            shown = "(hidden)" if field in SECRET_FIELDS else repr(problem["input"])
            paragraphs.append(
                f"{setting_name(field)} is {shown}: {reason}. Accepted: {ACCEPTED.get(field, 'see --help')}."
            )
        raise ConfigError("\n".join(paragraphs)) from None
    return settings


def exposed_secrets(env_file: Path | None) -> list[str]:
    """Secret settings held in an env file that users other than its owner can read."""
    if env_file is None or not env_file.is_file() or not env_file.stat().st_mode & 0o077:
        return []
    try:
        keys = {key.upper() for key, value in dotenv_values(env_file, encoding="utf-8").items() if value}
    except UnicodeDecodeError:
        return []
    return sorted(name.upper() for name in SECRET_FIELDS if name.upper() in keys)


def unknown_env_file_keys(env_file: Path | None) -> list[str]:
    """Keys of the .env file that no setting uses: usually a typo worth a warning."""
    if env_file is None or not env_file.is_file():
        return []
    known = {name.upper() for name in Settings.model_fields}
    try:
        keys = list(dotenv_values(env_file, encoding="utf-8"))
    except (UnicodeDecodeError, OSError):
        return []  # load_settings has already said what is wrong with the file
    return [key for key in keys if key.upper() not in known and not key.upper().startswith("SINK_")]
