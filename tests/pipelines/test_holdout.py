"""The gate's holdout is the training run's test origins, and the baselines are fitted once per
retrain: the challenger's backtest is the one its run made; the champion is scored on the same
origins without fitting EWMA or GARCH again (when its windows fit the run's), with the same model
figures a full backtest gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import random_ohlc

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.evaluation import backtest as evaluate
from forecaster.evaluation import baselines
from forecaster.run.steps import TrainOutcome, evaluate_frame, predict_fn, run_training
from pipelines.retrain import holdout_backtest

FRAME = random_ohlc(tickers=("AAA", "BBB"), days=260, seed=4)
MODEL = ModelConfig(arch="gru", hidden_size=8, num_layers=1, dropout=0.0)


def trained(tmp_path: Path, name: str, lookback: int = 20, epochs: int = 1) -> TrainOutcome:
    data, train = DataConfig(lookback=lookback, horizon=3), TrainConfig(epochs=epochs, device="cpu")
    return run_training(FRAME, data, MODEL, train, tmp_path / name)


def no_baselines(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the baselines were fitted again")


def test_the_challenger_holdout_is_its_run_backtest(tmp_path: Path) -> None:
    run = trained(tmp_path, "challenger")
    assert holdout_backtest(run.forecaster, run, FRAME) is run.backtest


def test_the_champion_is_scored_on_the_same_origins_without_fitting_the_baselines_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, champion = trained(tmp_path, "challenger"), trained(tmp_path, "champion", lookback=12, epochs=0).forecaster
    assert run.backtest is not None
    full = evaluate.backtest(predict_fn(champion), run.windows.panel, 12, 3, run.windows.test_origins)
    monkeypatch.setattr(baselines, "garch_fits", no_baselines)
    monkeypatch.setattr(baselines, "ewma_quantiles", no_baselines)

    scored = holdout_backtest(champion, run, FRAME)

    np.testing.assert_array_equal(scored.origin_dates, run.backtest.origin_dates)
    assert set(scored.quantiles) == {"model"}
    for metric, values in evaluate.score(full)["model"].items():
        np.testing.assert_allclose(evaluate.score(scored)["model"][metric], values, rtol=1e-9, err_msg=metric)


def test_a_champion_with_a_longer_lookback_is_scored_on_the_frame_from_the_holdout_date(tmp_path: Path) -> None:
    run, champion = trained(tmp_path, "challenger", lookback=12), trained(tmp_path, "champion", lookback=20).forecaster
    scored = holdout_backtest(champion, run, FRAME)
    expected = evaluate_frame(champion, FRAME, 20, 3, from_date=run.windows.split.test_start)
    np.testing.assert_array_equal(scored.origin_dates, expected.origin_dates)
    assert "ewma" in scored.quantiles
