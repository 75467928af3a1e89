"""Offline batch scoring: one forecast per ticker of a whole frame, from its last lookback bars.

validated frame -> Panel -> each ticker's last bar on or before ``as_of`` found by index arithmetic
on the panel (no loop over tickers) -> windows X[S,L,4] gathered batch by batch ->
`Forecaster.predict_windows` (the one forecast path, so the numbers equal the service's for the same
history) -> dates from `forecaster.data.calendar` -> a long table, one row per ticker x step::

    ticker, as_of (its last observed date), step, date (the step's trading session),
    close (the median), q0.1, q0.5, q0.9 (every quantile level, named like the backtest's)

Tickers without enough history (fewer than lookback bars on or before as_of), or whose last
window holds a price the model refuses (`data.rules.accepted_prices`), are skipped and listed in
one warning, or refused with a DataError when ``strict``.

An ``as_of`` past the data (a trading session of the exchange passed between the data's last bar
and it) is a DataError naming both dates: forecasts from bars that old are not forecasts as of that
date. ``allow_stale`` accepts it: the table then carries ``stale_days``, the calendar days from each
ticker's last bar to the requested as_of (without one: to the data's last date).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from forecaster.config import MEDIAN, quantile_column
from forecaster.data.calendar import DEFAULT_EXCHANGE, next_sessions
from forecaster.data.rules import accepted_prices
from forecaster.data.storage import check_table_path, write_table_atomically
from forecaster.data.validate import parse_day, validate_ohlc
from forecaster.data.windows import Panel
from forecaster.errors import DataError

if TYPE_CHECKING:  # a type only: batch scoring's module loads no torch (the command line imports it
    import torch  # in the background while it reads the data)

log = logging.getLogger(__name__)


class Quantiles(Protocol):
    @property
    def quantiles(self) -> np.ndarray: ...  # [N,H,Q] prices


class Predictor(Protocol):
    """What batch scoring needs of a model: `forecaster.model.predictor.Forecaster` is one (it calls
    this module for `Forecaster.forecast`, so this module names it only by what it uses)."""

    @property
    def lookback(self) -> int: ...

    @property
    def horizon(self) -> int: ...

    @property
    def quantiles(self) -> tuple[float, ...]: ...

    def predict_windows(self, X: np.ndarray, calibrated: bool = True, batch_size: int = ...) -> Quantiles: ...


BATCH_SIZE = 8192  # windows per forward pass: large enough that per-call overheads vanish on CPU and GPU
MAX_LISTED = 20  # skipped tickers named in the warning (all of them are in BatchForecast.skipped)
TOO_SHORT = "too few bars"
STALE_COLUMN = "stale_days"  # with allow_stale: days from a ticker's last bar (its as_of) to the one asked for
BAD_PRICES = "a price the model refuses"
# progress(done, total): windows forecast so far, out of all to forecast
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchForecast:
    """The forecasts table, the tickers left out (ticker -> why) and seconds per phase."""

    table: pd.DataFrame
    skipped: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


def last_bars(panel: Panel, as_of: str | pd.Timestamp | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per ticker of the panel: the global row of its last bar on or before `as_of` (every bar when
    None) and how many bars it has up to there (0: none, its row is then meaningless)."""
    firsts = panel.starts[:-1]
    if as_of is None:
        counts = np.diff(panel.starts)
    else:
        cut = parse_day(as_of, "as_of").to_datetime64()
        # rows are in date order within a ticker: its bars up to the cut are its first `count` rows
        counts = np.add.reduceat((panel.dates <= cut).astype(np.int64), firsts)
    return firsts + counts - 1, counts


