"""forecaster.train as a notebook calls it: keyword settings with the config's defaults, and a run
that writes no MLflow store when asked (track=False)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pandas as pd
import pytest
from factories import random_ohlc

import forecaster
from forecaster import api
from forecaster.config import TrainingConfig, describe

TINY = {"lookback": 10, "horizon": 2, "hidden_size": 4, "epochs": 1, "batch_size": 64, "device": "cpu"}


def test_train_lists_the_common_settings_as_keywords_defaulting_to_the_config() -> None:
    parameters = inspect.signature(forecaster.train).parameters
    defaults = {name.rsplit(".", 1)[-1]: default for name, _, default in describe(TrainingConfig)}

    for keyword in api.TRAIN_KEYWORDS:
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[keyword].default is None  # the config owns the default ...
        assert f"{keyword} (" in (forecaster.train.__doc__ or "")  # ... and help() says what it is
        assert f"default {defaults[keyword]!r}" in (forecaster.train.__doc__ or "")
    assert {"config", "track", "tracking_uri"} <= set(parameters)


def test_keyword_settings_resolve_to_their_dotted_settings() -> None:
    resolved = api._resolve_config(None, {"hidden_size": 64, "epochs": 5, "lookback": 30}, {"train.lr": 3e-4})
    assert (resolved.model.hidden_size, resolved.train.epochs, resolved.data.lookback) == (64, 5, 30)
    assert resolved.train.lr == 3e-4 and resolved.train.patience == TrainingConfig().train.patience
    base = TrainingConfig().with_overrides({"train.seed": 7})
    assert api._resolve_config(base, {"epochs": 2}, {}).train.seed == 7  # applied to the config given


def test_a_setting_given_as_keyword_and_dotted_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"train\.epochs: given twice, as epochs= and as 'train.epochs'"):
        forecaster.train(random_ohlc(days=60), epochs=1, track=False, **{"train.epochs": 2})
    with pytest.raises(ValueError, match=r"model\.hidden_size: Input should be greater than or equal to 1"):
        forecaster.train(random_ohlc(days=60), hidden_size=0, track=False)


def test_train_without_tracking_writes_no_store_and_returns_a_forecasting_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bars = random_ohlc(tickers=("AAA", "BBB"), days=90, seed=3)

    result = forecaster.train(bars, track=False, **TINY)

    assert list(tmp_path.iterdir()) == [] and "MLFLOW_TRACKING_URI" not in os.environ
    assert (result.run_id, result.model_uri, result.version) == (None, None, None)
    assert (result.model.lookback, result.model.horizon) == (10, 2)
    assert result.model.bundle.model_config.hidden_size == 4
    table = result.model.forecast(bars)
    assert len(table) == 2 * 2 and {"q0.1", "q0.5", "q0.9"} <= set(table.columns)
    assert "model" in result.metrics


def test_train_without_tracking_refuses_registry_arguments() -> None:
    with pytest.raises(ValueError, match="track: register_as, alias and tracking_uri need a tracked run"):
        forecaster.train(random_ohlc(days=60), register_as="x", track=False)


def test_a_tracked_run_returns_its_model_and_run(mlflow_store: object) -> None:
    bars = random_ohlc(tickers=("AAA", "BBB"), days=90, seed=11)
    result = forecaster.train(bars, register_as="kw", **TINY)
    assert result.version == "1" and result.run_id and result.model_uri
    pd.testing.assert_frame_equal(
        forecaster.load("models:/kw/1", device="cpu").forecast(bars), result.model.forecast(bars), rtol=1e-6
    )
