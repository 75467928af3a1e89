"""No leakage across the date split: targets stay on their side of each cut, and the scaler
is fitted on training data only (forecaster.run.steps.split_windows, forecaster.data.validate.split_by_date)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from factories import random_ohlc

from forecaster.config import DataConfig
from forecaster.data.validate import split_by_date
from forecaster.errors import DataError
from forecaster.run.steps import split_windows

CONFIG = DataConfig(lookback=10, horizon=3, val_fraction=0.15, test_fraction=0.15)


def target_dates(panel, origins: np.ndarray, horizon: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """dates[N, H] of the targets of the windows ending at `origins`."""
    return panel.dates[origins[:, None] + np.arange(1, horizon + 1)]


def test_split_by_date_cuts_the_calendar_by_fraction() -> None:
    frame = random_ohlc(days=100)
    split = split_by_date(frame, val_fraction=0.2, test_fraction=0.1)
    dates = np.sort(frame["date"].unique())
    assert split.test_start == pd.Timestamp(dates[90])
    assert split.val_start == pd.Timestamp(dates[70])
    labels = split.label(dates)
    assert labels.tolist() == [0] * 70 + [1] * 20 + [2] * 10


def test_split_windows_targets_never_cross_a_cut() -> None:
    frame = random_ohlc(tickers=("AAA", "BBB", "CCC"), days=200)
    windows = split_windows(frame, CONFIG)
    split, panel, H = windows.split, windows.panel, CONFIG.horizon
    val_start, test_start = split.val_start.to_datetime64(), split.test_start.to_datetime64()

    train_targets = target_dates(panel, windows.train.origins, H)
    val_targets = target_dates(panel, windows.val.origins, H)
    test_targets = target_dates(panel, windows.test_origins, H)
    assert len(train_targets) and len(val_targets) and len(test_targets)
    assert (train_targets < val_start).all()
    assert (val_targets >= val_start).all() and (val_targets < test_start).all()
    assert (test_targets >= test_start).all()
    # and inputs of a training window are earlier still: nothing of a training window is after val_start
    assert (panel.dates[windows.train.origins] < val_start).all()
    # every ticker contributes to every split
    for origins in (windows.train.origins, windows.val.origins, windows.test_origins):
        assert set(panel.series_id[origins].tolist()) == {0, 1, 2}


def test_split_windows_drops_only_windows_straddling_a_cut() -> None:
    frame = random_ohlc(tickers=("AAA",), days=150)
    windows = split_windows(frame, CONFIG)
    panel, H = windows.panel, CONFIG.horizon
    all_origins = panel.origins(CONFIG.lookback, H)
    kept = np.concatenate([windows.train.origins, windows.val.origins, windows.test_origins])
    dropped = np.setdiff1d(all_origins, kept)
    labels = windows.split.label(target_dates(panel, dropped, H).ravel()).reshape(-1, H)
    assert len(dropped) == 2 * (H - 1)  # H-1 straddling windows at each of the two cuts
    assert (labels.min(axis=1) != labels.max(axis=1)).all()


def test_split_windows_stride_thins_training_windows_only() -> None:
    frame = random_ohlc(days=200)
    full = split_windows(frame, CONFIG)
    strided = split_windows(frame, CONFIG, stride=3)
    np.testing.assert_array_equal(strided.train.origins, full.train.origins[::3])
    np.testing.assert_array_equal(strided.val.origins, full.val.origins)
    np.testing.assert_array_equal(strided.test_origins, full.test_origins)


def test_transform_and_train_windows_ignore_the_test_period() -> None:
    frame = random_ohlc(tickers=("AAA", "BBB"), days=200)
    dates = np.sort(frame["date"].unique())
    late = frame["date"] >= dates[int(len(dates) * 0.85)]  # the last 15% of dates: the test period
    wild = frame.copy()
    factor = np.exp(np.random.default_rng(7).normal(0.0, 0.5, late.sum()))  # huge noisy moves
    for column in ("open", "high", "low", "close"):
        wild.loc[late, column] = wild.loc[late, column] * factor

    calm, shaken = split_windows(frame, CONFIG), split_windows(wild, CONFIG)

    assert shaken.split == calm.split
    assert shaken.train.transform == calm.train.transform  # nothing fitted: no state to leak into
    np.testing.assert_array_equal(shaken.train.origins, calm.train.origins)
    before = calm.panel.gather(calm.train.origins, CONFIG.lookback, CONFIG.horizon)
    after = shaken.panel.gather(shaken.train.origins, CONFIG.lookback, CONFIG.horizon)
    np.testing.assert_array_equal(after.X, before.X)
    np.testing.assert_array_equal(after.Y, before.Y)
    # the change did reach the test windows, so the equalities above are not vacuous
    test_before = calm.panel.gather(calm.test_origins, CONFIG.lookback, CONFIG.horizon)
    test_after = shaken.panel.gather(shaken.test_origins, CONFIG.lookback, CONFIG.horizon)
    assert not np.allclose(test_after.Y, test_before.Y)


def test_train_targets_are_in_units_of_each_windows_own_volatility() -> None:
    frame = random_ohlc(tickers=("AAA",), days=120)
    windows = split_windows(frame, CONFIG)
    raw = windows.panel.gather(windows.train.origins[:5], CONFIG.lookback, CONFIG.horizon)
    _, _, y = windows.train.tensors(np.arange(5), torch.device("cpu"))
    log_ratio = np.log(raw.Y / raw.X[:, -1, 3:4].astype(np.float64))
    np.testing.assert_allclose(y.numpy(), log_ratio / windows.train.sigma[:5, None], rtol=1e-5)
    assert (0.002 < windows.train.sigma).all() and (windows.train.sigma < 0.05).all()  # the factory's vol is ~1%
    assert 0.007 < np.median(windows.train.sigma) < 0.013


def test_split_windows_without_training_history_names_the_cut() -> None:
    frame = random_ohlc(tickers=("AAA",), days=40)
    with pytest.raises(DataError, match="no training windows before"):
        split_windows(frame, DataConfig(lookback=30, horizon=5))
