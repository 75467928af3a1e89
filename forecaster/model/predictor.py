"""Forecaster: a loaded bundle on a device, turning price windows into price quantiles."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from forecaster.config import FEATURES, MEDIAN, N_FEATURES
from forecaster.data.columns import column_map, map_columns
from forecaster.data.rules import MAX_PRICE, MIN_PRICE, accepted_prices, parse_day
from forecaster.errors import DataError
from forecaster.model.artifact import CONFIG_FILE, WEIGHTS_FILE, Bundle, save_bundle
from forecaster.model.batch import forecast_bars
from forecaster.model.device import autocast, resolve_device

PREDICT_BATCH = 4096
BUNDLE_FILES = (CONFIG_FILE, WEIGHTS_FILE)


def bars_frame(bars: object, name: str = "bars") -> pd.DataFrame:
    """`bars` if it is a DataFrame, else a TypeError naming `name`: a list or a path would otherwise
    fail deep inside validation with a message about neither (`Forecaster.forecast`, the API)."""
    if not isinstance(bars, pd.DataFrame):
        hint = " (read the file first: forecaster.data.validate.read_ohlc_file)" if isinstance(bars, str | Path) else ""
        raise TypeError(
            f"{name}: expected a pandas DataFrame of long bars (date, ticker, open, high, low, close), "
            f"got {type(bars).__name__}{hint}"
        )
    return bars


class Window(NamedTuple):
    """One series' model input: values[T,4] float32 OHLC, oldest first; last_date of its last bar."""

    values: np.ndarray
    last_date: dt.date | None


@dataclass(frozen=True)
class Forecast:
    """quantiles[N,H,Q] prices; median[N,H] is the point forecast."""

    quantiles: np.ndarray
    levels: tuple[float, ...]

    @property
    def median(self) -> np.ndarray:
        return self.quantiles[..., self.levels.index(MEDIAN)]

    @property
    def lower(self) -> np.ndarray:
        return self.quantiles[..., 0]

    @property
    def upper(self) -> np.ndarray:
        return self.quantiles[..., -1]


