"""forecaster.data.windows: make_windows against hand-built windows, and Panel windows stay in one ticker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc

from forecaster.data.windows import CLOSE, Panel, make_windows


def counting_series(length: int) -> np.ndarray:
    """Row r is [4r, 4r+1, 4r+2, 4r+3]: every value says which row and column it came from."""
    return np.arange(length * 4, dtype=np.float64).reshape(length, 4)


def test_make_windows_matches_hand_built_windows() -> None:
    series = counting_series(10)
    windows = make_windows(series, input_len=3, horizon=2)

    assert windows.X.shape == (10 - 3 - 2 + 1, 3, 4)
    assert windows.Y.shape == (6, 2)
    for i in range(6):
        np.testing.assert_array_equal(windows.X[i], series[i : i + 3])
        np.testing.assert_array_equal(windows.Y[i], series[i + 3 : i + 5, CLOSE])
    # by hand: the first window is rows 0..2, its targets the closes of rows 3 and 4
    np.testing.assert_array_equal(windows.X[0, :, CLOSE], [3.0, 7.0, 11.0])
    np.testing.assert_array_equal(windows.Y[0], [15.0, 19.0])
    np.testing.assert_array_equal(windows.Y[-1], [35.0, 39.0])  # the closes of the last two rows
    np.testing.assert_array_equal(windows.last_close, series[2:8, CLOSE])


def test_make_windows_stride_keeps_every_stride_th_window() -> None:
    series = counting_series(12)
    full = make_windows(series, input_len=3, horizon=2)
    strided = make_windows(series, input_len=3, horizon=2, stride=3)

    assert len(strided.X) == (12 - 3 - 2) // 3 + 1 == 3
    np.testing.assert_array_equal(strided.X, full.X[[0, 3, 6]])
    np.testing.assert_array_equal(strided.Y, full.Y[[0, 3, 6]])
    np.testing.assert_array_equal(strided.X[1], series[3:6])


def test_make_windows_returns_views_of_the_input_not_copies() -> None:
    series = counting_series(50)
    windows = make_windows(series, input_len=8, horizon=3, stride=2)

    assert np.shares_memory(windows.X, series)
    assert np.shares_memory(windows.Y, series)
    series[20, CLOSE] = -1.0  # a change to the input shows through the windows
    assert windows.X[7, 6, CLOSE] == -1.0  # window 7 (stride 2) covers rows 14..21
    assert windows.Y[6, 0] == -1.0  # window 6 covers rows 12..19, its targets rows 20..22
    assert windows.Y[5, 2] == -1.0  # window 5: targets rows 18..20


def test_make_windows_exactly_one_window_when_length_is_lookback_plus_horizon() -> None:
    windows = make_windows(counting_series(5), input_len=3, horizon=2)
    assert windows.X.shape == (1, 3, 4)
    assert windows.Y.shape == (1, 2)


def test_make_windows_rejects_short_or_misshapen_series() -> None:
    with pytest.raises(ValueError, match="lookback \\+ horizon = 6"):
        make_windows(counting_series(5), input_len=4, horizon=2)
    with pytest.raises(ValueError, match="expected shape \\[L, 4\\]"):
        make_windows(np.zeros((10, 3)), input_len=3, horizon=2)


def ticker_coded_frame(lengths: dict[str, int]) -> pd.DataFrame:
    """Prices that encode their ticker: ticker k's prices lie in [1000k, 1000k + 999]."""
    parts = []
    for k, (ticker, n) in enumerate(lengths.items(), start=1):
        price = 1000.0 * k + np.arange(n, dtype=np.float64)
        parts.append(
            pd.DataFrame(
                {
                    "date": pd.bdate_range("2021-01-01", periods=n),
                    "ticker": ticker,
                    "open": price,
                    "high": price,
                    "low": price,
                    "close": price,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_panel_windows_never_cross_tickers() -> None:
    lengths = {"AAA": 30, "BBB": 17, "CCC": 25}
    panel = Panel.from_frame(ticker_coded_frame(lengths))
    lookback, horizon = 6, 3
    origins = panel.origins(lookback, horizon)
    windows = panel.gather(origins, lookback, horizon)

    every_value = np.concatenate([windows.X.reshape(len(origins), -1), windows.Y], axis=1)
    ticker_of_value = every_value // 1000
    assert (ticker_of_value == ticker_of_value[:, :1]).all(), "a window mixes rows of two tickers"
    # and the values are consecutive days of that ticker: close rises by 1 per row
    closes = np.concatenate([windows.X[:, :, CLOSE], windows.Y], axis=1)
    np.testing.assert_array_equal(np.diff(closes, axis=1), 1.0)
    # the ticker of every window is the one the panel says
    np.testing.assert_array_equal(ticker_of_value[:, 0] - 1, panel.series_id[origins])


@pytest.mark.parametrize(("lookback", "horizon"), [(6, 3), (2, 1), (10, 5)])
def test_panel_origins_per_ticker_is_length_minus_lookback_minus_horizon_plus_one(lookback: int, horizon: int) -> None:
    lengths = {"AAA": 30, "BBB": 17, "CCC": 25}
    panel = Panel.from_frame(ticker_coded_frame(lengths))
    origins = panel.origins(lookback, horizon)

    counts = np.bincount(panel.series_id[origins], minlength=len(lengths))
    assert counts.tolist() == [n - lookback - horizon + 1 for n in lengths.values()]


def test_panel_origins_without_future_reach_each_tickers_last_row() -> None:
    lengths = {"AAA": 12, "BBB": 9}
    panel = Panel.from_frame(ticker_coded_frame(lengths))
    origins = panel.origins(lookback=4, horizon=3, need_future=False)

    counts = np.bincount(panel.series_id[origins])
    assert counts.tolist() == [12 - 4 + 1, 9 - 4 + 1]
    assert set(panel.starts[1:] - 1) <= set(origins.tolist())  # the last row of every ticker


def test_panel_origins_stride_counts_from_each_tickers_first_window() -> None:
    panel = Panel.from_frame(ticker_coded_frame({"AAA": 20, "BBB": 20}))
    origins = panel.origins(lookback=5, horizon=2, stride=4)
    position = origins - panel.starts[panel.series_id[origins]]
    assert position.tolist() == [4, 8, 12, 16, 4, 8, 12, 16]


def test_panel_gather_equals_make_windows_of_each_ticker() -> None:
    frame = random_ohlc(tickers=("AAA", "BBB"), days=40)
    panel = Panel.from_frame(frame)
    lookback, horizon = 7, 3
    windows = panel.gather(panel.origins(lookback, horizon), lookback, horizon)
    expected_X, expected_Y = [], []
    for _, group in frame.groupby("ticker", sort=True):
        per_ticker = make_windows(group[["open", "high", "low", "close"]].to_numpy(np.float32), lookback, horizon)
        expected_X.append(per_ticker.X)
        expected_Y.append(per_ticker.Y)
    np.testing.assert_array_equal(windows.X, np.concatenate(expected_X))
    np.testing.assert_array_equal(windows.Y, np.concatenate(expected_Y))


def test_panel_from_unsorted_frame_groups_rows_by_ticker_in_date_order() -> None:
    frame = ticker_coded_frame({"AAA": 10, "BBB": 10})
    for rows in (frame.sample(frac=1.0, random_state=3), frame):  # shuffled, and already in order
        panel = Panel.from_frame(rows)
        assert panel.tickers == ("AAA", "BBB")
        np.testing.assert_array_equal(panel.values[:, CLOSE], frame["close"].to_numpy(np.float32))
        np.testing.assert_array_equal(panel.dates, frame["date"].to_numpy(dtype="datetime64[ns]"))
        np.testing.assert_array_equal(panel.starts, [0, 10, 20])


def test_gather_never_reads_the_next_tickers_closes_as_targets() -> None:
    frame = pd.DataFrame(
        {
            "date": list(pd.bdate_range("2024-01-01", periods=5)) * 2,
            "ticker": ["A"] * 5 + ["B"] * 5,
            **{c: [1.0, 2, 3, 4, 5, 100, 200, 300, 400, 500] for c in ("open", "high", "low", "close")},
        }
    )
    panel = Panel.from_frame(frame)
    # origin = A's last row: no future inside A, so every target is NaN, never B's 100, 200
    Y = panel.future_closes(np.array([4, 3]), horizon=2)
    assert np.isnan(Y[0]).all()
    assert Y[1, 0] == 5.0 and np.isnan(Y[1, 1])


def test_panel_sorts_an_unsorted_frame_so_windows_stay_in_one_ticker() -> None:
    frame = pd.DataFrame(
        {
            "date": list(pd.bdate_range("2024-01-01", periods=3))[::-1] + list(pd.bdate_range("2024-01-01", periods=3)),
            "ticker": ["B", "B", "B", "A", "A", "A"],
            **{c: [30.0, 20, 10, 1, 2, 3] for c in ("open", "high", "low", "close")},
        }
    )
    panel = Panel.from_frame(frame)
    assert panel.tickers == ("A", "B")
    assert panel.values[:, 3].tolist() == [1, 2, 3, 10, 20, 30]
