"""Retraining settings: defaults < YAML file < FORECASTER_RETRAIN_* environment < flags.

The pipeline's own settings are declared here; what the challenger is (data, network, fit loop)
is `forecaster.config.TrainingConfig`, nested as ``training`` and addressed the same way
everywhere: ``training: {train: {epochs: 5}}`` in YAML, ``FORECASTER_RETRAIN_TRAINING__TRAIN__EPOCHS=5``
in the environment, ``--training.train.epochs 5`` as a flag. The flat shortcuts of
`forecaster train` (``epochs``, ``hidden``, ...) work as YAML keys, environment names and flags too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zoneinfo
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
from forecaster.data.retry import DEFAULT_RETRY
from forecaster.data.rules import check_ticker, parse_day
from forecaster.interface.overrides import CLI_OPTIONS, cli_values, expand_shortcuts, read_yaml
from pipelines.schedule import cron_trigger

ENV_PREFIX = "FORECASTER_RETRAIN_"
TICKERS_EXPECTED = 'expected A,B or a JSON list of symbols such as ["A","B"]'


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
        default_factory=list,
        description='tickers, required for yfinance: A,B or a JSON list such as ["A","B"]',
    )
    start: dt.date | None = Field(dt.date(2005, 1, 1), description="first date of data to use (YYYY-MM-DD)")
    data_dir: str = Field(".forecaster/data", description="where refreshed data is stored")
    cache_dir: str | None = Field(
        None,
        description="yfinance cache folder (share it with the service's FORECASTER_CACHE_DIR); "
        "default <data_dir>/yfinance",
    )
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
    monitor_score: bool = Field(
        False, description="after each data refresh, score the forecast ledger against the new bars (monitor score)"
    )
    ledger_uri: str | None = Field(None, description="forecast ledger to score; default ledger.db beside MLflow")
    lock_database_url: str | None = Field(None, description="PostgreSQL URL for an advisory lock")
    lock_file: str | None = Field(
        None, description="file lock path when no database lock is used; default derived from the tracking store"
    )
    lock_dir: str | None = Field(
        None,
        description="folder of derived lock files (server and file stores); default <temp dir>/forecaster-locks, "
        "shared by every user of the machine",
    )
    on_busy: Literal["skip", "wait"] = Field("skip", description="when another run holds the lock")
    rollback_wait_s: float = Field(60.0, ge=0.0, description="how long rollback waits for a running retrain's lock")
    # the library's retry policy's own defaults (forecaster.data.retry): one owner of how often to ask again
    retries: int = Field(DEFAULT_RETRY.attempts, ge=1, description="attempts of the data refresh")
    retry_backoff_s: float = Field(
        DEFAULT_RETRY.backoff_s, ge=0.0, description="first retry delay, doubled each attempt"
    )
    date_format: str | None = Field(None, description="layout of the source files' dates when not ISO, e.g. %d/%m/%Y")
    overwrite_bars: bool = Field(
        False, description="let fresh bars replace stored ones that differ (a vendor's re-adjustment); logged"
    )

    @field_validator("tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: Any) -> Any:
        # an environment variable or flag holds text: A,B or the JSON list compose files tend to write
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            try:
                items = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(TICKERS_EXPECTED) from None
            # spaces around an item are the list's layout, as around the commas of A, B
            return [t.strip() if isinstance(t, str) else t for t in items] if isinstance(items, list) else items
        return [t.strip() for t in value.split(",") if t.strip()]

    @field_validator("tickers")
    @classmethod
    def _ticker_symbols(cls, value: list[str]) -> list[str]:
        # the one ticker rule (forecaster.data.rules): what is left of a list written in another
        # syntax ('["A"', "A B", "A;B") is no symbol
        for symbol in value:
            try:
                check_ticker(symbol)
            except ValueError as exc:
                raise ValueError(f"{exc}; {TICKERS_EXPECTED}") from None
        return value

    @property
    def yfinance_cache_dir(self) -> Path:
        """The yfinance cache folder: cache_dir, else <data_dir>/yfinance (where it always was)."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.data_dir) / "yfinance"

    @field_validator("start", mode="before")
    @classmethod
    def _iso_start(cls, value: Any) -> Any:
        """The one date parser of the library (ISO only: epoch seconds or 01/02/2013 are refused)."""
        return None if value is None else parse_day(value, "start").date()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (expected an IANA name such as America/New_York or UTC)") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        # the scheduler's own parser, so a bad expression fails at startup, not when the loop starts
        if value:
            cron_trigger(value, "UTC")
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

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        # every file named is read, through the reader `forecaster train --config` uses: a missing
        # or unreadable file, bad YAML or a YAML that is not a mapping is one error naming the file
        # (the base class skips a path that is not a file and reads the rest unchecked)
        return {} if files is None else read_yaml(files)

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


def setting_hint(name: str, value: bool | str) -> str:
    """Every way to set one setting (YAML key, flag, environment), for messages naming a remedy."""
    if name not in RetrainSettings.model_fields:
        raise KeyError(name)
    text = str(value).lower() if isinstance(value, bool) else value
    flag = flag_of(name) + ("" if value is True else f" {text}")
    return f"{name}: {text} (flag {flag}, or {ENV_PREFIX}{name.upper()}={text})"


# Settings whose flag is named otherwise: `--model`, as on every other command; the setting's own
# flag (`--model-name`) still works, unlisted.
FLAG_NAMES = {"model_name": "model"}


def flag_of(name: str) -> str:
    """The flag of a setting: ``--model`` for model_name, ``--on-busy`` for on_busy."""
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def _setting_flags(args: list[str]) -> list[str]:
    """``--model X`` / ``--model=X`` -> ``--model-name X``: the flags the settings' CLI source reads."""
    renamed = {flag_of(name): "--" + name.replace("_", "-") for name in FLAG_NAMES}
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        out.append(renamed[flag] + eq + value if flag in renamed else arg)
    return out


def load_settings(config_path: str | Path | None = None, args: list[str] | None = None) -> RetrainSettings:
    """Defaults, then the YAML file, then FORECASTER_RETRAIN_* env, then `args` (flags, last wins)."""
    args = _setting_flags(list(args or []))
    flags = cli_values(RetrainSettings, expand_shortcuts(args, "training."), "forecaster retrain")
    if config_path is None:
        return RetrainSettings(**flags)
    yaml_config = SettingsConfigDict(yaml_file=Path(config_path), yaml_file_encoding="utf-8")
    with_yaml = type("RetrainSettings", (RetrainSettings,), {"model_config": yaml_config})
    return with_yaml(**flags)
