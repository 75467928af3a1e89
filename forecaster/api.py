"""The Python API of the package root: load, train, evaluate and forecast in a few calls.

    import forecaster

    model = forecaster.load("models:/prices@champion")
    table = forecaster.forecast(model, bars)  # or model.forecast(bars): a row per ticker x step
    report = forecaster.evaluate(model, bars, from_date="2024-01-01")  # = `forecaster evaluate --json`
    run = forecaster.train(bars, register_as="prices", alias="champion", **{"train.epochs": 5})

Thin on purpose: each function hands the work to the module that owns it (tracking loads,
job trains, evaluate scores, batch forecasts) and the command line calls the same functions, so
a report or a forecast has one shape whichever way it is asked for. `bars` is a long frame
``date, ticker, open, high, low, close[, volume]``; it is validated here (data.validate_ohlc).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from forecaster.config import TrainingConfig
from forecaster.data.validate import validate_ohlc
from forecaster.errors import one_line
from forecaster.evaluation import backtest as ev
from forecaster.evaluation.backtest_file import write_backtest
from forecaster.evaluation.calibration_tests import calibration
from forecaster.model.predictor import Forecaster, bars_frame
from forecaster.registry import tracking
from forecaster.run.steps import evaluate_frame
from forecaster.run.tracked import RunResult, tracked_training

log = logging.getLogger(__name__)

FRAME_ORIGIN = "DataFrame"  # what reports and runs call data handed over in memory
# Which model each forecaster returned by `load` is (a model trained in memory is none): kept
# beside the object instead of on it, so the predictor knows nothing of MLflow.
_LOADED: weakref.WeakKeyDictionary[Forecaster, tracking.ModelSource] = weakref.WeakKeyDictionary()


def load(model_uri: str | os.PathLike[str], device: str = "auto", tracking_uri: str | None = None) -> Forecaster:
    """A model, ready to forecast, from any reference MLflow's own loader takes:
    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-<id>`` (a logged model, as
    `train` returns it unregistered), ``runs:/<run_id>/model`` or a local folder (a downloaded
    MLflow model, or a bundle: config.json + weights.safetensors).

    tracking_uri: the MLflow store (default: MLFLOW_TRACKING_URI, else the local SQLite store).
    Raises ModelNotFoundError, ModelLoadError or RegistryUnavailableError naming the model."""
    if isinstance(model_uri, os.PathLike):
        model_uri = os.fspath(model_uri)
    if not isinstance(model_uri, str):
        raise TypeError(f"model_uri: expected text {tracking.FORMS}, got {model_uri!r}")
    with _store(tracking_uri):
        forecaster, source = tracking.load_forecaster(model_uri, device=device)
    _LOADED[forecaster] = source
    return forecaster


@contextmanager
def _store(tracking_uri: str | None) -> Iterator[None]:
    """MLflow at `tracking_uri` (None: MLFLOW_TRACKING_URI, else the local store) for one call.
    MLflow's set_tracking_uri also writes MLFLOW_TRACKING_URI; restoring it afterwards keeps a store
    given to one call from becoming the default of the next."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    tracking.configure(tracking_uri)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _predictor(model: Forecaster | str | os.PathLike[str], device: str = "auto") -> Forecaster:
    """`model` as a ready predictor: a Forecaster as it is, a model reference loaded; else a TypeError."""
    if isinstance(model, str | os.PathLike):
        return load(model, device=device)
    if not isinstance(model, Forecaster):
        raise TypeError(f"model: expected a Forecaster (from forecaster.load) or a model URI, got {model!r}")
    return model


