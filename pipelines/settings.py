"""Retraining settings: defaults < YAML file < FORECASTER_RETRAIN_* environment < flags.

The pipeline's own settings are declared here; what the challenger is (data, network, fit loop)
is `forecaster.config.TrainingConfig`, nested as ``training`` and addressed the same way
everywhere: ``training: {train: {epochs: 5}}`` in YAML, ``FORECASTER_RETRAIN_TRAINING__TRAIN__EPOCHS=5``
in the environment, ``--training.train.epochs 5`` as a flag. The flat shortcuts of
`forecaster train` (``epochs``, ``hidden``, ...) work as YAML keys, environment names and flags too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from forecaster.config import SHORTCUTS, TrainingConfig
from forecaster.errors import ForecasterError
from forecaster.overrides import CLI_OPTIONS, cli_values, expand_shortcuts

ENV_PREFIX = "FORECASTER_RETRAIN_"


class RetrainSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, **CLI_OPTIONS
    )

    # where and what
    tracking_uri: str | None = Field(None, description="MLflow URI; default MLFLOW_TRACKING_URI or local SQLite")
    model_name: str = Field("forecaster", description="registered model the pipeline trains and promotes")
    source: Literal["sample", "file", "yfinance"] = Field("sample", description="where fresh bars come from")
    data_path: str | None = Field(None, description="file, or folder of CSV/Parquet files, for source=file")
    tickers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="tickers (comma-separated), required for yfinance"
    )
    start: str | None = Field("2005-01-01", description="first date of data to use")
    data_dir: str = Field(".forecaster/data", description="where refreshed data (and the yfinance cache) is stored")
    # the challenger
    training: TrainingConfig = Field(TrainingConfig(), description="the challenger's data, model and train settings")
    # the gate
    metric: Literal["mase", "mae", "rmse", "mape"] = Field("mase", description="gate metric, mean over the horizon")
    margin: float = Field(0.0, ge=0.0, description="relative improvement over the champion needed, e.g. 0.01 = 1%")
    coverage_tolerance: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="every central band's holdout coverage (mean over the horizon) within this of nominal; 1 = off",
    )
    require_spl_vs_ewma: bool = Field(True, description="the challenger's holdout SPL must not be worse than ewma's")
    # scheduling and locking
    schedule: str | None = Field(None, description="cron expression; none = run once")
    timezone: str = Field("America/New_York", description="time zone of the schedule")
    run_on_start: bool = Field(False, description="with a schedule: also run once as soon as the scheduler starts")
    lock_database_url: str | None = Field(None, description="PostgreSQL URL for an advisory lock")
    lock_file: str | None = Field(
        None, description="file lock path when no database lock is used; default derived from the tracking store"
    )
    on_busy: Literal["skip", "wait"] = Field("skip", description="when another run holds the lock")
    rollback_wait_s: float = Field(60.0, ge=0.0, description="how long rollback waits for a running retrain's lock")
    retries: int = Field(3, ge=1, description="attempts of the data refresh")
    retry_backoff_s: float = Field(2.0, ge=0.0, description="first retry delay, doubled each attempt")
    date_format: str | None = Field(None, description="layout of the source files' dates when not ISO, e.g. %d/%m/%Y")
    overwrite_bars: bool = Field(
        False, description="let fresh bars replace stored ones that differ (a vendor's re-adjustment); logged"
    )

    @field_validator("tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # first wins: flags (init), environment (nested names, then shortcut names), YAML file
        return init_settings, env_settings, ShortcutEnvSource(settings_cls), ShortcutYamlSource(settings_cls)


def nest_shortcuts(values: dict[str, Any]) -> dict[str, Any]:
    """Flat keys (``epochs: 5``, ``model-name: x``) of one source into their nested places."""
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    training = dict(values.get("training") or {})
    for short in [k for k in values if k in SHORTCUTS]:
        section, name = SHORTCUTS[short].split(".")
        training[section] = {**dict(training.get(section) or {}), name: values.pop(short)}
    if training:
        values["training"] = training
    return values


class ShortcutYamlSource(YamlConfigSettingsSource):
    """The YAML file, dashed keys and flat shortcut keys accepted."""

    def __call__(self) -> dict[str, Any]:
        return nest_shortcuts(super().__call__())


class ShortcutEnvSource(PydanticBaseSettingsSource):
    """FORECASTER_RETRAIN_EPOCHS=5 and the other flat shortcut names, as in `forecaster train`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        training: dict[str, dict[str, str]] = {}
        for short, dotted in SHORTCUTS.items():
            value = os.environ.get(f"{ENV_PREFIX}{short.upper()}")
            if value is not None:
                section, name = dotted.split(".")
                training.setdefault(section, {})[name] = value
        return {"training": training} if training else {}


def load_settings(config_path: str | Path | None = None, args: list[str] | None = None) -> RetrainSettings:
    """Defaults, then the YAML file, then FORECASTER_RETRAIN_* env, then `args` (flags, last wins)."""
    flags = cli_values(RetrainSettings, expand_shortcuts(list(args or []), "training."), "forecaster retrain")
    if config_path is None:
        return RetrainSettings(**flags)
    path = Path(config_path)
    if not path.is_file():
        raise ForecasterError(f"config: file '{path}' does not exist")
    yaml_config = SettingsConfigDict(yaml_file=path, yaml_file_encoding="utf-8")
    with_yaml = type("RetrainSettings", (RetrainSettings,), {"model_config": yaml_config})
    return with_yaml(**flags)
