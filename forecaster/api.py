"""The Python API of the package root: load, train, evaluate and forecast in a few calls.

    import forecaster

    model = forecaster.load("models:/prices@champion")
    table = forecaster.forecast(model, bars)  # or model.forecast(bars): a row per ticker x step
    report = forecaster.evaluate(model, bars, from_date="2024-01-01")  # = `forecaster evaluate --json`
    table = forecaster.backtest(model, bars, from_date="2024-01-01")  # every forecast: a long DataFrame
    run = forecaster.train(bars, epochs=5, register_as="prices", alias="champion")  # run.model forecasts

Thin on purpose: each function hands the work to the module that owns it (tracking loads,
job trains, evaluate scores, batch forecasts) and the command line calls the same functions, so
a report or a forecast has one shape whichever way it is asked for. `bars` is a long frame
``date, ticker, open, high, low, close[, volume]``; it is validated here (data.validate_ohlc).
"""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from pydantic import ValidationError

from forecaster.config import TrainingConfig, describe
from forecaster.data.columns import column_map, map_columns
from forecaster.data.validate import validate_ohlc
from forecaster.errors import one_line
from forecaster.evaluation import backtest as ev
from forecaster.evaluation import notebook_plots
from forecaster.evaluation.backtest_file import backtest_table, write_backtest
from forecaster.evaluation.calibration_tests import calibration
from forecaster.model.predictor import Forecaster, bars_frame
from forecaster.registry import tracking
from forecaster.run.steps import TrainOutcome, evaluate_frame, run_training
from forecaster.run.tracked import tracked_training

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


def mapped_bars(
    bars: pd.DataFrame, id_col: str | None, time_col: str | None, columns: Mapping[str, str] | None
) -> pd.DataFrame:
    """`bars` (a DataFrame, else a TypeError) in the standard columns by the caller's mapping
    (`forecaster.data.columns.map_columns`, the one place a mapping is applied)."""
    return map_columns(bars_frame(bars), column_map(id_col, time_col, columns))


