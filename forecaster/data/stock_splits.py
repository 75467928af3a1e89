"""Unadjusted stock splits in a bars frame: found, and reported, refused or back-adjusted.

An unadjusted 2:1 split halves the price overnight: the previous close over the day's open is about
2. The day of a split is a trading day like any other, so the ratio is a split factor times that
day's own overnight move: 2.092 for a 2:1 split on a day the stock opened 4.6% down. A fixed band
around the factor misses such days; a wide one calls real crashes splits. So the band is the
ticker's own, in log space: log(ratio) may sit up to SPLIT_DAY_MOVES typical daily moves of the
ticker from log(factor) (never less than SPLIT_TOLERANCE, never more than SPLIT_MAX_DAY_MOVE), when
the jump itself is no market move of that ticker (at least SPLIT_OUTLIER typical moves). A jump
within SPLIT_TOLERANCE of a factor is reported whatever the ticker. So for a stock moving 1% a day a
2:1 split is reported from a ratio of 1.88 to 2.12; a real 9% move is near no factor; for a stock
moving 0.2% a day the band stays 3% (2.062 is not reported); a 48% fall of a stock moving 8% a day
(10 typical moves are 0.8 in log, more than log(1.92)) is reported only within 3% of a factor.
Prices alone cannot tell a split from a real fall of the same size: AAPL's of 2000-09-29 (-52%, a
ratio of 1.898, in the bundled sample) is reported as a possible 2:1 split. Bars adjusted at the
source (the sample, yfinance's) are therefore not checked (`validate_ohlc(splits=None)`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from forecaster.config import FEATURES
from forecaster.data.rules import MAX_LISTED_ISSUES
from forecaster.errors import DataError

log = logging.getLogger(__name__)

# Ratios of common stock splits (and their reverses); a close-to-open jump this close to one
# of them is far more likely an unadjusted split than a market move.
SPLIT_RATIOS: tuple[float, ...] = (2.0, 3.0, 1.5, 4.0, 5.0, 7.0, 10.0, 20.0)
SPLIT_FACTORS: np.ndarray = np.sort([t for r in SPLIT_RATIOS for t in (r, 1.0 / r)])
# |log(ratio / factor)| within log(1 + SPLIT_TOLERANCE) is a split whatever the ticker's moves
SPLIT_TOLERANCE = 0.03
# ... and within SPLIT_DAY_MOVES typical daily moves of the ticker, up to log(1 + SPLIT_MAX_DAY_MOVE),
# when the jump is at least SPLIT_OUTLIER typical moves (the bands stay apart: the closest
# factors, 4 and 5, are log(1.25) = 0.22 apart, more than two widest bands, 2 x 0.095)
SPLIT_DAY_MOVES = 6.0
SPLIT_MAX_DAY_MOVE = 0.10
SPLIT_OUTLIER = 10.0
# a typical move needs this many close-to-close returns; a shorter ticker gets the fixed band only
SPLIT_MIN_RETURNS = 10
_MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation over its median absolute deviation


def find_split_jumps(frame: pd.DataFrame, codes: np.ndarray | None = None) -> pd.DataFrame:
    """Rows whose open jumped from the previous close by about a stock-split factor (module docstring).

    frame: each ticker's rows in date order; codes: each row's ticker as an integer, -1 for none
    (computed when not given). Returns columns ticker, date, ratio (previous close / open, >1 for a
    forward split) and factor (the split factor it is taken for).
    """
    if codes is None:
        codes = pd.factorize(frame["ticker"])[0]
    close = frame["close"].to_numpy(dtype=np.float64)
    previous = _previous_close(close, codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.log(previous / frame["open"].to_numpy(dtype=np.float64))
    log_factors = np.log(SPLIT_FACTORS)
    widest = max(np.log1p(SPLIT_TOLERANCE), np.log1p(SPLIT_MAX_DAY_MOVE))
    # the few jumps inside the widest band around a factor, found in one sorted lookup (NaN sorts
    # past every edge), then held to their ticker's own band
    bounds = np.stack([log_factors - widest, log_factors + widest]).T.ravel()  # lo, hi of each factor
    assert (np.diff(bounds) > 0).all(), "split bands must not overlap for the lookup below"
    candidates = np.flatnonzero(np.searchsorted(bounds, jump) % 2 == 1)
    nearest = np.abs(jump[candidates, None] - log_factors).argmin(axis=1)
    off = np.abs(jump[candidates] - log_factors[nearest])
    typical = _typical_moves(np.log(close / previous), codes, codes[candidates])
    band = np.clip(SPLIT_DAY_MOVES * typical, np.log1p(SPLIT_TOLERANCE), np.log1p(SPLIT_MAX_DAY_MOVE))
    outlier = np.abs(jump[candidates]) >= SPLIT_OUTLIER * typical  # False where typical is NaN
    split = (off <= np.log1p(SPLIT_TOLERANCE)) | (outlier & (off <= band))
    rows = candidates[split]
    hits = frame.iloc[rows][["ticker", "date"]].copy()
    hits["ratio"] = np.exp(jump[rows])
    hits["factor"] = SPLIT_FACTORS[nearest[split]]
    return hits.reset_index(drop=True)


def _previous_close(close: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each row's previous close of the same ticker (NaN on its first row): rows grouped by ticker,
    in their order within each ticker, unless they already come ticker by ticker."""
    order = None if (np.diff(codes) >= 0).all() else np.argsort(codes, kind="stable")
    grouped, closes = (codes, close) if order is None else (codes[order], close[order])
    previous = np.full(len(close), np.nan)
    same = (grouped[1:] == grouped[:-1]) & (grouped[1:] >= 0)
    previous[1:][same] = closes[:-1][same]
    if order is not None:
        previous[order] = previous.copy()
    return previous


