"""The sink's settings, read from SINK_* environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SinkSettings(BaseSettings):
    """Defaults reproduce the original service; the rest exist for tests and benchmarks."""

    model_config = SettingsConfigDict(env_prefix="SINK_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind; 127.0.0.1 keeps it off the network")
    port: int = Field(9009, ge=0, le=65535, description="TCP port; 0 lets the OS pick one")
    failure_rate: float = Field(0.2, ge=0.0, le=1.0, description="share of POSTs answered 503")
    latency_ms: float = Field(0.0, ge=0.0, description="delay added before every POST is answered")
    seed: int | None = Field(None, description="seed of the 503 dice, for repeatable runs")
    db: str = Field(":memory:", description="SQLite file of accepted films")
    idempotency: bool = Field(
        True,
        description="honour Idempotency-Key (a repeat is answered 201, not stored again); off stores every request, "
        "as the original service does",
    )
    max_body_bytes: int = Field(1_048_576, ge=1, description="larger request bodies get 413")
    read_timeout_s: float = Field(2.0, gt=0.0, description="time allowed to receive a request body")
    # Fault injection for tests and benchmarks; the defaults leave the original behaviour.
    failure_status: int = Field(503, ge=400, le=599, description="status of the random failures, e.g. 429")
    retry_after: str | None = Field(None, description="Retry-After header sent with the random failures")
    slow_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of POSTs held for slow_ms before processing")
    slow_ms: float = Field(0.0, ge=0.0, description="how long a slow POST is held")
    reset_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of stored films whose answer is cut off")