def forecast_panel(
    forecaster: Predictor,
    frame: pd.DataFrame,
    as_of: str | pd.Timestamp | None = None,
    exchange: str = DEFAULT_EXCHANGE,
    batch_size: int = BATCH_SIZE,
    workers: int = 1,
    strict: bool = False,
    progress: Progress | None = None,
    allow_stale: bool = False,
) -> BatchForecast:
    """Forecast every ticker of a validated frame (`data.validate_ohlc`) from its last bars up to `as_of`.

    workers: batches forecast at once, each in its own thread (numpy and torch release the GIL,
    so on a CPU with torch at one thread per worker the features of one batch and the network
    of another run on different cores); 1 on a GPU. Raises DataError when no ticker can be
    forecast, or (``strict``) when any cannot, or when `as_of` is past the data (unless
    ``allow_stale``: see the module docstring).
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers: expected >= 1, got {batch_size} and {workers}")
    timings: dict[str, float] = {}
    L = forecaster.lookback
    with _timed(timings, "window"):
        panel = Panel.from_frame(frame)
        requested = check_as_of(panel.dates, as_of, exchange, allow_stale)
        rows, counts = last_bars(panel, as_of)
        enough = counts >= L
        origins = rows[enough]
        names = np.asarray(panel.tickers, dtype=object)
    skipped = {t: TOO_SHORT for t in names[~enough]}
    if skipped and (strict or not enough.any()):  # refused before any forecast is computed
        _report_skipped(skipped, counts, panel, as_of, L, strict)
    with _timed(timings, "forecast"):
        accepted, quantiles = _forecast(forecaster, panel, origins, batch_size, workers, progress)
    skipped |= {t: BAD_PRICES for t in names[enough][~accepted]}
    _report_skipped(skipped, counts, panel, as_of, L, strict)
    kept = np.flatnonzero(enough)[accepted]
    with _timed(timings, "calendar"):
        last_dates = panel.dates[origins[accepted]]
        dates = session_dates(last_dates, forecaster.horizon, exchange)
    with _timed(timings, "table"):
        table = forecast_table(names[kept], last_dates, dates, quantiles, forecaster.quantiles)
        if allow_stale:
            table[STALE_COLUMN] = (requested - table["as_of"]).dt.days
    return BatchForecast(table, dict(sorted(skipped.items())), timings)


def check_as_of(
    dates: np.ndarray, as_of: str | pd.Timestamp | None, exchange: str = DEFAULT_EXCHANGE, allow_stale: bool = False
) -> pd.Timestamp:
    """The as-of date forecasts are asked for (default: the last of `dates`, the data's bars); a
    DataError naming it and the data's last date when a trading session of `exchange` passed
    between the two, unless ``allow_stale`` (then one warning says how old the data is)."""
    last = pd.Timestamp(np.max(dates)).normalize()
    if as_of is None:
        return last
    requested = parse_day(as_of, "as_of")
    if requested <= last or next_sessions(exchange, last.date(), 1)[0] > requested.date():
        return requested  # on or before the last bar, or only a weekend or holiday after it
    age = f"the data's last bar is {last:%Y-%m-%d}, {(requested - last).days} days earlier"
    if not allow_stale:
        raise DataError(
            f"as_of (--as-of): {requested:%Y-%m-%d} is past the data: {age}; allow_stale=True (--allow-stale) "
            f"forecasts from the last bars, with the days since in a {STALE_COLUMN} column"
        )
    log.warning("as_of %s is past the data: %s; forecasting from the last bars (stale)", f"{requested:%Y-%m-%d}", age)
    return requested


def default_workers(device: torch.device) -> int:
    """Batches in flight by default: one per CPU core this process may use, each batch on one torch
    thread (the caller sets torch.set_num_threads(1)): unlike torch's intra-op threads, which wait
    for each other at every step of the recurrence, independent batches do not stall when another
    process takes a core. 1 on a GPU, which runs a whole batch in parallel itself."""
    if device.type != "cpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _forecast(
    forecaster: Predictor,
    panel: Panel,
    origins: np.ndarray,
    batch_size: int,
    workers: int,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(accepted[N] per origin, quantiles[n_accepted,H,Q]) of the windows ending at `origins`."""
    L, total = forecaster.lookback, len(origins)

    def one_batch(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = panel.gather(chunk, L, 0).X  # -> (B, L, 4); no targets: the future is what is forecast
        ok = np.asarray(accepted_prices(X).all(axis=(1, 2)))  # -> (B,)
        return ok, forecaster.predict_windows(X if ok.all() else X[ok], batch_size=batch_size).quantiles

    chunks = [origins[i : i + batch_size] for i in range(0, total, batch_size)]
    if not chunks:
        return np.zeros(0, dtype=bool), np.empty((0, forecaster.horizon, len(forecaster.quantiles)))
    oks, outputs = [], []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forecast") as pool:
        for ok, quantiles in pool.map(one_batch, chunks):  # in order, `workers` batches in flight
            oks.append(ok)
            outputs.append(quantiles)
            if progress is not None:
                progress(sum(len(o) for o in oks), total)
    return np.concatenate(oks), np.concatenate(outputs)


def _report_skipped(
    skipped: dict[str, str],
    counts: np.ndarray,
    panel: Panel,
    as_of: str | pd.Timestamp | None,
    lookback: int,
    strict: bool,
) -> None:
    """One warning naming the skipped tickers (or a DataError: strict, or nothing left to forecast)."""
    if not skipped:
        return
    bars = dict(zip(panel.tickers, counts.tolist(), strict=True))
    shown = [f"{t} ({bars[t]} bars)" if why == TOO_SHORT else f"{t} ({why})" for t, why in sorted(skipped.items())][
        :MAX_LISTED
    ]
    more = len(skipped) - len(shown)
    when = f" on or before {parse_day(as_of, 'as_of'):%Y-%m-%d}" if as_of is not None else ""
    message = (
        f"{len(skipped)} of {len(panel.tickers)} ticker(s) cannot be forecast (the model needs lookback = "
        f"{lookback} bars{when}, each a price it accepts): {', '.join(shown)}" + (f" and {more} more" if more else "")
    )
    if strict or len(skipped) == len(panel.tickers):
        raise DataError(f"data: {message}")
    log.warning("skipped %s", message)


def session_dates(last_dates: np.ndarray, horizon: int, exchange: str = DEFAULT_EXCHANGE) -> np.ndarray:
    """[S,H] datetime64: the H trading sessions after each last date (the calendar is asked once per
    distinct date, and a whole file usually ends on one)."""
    distinct, inverse = np.unique(last_dates.astype("datetime64[D]"), return_inverse=True)
    table = np.array(
        [next_sessions(exchange, day.item(), horizon) for day in distinct], dtype="datetime64[ns]"
    ).reshape(len(distinct), horizon)
    return table[inverse.reshape(-1)]


def forecast_table(
    tickers: np.ndarray,
    last_dates: np.ndarray,
    dates: np.ndarray,
    quantiles: np.ndarray,
    levels: tuple[float, ...],
) -> pd.DataFrame:
    """The long table (see the module docstring) of S tickers x H steps."""
    S, H = dates.shape
    columns: dict[str, np.ndarray] = {
        "ticker": np.repeat(tickers.astype(object), H),
        "as_of": np.repeat(last_dates.astype("datetime64[ns]"), H),
        "step": np.tile(np.arange(1, H + 1), S),
        "date": dates.reshape(-1),
        "close": quantiles[..., levels.index(MEDIAN)].reshape(-1),
    }
    for i, level in enumerate(levels):
        columns[quantile_column(level)] = quantiles[..., i].reshape(-1)
    return pd.DataFrame(columns)


def forecast_bars(
    forecaster: Predictor,
    bars: pd.DataFrame,
    as_of: str | pd.Timestamp | None = None,
    exchange: str = DEFAULT_EXCHANGE,
    batch_size: int = BATCH_SIZE,
    workers: int = 1,
    strict: bool = False,
    allow_stale: bool = False,
) -> pd.DataFrame:
    """Any long frame of bars (date, ticker, open, high, low, close) -> the forecasts table:
    validated (`data.validate_ohlc`), then `forecast_panel`. The Python API's forecast."""
    frame = validate_ohlc(bars)
    return forecast_panel(
        forecaster, frame, as_of, exchange, batch_size, workers, strict, allow_stale=allow_stale
    ).table


def check_forecasts_path(path: str | Path, reads: str | Path | None = None) -> Path:
    """The path if forecasts can be written there (`storage.check_table_path`), else ValueError."""
    return check_table_path(path, "forecasts file", reads)


def write_forecasts(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table atomically (forecaster.data.storage): a reader sees the previous file or the whole
    new one, and a failed write leaves the previous file as it was."""
    return write_table_atomically(table, check_forecasts_path(path))


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started