def forecast(
    model: Forecaster | str | os.PathLike[str],
    bars: pd.DataFrame,
    as_of: str | pd.Timestamp | None = None,
    allow_stale: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """One forecast per ticker from its last lookback bars on or before `as_of` (default: its last bar):
    a frame with a row per ticker x step (ticker, as_of, step, date, close, q0.1, ...).

    model: a loaded Forecaster or a model reference (see `load`). An `as_of` past the data (a trading
    session after its last bar) is a DataError naming both dates; allow_stale: forecast from the
    last bars anyway, with a ``stale_days`` column (days from each ticker's last bar to `as_of`).
    options: those of `batch.forecast_bars`: exchange (the calendar of the dates), batch_size,
    workers, strict (refuse tickers without enough history instead of skipping them)."""
    return _predictor(model).forecast(bars, as_of=as_of, allow_stale=allow_stale, **options)


def evaluate(
    model: Forecaster | str | os.PathLike[str],
    bars: pd.DataFrame,
    from_date: str | None = None,
    *,
    data: str = FRAME_ORIGIN,
    backtest_out: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Rolling-origin evaluation beside the baselines: the dict `forecaster evaluate --json` prints.

    model: a Forecaster (from `load`, or trained in memory: then ``model`` and ``model_uri`` are
    None) or a model reference (see `load`). from_date: only origins on or after it. data: how
    the report names the data. backtest_out: also write every forecast to this .parquet or .csv file."""
    bars = bars_frame(bars)
    model = _predictor(model, device)
    frame = validate_ohlc(bars, min_rows=model.lookback + model.horizon)  # a ticker too short for one origin
    return evaluation_report(frame, model, from_date, source=_LOADED.get(model), data=data, backtest_out=backtest_out)


def evaluation_report(
    frame: pd.DataFrame,
    forecaster: Forecaster,
    from_date: str | pd.Timestamp | None = None,
    *,
    source: tracking.ModelSource | None = None,
    data: str = FRAME_ORIGIN,
    backtest_out: str | Path | None = None,
) -> dict[str, Any]:
    """The evaluation report of a validated frame: the one owner of its shape (`evaluate` and the CLI).

    source: which model `forecaster` was loaded as (None: trained in memory). Keys: model_uri,
    model (name, version, alias: of a registered version, else None; run_id), data, horizon,
    lookback, n_series, n_origins, levels, metrics (forecast -> metric -> one value per step),
    significance, calibration (forecaster.evaluation.calibration_tests)."""
    result = evaluate_frame(forecaster, frame, forecaster.lookback, forecaster.horizon, from_date)
    if backtest_out is not None:
        written = write_backtest(result, backtest_out)
        log.info("backtest: %d rows written to %s", len(result.series_id) * result.horizon, written)
    return {
        "model_uri": None if source is None else source.uri,
        "model": None if source is None else source.describe(),
        "data": data,
        "horizon": result.horizon,
        "lookback": forecaster.lookback,
        "n_series": int(len(set(result.series_id.tolist()))),
        "n_origins": int(len(result.series_id)),
        "levels": list(result.levels),
        "metrics": ev.score(result),
        "significance": ev.significance(result),
        "calibration": calibration(result),  # tail tests, conditional coverage, calibration curve
    }


def train(
    bars: pd.DataFrame,
    register_as: str | None = None,
    alias: str | None = None,
    *,
    config: TrainingConfig | Mapping[str, Any] | None = None,
    source: str = FRAME_ORIGIN,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Train a global model on `bars` in an MLflow run, as `forecaster train` does; register it as
    `register_as` and point `alias` at the new version when given.

    config: a TrainingConfig or its nested mapping (``{"train": {"epochs": 5}}``; default: the
    defaults). overrides: dotted settings, ``**{"train.epochs": 5, "data.lookback": 60}``, applied
    to it through `TrainingConfig.with_overrides`. An unknown name or a bad value is a ValueError
    naming the setting, as the command line reports it. Returns the run: run_id, model_uri,
    version, test metrics and the trained forecaster (``result.outcome.forecaster``)."""
    bars = bars_frame(bars)
    if not isinstance(config, TrainingConfig | Mapping | None):
        raise TypeError(f"config: expected a TrainingConfig or a mapping of its settings, got {config!r}")
    try:
        base = config if isinstance(config, TrainingConfig) else TrainingConfig.model_validate(config or {})
        resolved = base.with_overrides(overrides)
    except ValidationError as exc:  # pydantic's multi-line report -> 'train.lr: ... (got 'abc')'
        raise ValueError(one_line(exc)) from None
    frame = validate_ohlc(bars, bad_rows=resolved.data.bad_rows, splits=resolved.data.splits)
    with _store(tracking_uri):
        return tracked_training(
            frame,
            source,
            resolved.data,
            resolved.model,
            resolved.train,
            register_as=register_as,
            alias=alias,
            run_name=run_name,
        )
