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

# What each setting accepts, in words, for error messages. Keys are field names.
ACCEPTED: dict[str, str] = {
    "csv_in": "the path of a CSV file",
    "url_out": "an http:// or https:// URL, e.g. http://localhost:9009/movies",
    "metrics_url": "an http:// or https:// URL; empty means the origin of URL_OUT plus /metrics",
    "log_level": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "stop_on_errors": "0 (import everything possible) or a positive number of rejected rows",
    "report_dir": "a directory path",
    "concurrency": "a whole number from 1 to 512",
    "connect_timeout": "a number of seconds greater than 0",
    "read_timeout": "a number of seconds greater than 0",
    "max_attempts": "a whole number from 1 to 100",
    "backoff_initial": "a number of seconds, 0 or more",
    "backoff_max": "a number of seconds, 0 or more",
    "retry_after_max": "a number of seconds, 0 or more",
    "unreachable_after": "a number of seconds greater than 0",
    "delimiter": "one of , ; | tab (or comma, semicolon, pipe); empty means detect",
    "encoding": "a Python codec name such as utf-8, utf-8-sig, cp1252, latin-1; empty means detect",
    "keep_duplicates": "true or false (1/0, yes/no)",
    "dry_run": "true or false (1/0, yes/no)",
    "fresh": "true or false (1/0, yes/no)",
    "progress_interval": "a number of seconds greater than 0",
    "state_dir": "a directory path",
    "auth_token": "a bearer token (sent as 'Authorization: Bearer <token>'); empty means none",
    "ca_bundle": "the path of a PEM file of CA certificates; empty means the system's",
}
SECRET_FIELDS = frozenset({"auth_token"})

# Command-line flag of each setting that has one, for error messages and --help.
FLAGS: dict[str, str] = {
    "csv_in": "--csv",
    "url_out": "--url",
    "metrics_url": "--metrics-url",
    "log_level": "--log-level",
    "stop_on_errors": "--stop-on-errors",
    "report_dir": "--report-dir",
    "concurrency": "--concurrency",
    "connect_timeout": "--connect-timeout",
    "read_timeout": "--timeout",
    "max_attempts": "--max-attempts",
    "delimiter": "--delimiter",
    "encoding": "--encoding",
    "keep_duplicates": "--keep-duplicates",
    "dry_run": "--dry-run",
    "fresh": "--fresh",
}


class Settings(BaseSettings):
    """Everything a run needs to know, validated once."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
    )

    csv_in: Path | None = Field(None, description="CSV file to import")
    url_out: str = Field("http://localhost:9009/movies", description="endpoint that receives one JSON film per POST")
    metrics_url: str | None = Field(None, description="Prometheus endpoint of the sink (default: URL_OUT's origin)")
    log_level: LogLevel = Field("INFO", description="logging threshold on stderr")
    stop_on_errors: int = Field(0, ge=0, description="stop cleanly once this many rows were rejected; 0 = never")
    report_dir: Path = Field(Path("reports"), description="where rejected.csv, duplicates.csv, summary.json go")
    concurrency: int = Field(16, ge=1, le=512, description="POST requests in flight at once")
    connect_timeout: float = Field(3.0, gt=0, description="seconds to establish a connection")
    read_timeout: float = Field(10.0, gt=0, description="seconds to wait for the sink's answer")
    max_attempts: int = Field(15, ge=1, le=100, description="attempts per row, first included")
    backoff_initial: float = Field(0.05, ge=0, description="first retry waits up to this many seconds")
    backoff_max: float = Field(5.0, ge=0, description="longest wait between two attempts")
    retry_after_max: float = Field(60.0, ge=0, description="cap on a Retry-After the sink asks for")
    unreachable_after: float = Field(60.0, gt=0, description="stop when the sink has not answered for this long")
    delimiter: str | None = Field(None, description="field delimiter; detected when empty")
    encoding: str | None = Field(None, description="input encoding; detected when empty")
    keep_duplicates: bool = Field(False, description="send rows equal to an earlier row too")
    dry_run: bool = Field(False, description="validate and report; send nothing")
    fresh: bool = Field(False, description="ignore the resume state of earlier runs")
    progress_interval: float = Field(10.0, gt=0, description="seconds between stats lines when not on a terminal")
    state_dir: Path = Field(Path(".state"), description="where the resume state of each input is kept")
    auth_token: SecretStr | None = Field(None, description="bearer token for the sink; never logged")
    ca_bundle: Path | None = Field(None, description="CA certificates to verify the sink's TLS certificate")

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

    @field_validator("csv_in", "ca_bundle", "auth_token", mode="before")
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
    def metrics_endpoint(self) -> str:
        """The sink's /metrics: METRICS_URL, or the origin of URL_OUT."""
        if self.metrics_url:
            return self.metrics_url
        parts = urlsplit(self.url_out)
        return f"{parts.scheme}://{parts.netloc}/metrics"


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
    return [key for key in dotenv_values(env_file) if key.upper() not in known and not key.upper().startswith("SINK_")]
