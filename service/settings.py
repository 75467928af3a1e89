"""Service settings from FORECASTER_* environment variables, validated at startup."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecaster.data.calendar import DEFAULT_EXCHANGE, check_exchange
from forecaster.registry.names import CHAMPION

# Daily bars from Yahoo are at most a long weekend plus a holiday old when the source works.
YFINANCE_MAX_AGE_DAYS = 10


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORECASTER_", extra="ignore")

    tracking_uri: str | None = Field(
        None, description="MLflow tracking/registry URI; default MLFLOW_TRACKING_URI or local SQLite"
    )
    model_name: str = Field("forecaster", description="Registered model served by default")
    alias: str = Field(CHAMPION, description="Alias served by default")
    model_uri: str | None = Field(
        None,
        description="One fixed model served by default instead of models:/MODEL_NAME@ALIAS: models:/NAME/VERSION, "
        "models:/NAME@ALIAS (resolved once), models:/m-<id>, runs:/<run_id>/model or a model folder; never "
        "followed, and a folder needs no registry",
    )
    device: str = Field("auto", description="auto | cpu | cuda (cuda only where one is visible)")
    poll_interval_s: float = Field(30.0, ge=0.0, description="Seconds between alias checks; 0 disables polling")
    batch_wait_ms: float = Field(
        2.0,
        ge=0.0,
        description="How long a forward pass waits to gather more requests while they arrive together "
        "(a lone request never waits)",
    )
    max_batch_size: int = Field(512, ge=1, description="Most windows in one forward pass")
    torch_threads: int = Field(
        1,
        ge=0,
        description="torch intra-op threads of the forward pass (0 = torch's default, "
        "one per core); 1 leaves the other cores to the event loop",
    )
    max_series: int = Field(256, ge=1, description="Most series in one request")
    max_body_bytes: int = Field(4_000_000, ge=1024, description="Largest request body accepted")
    request_header_timeout_s: float = Field(
        10.0,
        gt=0.0,
        description="`forecaster serve`: longest a client may take to send a request's headers, from connecting "
        "(or from its first byte, on a kept-alive connection); then the connection is closed, with a 408 when part "
        "of a request came",
    )
    request_body_timeout_s: float = Field(
        30.0, gt=0.0, description="Longest a request body may take to arrive after its headers; then 408, and closed"
    )
    api_key: SecretStr | None = Field(None, description="Key for /forecast (optional) and /admin (required)")
    protect_status_routes: bool = Field(
        False,
        description="With api_key set, /models and /metrics ask for it too; false (the default): they answer "
        "without it, for a Prometheus on the private network",
    )
    data_source: Literal["yfinance", "file", "sample"] = Field("sample", description="Where ticker histories come from")
    data_path: str | None = Field(None, description="CSV/Parquet file when data_source=file")
    cache_dir: str = Field(".forecaster/cache", description="yfinance cache folder")
    yfinance_timeout_s: float = Field(
        3.0, gt=0.0, description="Longest a ticker request waits for yfinance before using its cache"
    )
    max_history_age_days: int | None = Field(
        None,
        ge=0,
        description=f"Oldest last bar (calendar days ago) a ticker forecast may start from; unset: "
        f"{YFINANCE_MAX_AGE_DAYS} with data_source=yfinance, no limit for file and sample; 0: no limit",
    )
    stale_policy: Literal["refuse", "serve"] = Field(
        "refuse", description="A ticker history older than the limit: refuse it (503) or serve it marked stale"
    )
    exchange: str = Field(DEFAULT_EXCHANGE, description="Exchange calendar for forecast dates")
    retry_after_s: int = Field(5, ge=1, description="Retry-After seconds on 503")
    registry_timeout_s: float = Field(
        5.0, gt=0.0, description="Longest a registry lookup may take before the request gets 503"
    )
    load_timeout_s: float = Field(60.0, gt=0.0, description="Longest a model download and load may take")
    negative_cache_s: float = Field(
        5.0, ge=0.0, description="Seconds a failed model lookup or load is answered from memory; 0 disables"
    )
    log_format: Literal["text", "json"] = Field("text", description="Service log lines (access log included)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level")
    workers: int = Field(
        1,
        ge=1,
        description="`forecaster serve`: worker processes on this host, each with its own model and poller; "
        "above 1, /metrics sums them (Prometheus multiprocess mode)",
    )
    reuse_port: bool = Field(
        True,
        description="`forecaster serve --workers N`: each worker listens on its own SO_REUSEPORT socket, so the "
        "kernel spreads connections among them (Linux); false: one socket all workers accept from",
    )
    shutdown_grace_s: int = Field(
        10, ge=0, description="`forecaster serve`: longest SIGTERM waits for requests in flight"
    )
    ledger: Literal["on", "off"] = Field("on", description="Record every answered forecast in the ledger")
    ledger_uri: str | None = Field(
        None, description="Ledger database (SQLite or PostgreSQL); default ledger.db beside the MLflow store"
    )

    # Checked here, at startup, by the library's own rules: a value they refuse would otherwise
    # give a service that starts and then fails every forecast (exchange) or never gets ready (device).
    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        return check_exchange(value)

    @field_validator("model_uri")
    @classmethod
    def _model_uri(cls, value: str | None) -> str | None:
        from forecaster.errors import ModelNotFoundError
        from forecaster.registry.tracking import parse_reference  # its forms, read without MLflow

        if value is not None:
            try:
                parse_reference(value)
            except ModelNotFoundError as exc:
                raise ValueError(str(exc)) from None  # pydantic reports ValueErrors as the field's problem
        return value

    @field_validator("ledger_uri")
    @classmethod
    def _ledger_uri(cls, value: str | None) -> str | None:
        from forecaster.monitor.store import check_uri  # a ledger URI it cannot use fails at startup

        if value is not None:
            check_uri(value)
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        from forecaster.model.predictor import resolve_device  # torch: imported only when a service starts

        resolve_device(value)
        return value

    @property
    def history_age_limit_days(self) -> int | None:
        """max_history_age_days resolved for the data source; None means no limit."""
        if self.max_history_age_days is None:
            return YFINANCE_MAX_AGE_DAYS if self.data_source == "yfinance" else None
        return self.max_history_age_days or None


@lru_cache
def get_settings() -> Settings:
    return Settings()
