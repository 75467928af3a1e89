"""forecaster.data.stock_splits: a jump by about a split factor is found, within the ticker's own band
(a split on a day with a 4.6% overnight move too), and warned about, refused or back-adjusted; a real
market move is not a split."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc

from forecaster.data.sources import load_sample
from forecaster.data.stock_splits import find_split_jumps
from forecaster.data.validate import validate_ohlc
from forecaster.errors import DataError

PRICES = ["open", "high", "low", "close"]


def good_frame() -> pd.DataFrame:
    return random_ohlc(tickers=("AAA", "BBB"), days=30)  # closes move about 1% a day


def row_of(frame: pd.DataFrame, ticker: str, day: int) -> int:
    return int(frame.index[frame["ticker"] == ticker][day])


def moving(daily: float, days: int = 120, seed: int = 5) -> pd.DataFrame:
    """One ticker AAA whose close moves `daily` (log standard deviation) a day; open = previous close."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, daily, days)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "date": pd.bdate_range("2021-01-04", periods=days),
            "ticker": "AAA",
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
        }
    )


def split_on(frame: pd.DataFrame, day: int, factor: float, overnight: float = 1.0) -> pd.DataFrame:
    """A factor:1 split on `day`, unadjusted (earlier prices stay factor times higher), on a day the
    stock opened `overnight` times the previous close (0.956: 4.6% down): prev close / open is
    factor / overnight. The day's bar stays consistent (high >= open >= low)."""
    frame = frame.copy()
    frame.loc[: day - 1, PRICES] *= factor
    frame.at[day, "open"] = frame.at[day - 1, "close"] / factor * overnight
    frame.at[day, "high"] = max(frame.at[day, "high"], frame.at[day, "open"])
    frame.at[day, "low"] = min(frame.at[day, "low"], frame.at[day, "open"])
    return frame


def with_split(frame: pd.DataFrame, ticker: str, day: int, ratio: float) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Unadjust: multiply the ticker's prices before `day` by `ratio` (a ratio:1 split on that day)."""
    frame = frame.copy()
    rows = frame.index[frame["ticker"] == ticker]
    frame.loc[rows[:day], PRICES] *= ratio
    return frame, pd.Timestamp(frame.at[rows[day], "date"])


# ---------------------------------------------------------------- issue 19.8: the day's own move


def test_a_split_on_a_day_with_a_4_6_percent_overnight_move_is_reported_under_the_default_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = split_on(moving(0.01), day=80, factor=2.0, overnight=1 / 1.046)  # prev close / open = 2.092
    day = frame.at[80, "date"]
    assert frame.at[79, "close"] / frame.at[80, "open"] == pytest.approx(2.092)
    with caplog.at_level(logging.WARNING):
        validate_ohlc(frame)  # splits="warn", the default
    assert "1 jump(s) look like unadjusted splits" in caplog.text
    assert f"ticker AAA date {day:%Y-%m-%d} ratio 2.092" in caplog.text
    jumps = find_split_jumps(frame)
    assert jumps[["ticker", "date", "factor"]].values.tolist() == [["AAA", day, 2.0]]


def test_the_same_split_on_a_quiet_day_is_reported() -> None:
    frame = split_on(moving(0.01), day=80, factor=2.0)
    assert find_split_jumps(frame)[["date", "factor"]].values.tolist() == [[frame.at[80, "date"], 2.0]]


@pytest.mark.parametrize("move", [1.09, 1 / 1.09])
def test_a_real_9_percent_move_is_not_a_split(move: float) -> None:
    frame = moving(0.01)
    frame.loc[80:, PRICES] *= move  # the whole price level moved overnight, and stayed
    assert find_split_jumps(frame).empty
    validate_ohlc(frame, splits="fail")  # nothing to refuse


def test_a_split_with_the_day_s_move_is_adjusted_by_the_split_factor_not_the_ratio() -> None:
    original = moving(0.01)
    frame = split_on(original, day=80, factor=2.0, overnight=1 / 1.046)
    adjusted = validate_ohlc(frame, splits="adjust")
    np.testing.assert_allclose(adjusted.loc[:79, PRICES], original.loc[:79, PRICES], rtol=1e-12)


def test_the_band_is_the_ticker_s_own_a_quiet_ticker_keeps_the_3_percent_band() -> None:
    quiet = split_on(moving(0.002), day=80, factor=2.0, overnight=1 / 1.031)  # 2.062: 3.1% off
    assert find_split_jumps(quiet).empty
    usual = split_on(moving(0.01), day=80, factor=2.0, overnight=1 / 1.031)
    assert len(find_split_jumps(usual)) == 1


def test_a_fall_near_a_factor_of_a_ticker_moving_8_percent_a_day_is_no_outlier() -> None:
    wild = split_on(moving(0.08), day=80, factor=2.0, overnight=1 / 1.046)  # a 52% fall, 8 typical moves
    assert find_split_jumps(wild).empty
    within = split_on(moving(0.08), day=80, factor=2.0, overnight=1 / 1.02)  # within 3% of 2: reported
    assert len(find_split_jumps(within)) == 1