def _typical_moves(returns: np.ndarray, codes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each code in `wanted`, its ticker's typical daily move: the standard deviation of its
    close-to-close log returns, estimated robustly (median absolute deviation, which the split
    itself does not move); NaN with fewer than SPLIT_MIN_RETURNS returns."""
    if len(wanted) == 0:
        return np.empty(0)
    keep = np.isin(codes, wanted) & np.isfinite(returns)
    kept, owner = returns[keep], codes[keep]
    centre = pd.Series(kept).groupby(owner).median()
    deviation = pd.Series(np.abs(kept - centre.reindex(owner).to_numpy())).groupby(owner)
    spread = deviation.median() * _MAD_TO_SIGMA
    spread[deviation.size() < SPLIT_MIN_RETURNS] = np.nan
    return spread.reindex(wanted).to_numpy(dtype=np.float64)


def handle_split_jumps(frame: pd.DataFrame, splits: str, codes: np.ndarray) -> pd.DataFrame:
    """`splits`: ``warn`` logs the jumps found, ``fail`` raises a DataError naming them, ``adjust``
    divides each ticker's earlier prices by the factor (and multiplies its volumes), logged.
    frame: validated rows, each ticker's in date order; codes: each row's ticker as an integer."""
    jumps = find_split_jumps(frame, codes)
    if jumps.empty:
        return frame
    listing = "; ".join(
        f"ticker {row.ticker} date {row.date:%Y-%m-%d} ratio {row.ratio:.3f}"
        for row in jumps.head(MAX_LISTED_ISSUES).itertuples()
    )
    if splits == "fail":
        raise DataError(f"data: {len(jumps)} jump(s) look like unadjusted stock splits: {listing}")
    if splits == "warn":
        log.warning(
            "%d jump(s) look like unadjusted splits (pass adjusted prices, or --splits adjust: data.splits in the "
            "training settings): %s",
            len(jumps),
            listing,
        )
        return frame
    frame = frame.copy()
    for row in jumps.itertuples():
        earlier = (frame["ticker"] == row.ticker) & (frame["date"] < row.date)
        frame.loc[earlier, list(FEATURES)] /= row.factor
        if "volume" in frame.columns:
            frame.loc[earlier, "volume"] *= row.factor
    log.warning("back-adjusted %d split(s): %s", len(jumps), listing)
    return frame