def forecast(
    model: Forecaster | str | os.PathLike[str],
    bars: pd.DataFrame,
    as_of: str | pd.Timestamp | None = None,
    allow_stale: bool = False,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """One forecast per ticker from its last lookback bars on or before `as_of` (default: its last bar):
    a frame with a row per ticker x step (ticker, as_of, step, date, close, q0.1, ...).

    model: a loaded Forecaster or a model reference (see `load`). An `as_of` past the data (a trading
    session after its last bar) is a DataError naming both dates; allow_stale: forecast from the
    last bars anyway, with a ``stale_days`` column (days from each ticker's last bar to `as_of`).
    options: those of `batch.forecast_bars`: exchange (the calendar of the dates), batch_size,
    workers, strict (refuse tickers without enough history instead of skipping them).
    id_col, time_col, columns: the frame's own column names (see `train`)."""
    predictor = _predictor(model)
    mapping: dict[str, Any] = {"id_col": id_col, "time_col": time_col, "columns": columns}
    return predictor.forecast(bars, as_of=as_of, allow_stale=allow_stale, **mapping, **options)


def evaluate(
    model: Forecaster | str | os.PathLike[str],
    bars: pd.DataFrame,
    from_date: str | None = None,
    *,
    data: str = FRAME_ORIGIN,
    backtest_out: str | Path | None = None,
    device: str = "auto",
    id_col: str | None = None,
    time_col: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Rolling-origin evaluation beside the baselines: the dict `forecaster evaluate --json` prints.

    model: a Forecaster (from `load`, or trained in memory: then ``model`` and ``model_uri`` are
    None) or a model reference (see `load`). from_date: only origins on or after it. data: how
    the report names the data. backtest_out: also write every forecast to this .parquet or .csv file."""
    bars = mapped_bars(bars, id_col, time_col, columns)
    model = _predictor(model, device)
    frame = validate_ohlc(bars, min_rows=model.min_rows)  # a ticker too short for one origin
    return evaluation_report(frame, model, from_date, source=_LOADED.get(model), data=data, backtest_out=backtest_out)


def backtest(
    model: Forecaster | str | os.PathLike[str],
    bars: pd.DataFrame,
    from_date: str | pd.Timestamp | None = None,
    *,
    device: str = "auto",
    id_col: str | None = None,
    time_col: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every rolling-origin forecast of `bars` as a long DataFrame (NeuralForecast's cross_validation):
    one row per ticker x origin x step with ticker, origin (the last observed date), step, date
    (the target date), actual, last_close, the model's quantiles (``q0.1, q0.5, ...``) and the
    baselines' columns (``naive``, ``ewma_q0.1``, ...): the table of ``evaluate --backtest-out``.

    model: a Forecaster or a model reference (see `load`). from_date: only origins on or after it.
    A ticker shorter than lookback + horizon bars is a DataError naming it."""
    bars = mapped_bars(bars, id_col, time_col, columns)
    model = _predictor(model, device)
    frame = validate_ohlc(bars, min_rows=model.min_rows)
    return backtest_table(evaluate_frame(model, frame, model.lookback, model.horizon, from_date))


def plot(
    table: pd.DataFrame,
    history: pd.DataFrame | None = None,
    *,
    step: int = 1,
    tickers: Sequence[str] | None = None,
    max_tickers: int = notebook_plots.MAX_TICKERS,
) -> Figure:
    """A matplotlib Figure of a table the API returned, one panel per ticker (the first `max_tickers`
    unless `tickers` names them; the title says how many of how many are drawn):

    - a forecast (`forecast`): a fan chart, the median and a band per quantile pair, after the
      ticker's last closes in `history` (the bars forecast from) when given;
    - a backtest (`backtest`): the actual close over the target dates beside the median forecast of
      it made `step` steps before, and the outer band with the share of actuals it covered."""
    if notebook_plots.table_kind(table) == "backtest":
        return notebook_plots.backtest_figure(table, step=step, tickers=tickers, max_tickers=max_tickers)
    frame = None if history is None else validate_ohlc(bars_frame(history, "history"), splits=None)
    return notebook_plots.forecast_figure(table, frame, tickers=tickers, max_tickers=max_tickers)


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


# The keyword parameters of `train`: a setting's leaf name (data.lookback -> lookback); the config
# owns each default, description and rule (None here means "the config's default").
TRAIN_KEYWORDS: tuple[str, ...] = (
    "lookback",
    "horizon",
    "arch",
    "hidden_size",
    "num_layers",
    "dropout",
    "quantiles",
    "ensemble",
    "epochs",
    "batch_size",
    "lr",
    "patience",
    "seed",
    "device",
)


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: the trained model (ready to forecast, save or evaluate), its test metrics
    and, for a tracked run, the MLflow run and model (None with ``track=False``)."""

    model: Forecaster
    metrics: dict[str, dict[str, list[float]]]
    outcome: TrainOutcome
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    dataset_digest: str | None = None


def train(
    bars: pd.DataFrame,
    register_as: str | None = None,
    alias: str | None = None,
    *,
    lookback: int | None = None,
    horizon: int | None = None,
    arch: str | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    dropout: float | None = None,
    quantiles: Sequence[float] | None = None,
    ensemble: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    config: TrainingConfig | Mapping[str, Any] | None = None,
    track: bool = True,
    id_col: str | None = None,
    time_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    source: str = FRAME_ORIGIN,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a global model on `bars`, as `forecaster train` does: ``forecaster.train(bars, epochs=5,
    hidden_size=64, lookback=60, horizon=5)``. Returns a TrainResult: ``result.model`` forecasts.

    Settings (None: the default of forecaster.config, which owns every default and rule):
    {settings}
    config: a TrainingConfig or its nested mapping (``{{"train": {{"epochs": 5}}}}``) the settings above
    apply to; overrides: any other setting by its dotted name, ``**{{"train.lr": 3e-4}}`` (`forecaster
    train --settings` lists them). An unknown name, a setting given twice or a bad value is a
    ValueError naming it. track: True runs it in MLflow (the store `tracking_uri`, default
    MLFLOW_TRACKING_URI, else ./mlruns), registered as `register_as` with `alias` pointed at the new
    version when given; False writes nothing at all (no store, no run, no file): the model lives in
    memory (``result.model.save(folder)`` keeps it) and run_id / model_uri / version are None.
    id_col, time_col, columns: the frame's names of ticker, date and any other standard column
    (``id_col="unique_id", time_col="ds", columns={{"open": "Open", "close": "Adj Close"}}``), as
    forecast, backtest and evaluate take them (forecaster.data.columns: a missing column is a DataError)."""
    bars = mapped_bars(bars, id_col, time_col, columns)
    if not isinstance(config, TrainingConfig | Mapping | None):
        raise TypeError(f"config: expected a TrainingConfig or a mapping of its settings, got {config!r}")
    given = {
        name: value
        for name, value in zip(
            TRAIN_KEYWORDS,
            (lookback, horizon, arch, hidden_size, num_layers, dropout, quantiles, ensemble)
            + (epochs, batch_size, lr, patience, seed, device),
            strict=True,
        )
        if value is not None
    }
    resolved = _resolve_config(config, given, overrides)
    frame = validate_ohlc(bars, bad_rows=resolved.data.bad_rows, splits=resolved.data.splits)
    if not track:
        if register_as is not None or alias is not None or tracking_uri is not None:
            raise ValueError("track: register_as, alias and tracking_uri need a tracked run (track=True)")
        with tempfile.TemporaryDirectory() as tmp:  # the bundle is read back into memory before it goes
            outcome = run_training(
                frame, resolved.data, resolved.model, resolved.train, Path(tmp) / "bundle", validated=True
            )
        return TrainResult(outcome.forecaster, outcome.metrics, outcome)
    with _store(tracking_uri):
        run = tracked_training(
            frame,
            source,
            resolved.data,
            resolved.model,
            resolved.train,
            register_as=register_as,
            alias=alias,
            run_name=run_name,
            validated=True,
        )
    return TrainResult(
        run.outcome.forecaster, run.metrics, run.outcome, run.run_id, run.model_uri, run.version, run.dataset_digest
    )


def _dotted(keyword: str) -> str:
    """The dotted setting a keyword of `train` stands for: the one leaf of that name."""
    (name,) = (n for n, _, _ in describe(TrainingConfig) if n.rsplit(".", 1)[-1] == keyword)
    return name


def _resolve_config(
    config: TrainingConfig | Mapping[str, Any] | None, given: Mapping[str, Any], overrides: Mapping[str, Any]
) -> TrainingConfig:
    """`config` (default: the defaults) with the keyword settings and the dotted overrides applied."""
    dotted = {_dotted(k): v for k, v in given.items()}
    twice = sorted(set(dotted) & set(overrides))
    if twice:
        keyword = twice[0].rsplit(".", 1)[-1]
        raise ValueError(f"{twice[0]}: given twice, as {keyword}= and as '{twice[0]}'; give one")
    try:
        base = config if isinstance(config, TrainingConfig) else TrainingConfig.model_validate(config or {})
        return base.with_overrides({**dotted, **overrides})
    except ValidationError as exc:  # pydantic's multi-line report -> 'train.lr: ... (got 'abc')'
        raise ValueError(one_line(exc)) from None


def _settings_doc() -> str:
    """One line per keyword of `train`: its dotted setting, description and default (from the config)."""
    described = {name: (text, default) for name, text, default in describe(TrainingConfig)}
    lines = []
    for keyword in TRAIN_KEYWORDS:
        text, default = described[_dotted(keyword)]
        lines.append(f"    {keyword} ({_dotted(keyword)}, default {default!r}): {text}")
    return "\n".join(lines)


train.__doc__ = (train.__doc__ or "").format(settings=_settings_doc().lstrip())