class Forecaster:
    """The ready predictor every caller uses: library, evaluation, pyfunc and service."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "auto") -> None:
        self.bundle = bundle
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = bundle.build(self.device)  # weights move to the device once, here
        self.transform = bundle.transform

    @property
    def lookback(self) -> int:
        return self.bundle.data_config.lookback

    @property
    def horizon(self) -> int:
        return self.bundle.data_config.horizon

    @property
    def min_rows(self) -> int:
        """Bars a ticker needs to be scored (evaluate): DataConfig.min_rows of the model's data."""
        return self.bundle.data_config.min_rows

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.bundle.model_config.quantiles

    @property
    def median_index(self) -> int:
        """Where the median (the point forecast) sits among `quantiles`."""
        return self.quantiles.index(MEDIAN)

    def save(self, path: str | Path) -> Path:
        """Write the model as a bundle folder (config.json + weights.safetensors, `model.artifact`) that
        `forecaster.load(path)` and every ``--model`` option read back. Refused when `path` is a file or
        a folder holding anything but a bundle's files (nothing of the caller's is overwritten)."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(p.name not in BUNDLE_FILES for p in path.iterdir())):
            raise ValueError(f"path: '{path}' exists and is not an empty folder or a model bundle; choose a new folder")
        b = self.bundle
        return save_bundle(path, self.model, b.model_config, b.data_config, b.transform, b.calibration, b.meta)

    def predict(self, X: np.ndarray, calibrated: bool = True, batch_size: int = PREDICT_BATCH) -> Forecast:
        """Deprecated name of `predict_windows` (goes in 0.3). A DataFrame of bars is a TypeError
        pointing to `forecast`, the frame path: `predict` never guesses which of the two is meant."""
        _refuse_frame(X, "predict")
        warnings.warn(
            "Forecaster.predict(X) is renamed predict_windows(X); the old name goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.predict_windows(X, calibrated=calibrated, batch_size=batch_size)

    def predict_windows(self, X: np.ndarray, calibrated: bool = True, batch_size: int = PREDICT_BATCH) -> Forecast:
        """X[N,L,4] raw OHLC windows (L = lookback, last row = last observed day) -> Forecast.

        The one forecast path: scale-free features, the network, the artifact's calibration
        (``calibrated=False`` shows the raw network, to measure what calibration does), prices.
        batch_size: windows per forward pass (offline batch scoring passes larger ones)."""
        _refuse_frame(X, "predict_windows")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[1:] != (self.lookback, N_FEATURES):
            raise ValueError(f"windows: expected shape [N, {self.lookback}, {N_FEATURES}], got {list(X.shape)}")
        if len(X) == 0:
            return Forecast(np.empty((0, self.horizon, len(self.quantiles))), self.quantiles)
        outputs = []
        config = self.bundle.model_config
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                features = self.transform.features(X[start : start + batch_size])
                x = torch.from_numpy(features.seq).to(self.device)
                s = torch.from_numpy(features.scalars).to(self.device)
                with autocast(self.device):
                    z = self.model(x, s).float().cpu().numpy()  # -> (B, H, Q of the network)
                if calibrated:
                    z = self.bundle.calibration.apply(z, config.network_median_index)
                served = z[..., list(config.served_index)]  # -> (B, H, Q served)
                outputs.append(self.transform.to_prices(served, features))
        return Forecast(np.concatenate(outputs), self.quantiles)

    def predict_history(self, history: np.ndarray) -> Forecast:
        """One series' bars [L,4] (L >= lookback) -> the forecast from its last T rows."""
        return self.predict_windows(self.window(history).values[None])

    def forecast(
        self,
        bars: pd.DataFrame,
        as_of: str | pd.Timestamp | None = None,
        *,
        id_col: str | None = None,
        time_col: str | None = None,
        columns: Mapping[str, str] | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """Long bars of any number of tickers -> one row per ticker x step: ticker, as_of, step, date,
        close and every quantile (``q0.1``, ...), from each ticker's last bars up to `as_of`.
        id_col, time_col, columns: the frame's names of ticker, date and the other standard columns
        (`forecaster.data.columns`: ``id_col="unique_id", time_col="ds", columns={"open": "Open"}``).
        options: those of `forecaster.model.batch.forecast_bars` (exchange, batch_size, strict); tickers without
        enough history are skipped and logged."""
        frame = map_columns(bars_frame(bars), column_map(id_col, time_col, columns))
        return forecast_bars(self, frame, as_of=as_of, **options)

    def window(
        self,
        bars: pd.DataFrame | np.ndarray | Sequence[Sequence[float]],
        dates: Sequence[Any] | np.ndarray | pd.Series | None = None,
        field: str = "history",
    ) -> Window:
        """One series' history -> its last T = lookback bars as the model's input, checked.

        The one place a history becomes a window (the service's request and ticker histories,
        the pyfunc wrapper, `predict_history`), so "enough bars?" and "prices the model can
        take?" are answered once. bars: oldest first, a frame with columns open, high, low,
        close (and date, unless `dates` is given) or an array [L,4] in that order. dates: one
        per bar; only the last is kept. field: how errors name the series (``series[3].history``).
        Raises DataError naming the field: fewer than T bars, or a price among the last T that
        is not a finite number in [MIN_PRICE, MAX_PRICE].
        """
        if isinstance(bars, pd.DataFrame):
            missing = [c for c in FEATURES if c not in bars.columns]
            if missing:
                raise DataError(f"{field}: missing column(s) {missing}, found {list(bars.columns)}")
            if dates is None and "date" in bars.columns:
                dates = bars["date"]
            bars = bars[list(FEATURES)].to_numpy()
        array = np.asarray(bars)
        if array.ndim != 2 or array.shape[1] != N_FEATURES:
            raise DataError(f"{field}: expected bars of shape [L, {N_FEATURES}] {FEATURES}, got {list(array.shape)}")
        if dates is not None and len(dates) != len(array):
            raise ValueError(f"dates: expected one per bar ({len(array)}), got {len(dates)}")
        T = self.lookback
        if len(array) < T:
            raise DataError(f"{field}: {len(array)} bars, the model needs at least lookback = {T}")
        try:
            tail = array[-T:].astype(np.float64)  # checked before float32 can turn 1e39 into inf
        except (TypeError, ValueError) as exc:
            raise DataError(f"{field}: prices must be numbers ({exc})") from exc
        accepted = accepted_prices(tail)
        if not accepted.all():
            row, column = np.argwhere(~accepted)[0]
            raise DataError(
                f"{field}[{len(array) - T + row}].{FEATURES[column]}: {tail[row, column]:g} is not a price the "
                f"model accepts (a finite number from {MIN_PRICE:g} to {MAX_PRICE:g})"
            )
        last = None
        if dates is not None and len(dates):
            last = _as_date(dates.iloc[-1] if isinstance(dates, pd.Series) else dates[-1], field)
        return Window(tail.astype(np.float32), last)


def _refuse_frame(X: object, method: str) -> None:
    """A DataFrame handed to a windows method: a TypeError pointing to `forecast`, not numpy's
    'could not convert string to float' from deep inside."""
    if isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{method}: takes model windows X[N, lookback, 4] (numbers); for a DataFrame of bars use "
            "model.forecast(bars): a row per ticker x step"
        )


def _as_date(value: Any, field: str) -> dt.date:
    """A bar's date (date, datetime, Timestamp, datetime64 or ISO text) as a calendar date, by the
    library's one date parser (`data.rules.parse_day`: 01/02/2013 or epoch seconds are refused)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        raise DataError(f"{field}: the last bar's date is missing")
    try:
        return parse_day(value, f"{field}: the last bar's date").date()
    except ValueError as exc:
        raise DataError(str(exc)) from None