def test_a_ticker_too_short_for_a_typical_move_keeps_the_3_percent_band() -> None:
    short = split_on(moving(0.01, days=8), day=5, factor=2.0, overnight=1 / 1.046)
    assert find_split_jumps(short).empty
    assert len(find_split_jumps(split_on(moving(0.01, days=8), day=5, factor=2.0))) == 1


# ---------------------------------------------------------------- the fixed band and the policies


def test_find_split_jumps_detects_a_two_for_one_split() -> None:
    frame, split_day = with_split(good_frame(), "BBB", 12, 2.0)
    jumps = find_split_jumps(frame)
    assert len(jumps) == 1
    assert jumps.at[0, "ticker"] == "BBB" and jumps.at[0, "date"] == split_day
    assert jumps.at[0, "ratio"] == pytest.approx(2.0, rel=0.03)
    assert find_split_jumps(good_frame()).empty


@pytest.mark.parametrize("ratio", [2.0 * 1.029, 2.0 * 0.971, 1 / 20 * 1.02, 3.0, 1.5 * 0.98, 10.0, 1 / 7])
def test_a_jump_within_3_percent_of_a_split_ratio_is_found(ratio: float) -> None:
    frame = good_frame()
    i = row_of(frame, "AAA", 12)
    frame.at[i, "open"] = frame.at[i - 1, "close"] / ratio
    jumps = find_split_jumps(frame)
    assert jumps[["ticker", "date"]].values.tolist() == [["AAA", frame.at[i, "date"]]]
    assert jumps.at[0, "ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize("ratio", [2.0 * 1.12, 2.0 / 1.12, 2.5, 1.2, 1.09, 1 / 1.09, 1 / 20 * 1.12, float("nan")])
def test_a_jump_further_from_every_split_ratio_than_the_widest_band_is_not(ratio: float) -> None:
    frame = good_frame()
    i = row_of(frame, "AAA", 12)
    frame.at[i, "open"] = frame.at[i - 1, "close"] / ratio
    assert find_split_jumps(frame).empty


def test_splits_adjust_removes_the_jump_and_keeps_later_prices(caplog: pytest.LogCaptureFixture) -> None:
    original = good_frame()
    frame, split_day = with_split(original, "BBB", 12, 2.0)
    with caplog.at_level(logging.WARNING):
        adjusted = validate_ohlc(frame, splits="adjust")
    assert f"ticker BBB date {split_day:%Y-%m-%d}" in caplog.text
    assert find_split_jumps(adjusted).empty
    closes = adjusted.loc[adjusted["ticker"] == "BBB", "close"].to_numpy()
    assert np.abs(np.diff(np.log(closes))).max() < 0.1  # no jump left
    # the bars from the split on are untouched; earlier bars are back on the same scale (÷ 2 ± 3%)
    after = (adjusted["ticker"] == "BBB") & (adjusted["date"] >= split_day)
    pd.testing.assert_frame_equal(adjusted[after], original[after])
    before = (adjusted["ticker"] == "BBB") & (adjusted["date"] < split_day)
    np.testing.assert_allclose(adjusted.loc[before, PRICES], original.loc[before, PRICES], rtol=0.03)
    pd.testing.assert_frame_equal(adjusted[adjusted["ticker"] == "AAA"], original[original["ticker"] == "AAA"])


def test_splits_fail_names_ticker_and_date() -> None:
    frame, split_day = with_split(good_frame(), "AAA", 5, 2.0)
    expected = f"unadjusted stock splits: ticker AAA date {split_day:%Y-%m-%d} ratio (1\\.9|2\\.0)"
    with pytest.raises(DataError, match=expected):
        validate_ohlc(frame, splits="fail")


def test_split_jumps_are_found_per_ticker_whatever_the_order_of_the_tickers_rows() -> None:
    frame, split_day = with_split(good_frame(), "BBB", 12, 2.0)
    interleaved = frame.sort_values(["date", "ticker"], kind="stable")  # AAA, BBB, AAA, BBB, ...
    jumps = find_split_jumps(interleaved)
    assert jumps[["ticker", "date"]].values.tolist() == [["BBB", split_day]]
    assert jumps.at[0, "ratio"] == find_split_jumps(frame).at[0, "ratio"]


def test_bars_adjusted_at_the_source_get_no_split_check(caplog: pytest.LogCaptureFixture) -> None:
    """The sample's AAPL fell 52% on 2000-09-29 (ratio 1.898): prices alone call it a 2:1 split, so
    the sample (and yfinance's adjusted bars) are validated without the check, and load quietly."""
    with caplog.at_level(logging.WARNING):
        sample = load_sample()
    assert "split" not in caplog.text
    jumps = find_split_jumps(sample)
    assert jumps[["ticker", "date", "factor"]].values.tolist() == [["AAPL", pd.Timestamp("2000-09-29"), 2.0]]
    frame, _ = with_split(good_frame(), "AAA", 12, 2.0)
    assert len(validate_ohlc(frame, splits=None)) == len(frame)  # left as it is, no warning
    assert "split" not in caplog.text
