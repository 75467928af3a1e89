"""Retraining settings: YAML file, then FORECASTER_RETRAIN_* env, then flags (last wins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecaster.errors import ForecasterError


class RetrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORECASTER_RETRAIN_", extra="forbid")

    # where and what
    tracking_uri: str | None = Field(None, description="MLflow URI; default MLFLOW_TRACKING_URI or local SQLite")
    model_name: str = "forecaster"
    source: Literal["sample", "file", "yfinance"] = "sample"
    data_path: str | None = Field(None, description="File, or folder of CSV/Parquet files, for source=file")
    tickers: list[str] = Field(default_factory=list)
    start: str | None = "2005-01-01"
    data_dir: str = Field(".forecaster/data", description="Where refreshed data (and the yfinance cache) is stored")
    # the challenger
    arch: Literal["lstm", "gru", "rnn"] = "lstm"
    mode: Literal["n-to-1", "seq2seq"] = "n-to-1"
    lookback: int = Field(60, ge=2)
    horizon: int = Field(5, ge=1)
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    dropout: float = 0.1
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-3, gt=0)
    patience: int = Field(5, ge=1)
    seed: int = 42
    device: str = "auto"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # the gate
    metric: Literal["mase", "mae", "rmse", "mape"] = "mase"
    margin: float = Field(0.0, ge=0.0, description="Relative improvement over the champion needed, e.g. 0.01 = 1%")
    # scheduling and locking
    schedule: str | None = Field(None, description="Cron expression; none = run once")
    timezone: str = "America/New_York"
    run_on_start: bool = Field(False, description="With a schedule: also run once as soon as the scheduler starts")
    lock_database_url: str | None = Field(None, description="PostgreSQL URL for an advisory lock")
    lock_file: str = ".forecaster/retrain.lock"
    on_busy: Literal["skip", "wait"] = "skip"
    retries: int = Field(3, ge=1, description="Attempts of the data refresh")
    retry_backoff_s: float = Field(2.0, ge=0.0)

    @field_validator("tickers", mode="before")
    @classmethod
    def split_tickers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value


def load_settings(config_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RetrainSettings:
    """YAML values, overridden by env (FORECASTER_RETRAIN_*) and then by explicit flags."""
    values: dict[str, Any] = {}
    if config_path is not None:
        path = Path(config_path)
        if not path.exists():
            raise ForecasterError(f"config: file '{path}' does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ForecasterError(f"config: '{path}' must hold a mapping of settings")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    env = RetrainSettings().model_dump(exclude_unset=True)  # only what the environment set
    values.update(env)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return RetrainSettings(**values)
